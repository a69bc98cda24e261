// Pillow's bilinear resize (Image.resize(size, Image.BILINEAR) == ImagingResample in
// src/libImaging/Resample.c), reimplemented bit-exactly for 8-bit RGB:
// separable, horizontal pass then vertical pass; when downscaling the triangle filter's support
// grows with the scale (antialiasing), so this is NOT 2-tap interpolation; coefficients are
// normalised then quantised to 22-bit fixed point, accumulators start at one half, results clip to 0..255.
#pragma once

#include <cstdint>
#include <vector>

#include "irreid/image.h"

namespace irreid {

// One output position's contributing input range and weights.
struct ResampleCoeffs {
    int ksize = 0;                 // weights stored per output position (the maximum taps)
    std::vector<int> bounds;       // (out_size, 2): first input index, number of taps
    std::vector<double> weights;   // (out_size, ksize) normalised float weights (PIL precompute_coeffs)
    std::vector<int32_t> fixed;    // (out_size, ksize) the same in fixed point (PIL normalize_coeffs_8bpc)
};

constexpr int kResamplePrecisionBits = 32 - 8 - 2;

// Coefficients for resizing in_size samples to out_size (PIL's box (0, in_size), BILINEAR filter).
ResampleCoeffs bilinear_coeffs(int in_size, int out_size);

// Resize to width x height exactly as PIL does; the same size returns a copy.
ImageRGB8 resize_bilinear(const ImageRGB8& in, int width, int height);

}  // namespace irreid
