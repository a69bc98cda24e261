#include "irreid/preprocess.h"

#include "irreid/error.h"
#include "irreid/resample.h"

namespace irreid {

void hwc_to_chw(const ImageRGB8& rgb, bool bgr, float* out) {
    const size_t plane = static_cast<size_t>(rgb.width) * rgb.height;
    for (int c = 0; c < 3; ++c) {
        const int src = bgr ? 2 - c : c;
        float* dst = out + plane * c;
        for (size_t i = 0; i < plane; ++i) dst[i] = rgb.pixels[i * 3 + src];
    }
}

std::vector<float> preprocess_image(const ImageRGB8& rgb, int height, int width, const std::string& channel_order) {
    if (channel_order != "RGB" && channel_order != "BGR")
        throw Error("channel_order '" + channel_order + "' is invalid; valid values: RGB, BGR");
    std::vector<float> out(static_cast<size_t>(3) * height * width);
    if (rgb.width == width && rgb.height == height) {
        hwc_to_chw(rgb, channel_order == "BGR", out.data());
    } else {
        hwc_to_chw(resize_bilinear(rgb, width, height), channel_order == "BGR", out.data());
    }
    return out;
}

std::vector<float> preprocess_path(const std::string& path, const ModelSpec& spec, int64_t max_pixels) {
    return preprocess_image(decode_image(path, max_pixels), spec.input_height, spec.input_width, spec.channel_order);
}

}  // namespace irreid
