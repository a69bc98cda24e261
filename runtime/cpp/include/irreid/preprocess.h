// runtime/preprocess.py preprocess_image() / preprocess_path(): RGB8 -> resize to the spec's H x W
// (Pillow BILINEAR) -> float32 (3, H, W) raw 0-255, RGB or BGR. Mean/std stay inside the graph.
#pragma once

#include <string>
#include <vector>

#include "irreid/image.h"
#include "irreid/spec.h"

namespace irreid {

// (3, height, width) float32, raw 0-255 values.
std::vector<float> preprocess_image(const ImageRGB8& rgb, int height, int width, const std::string& channel_order = "RGB");

std::vector<float> preprocess_path(const std::string& path, const ModelSpec& spec, int64_t max_pixels = kDefaultMaxPixels);

// Interleaved HWC uint8 -> planar CHW float32, swapping R and B for "BGR".
void hwc_to_chw(const ImageRGB8& rgb, bool bgr, float* out);

}  // namespace irreid
