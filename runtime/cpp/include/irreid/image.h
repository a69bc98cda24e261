// Decoding, mirroring runtime/preprocess.py decode_image() + to_rgb():
// JPEG (libjpeg-turbo) and PNG (libpng), EXIF orientation applied, any mode -> 8-bit RGB
// (grey/IR replicated, alpha composited on black, 16-bit grey min-max stretched).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace irreid {

// Larger images are refused as decompression bombs (runtime.preprocess.DEFAULT_MAX_PIXELS).
constexpr int64_t kDefaultMaxPixels = 64000000;

// Interleaved 8-bit RGB, row-major: pixels[(y * width + x) * 3 + c].
struct ImageRGB8 {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> pixels;
};

// File -> RGB8. Throws ImageDecodeError with a one-line message naming the file and the fix.
ImageRGB8 decode_image(const std::string& path, int64_t max_pixels = kDefaultMaxPixels);

// In-memory variants (the file name is only used in messages).
ImageRGB8 decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& name, int64_t max_pixels);
ImageRGB8 decode_png(const std::vector<uint8_t>& bytes, const std::string& name, int64_t max_pixels);

// EXIF orientation (1..8) from a TIFF-structured EXIF block (with or without the "Exif\0\0" prefix);
// 1 when absent or unreadable.
int exif_orientation(const uint8_t* data, size_t size);

// PIL's ImageOps.exif_transpose for orientations 2..8; 1 and unknown values return the input.
ImageRGB8 apply_orientation(const ImageRGB8& in, int orientation);

// Pillow's ImagingAlphaComposite of (r, g, b, a) over opaque black, one channel.
uint8_t composite_on_black(uint8_t value, uint8_t alpha);

}  // namespace irreid
