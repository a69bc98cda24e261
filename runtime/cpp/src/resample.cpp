#include "irreid/resample.h"

#include <algorithm>
#include <cmath>

#include "irreid/error.h"

namespace irreid {
namespace {

double triangle(double x) {
    x = std::fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

// PIL clip8(): the accumulator carries 22 fractional bits; >> is arithmetic for negatives.
inline uint8_t clip8(int32_t acc) {
    int32_t v = acc >> kResamplePrecisionBits;
    return static_cast<uint8_t>(std::clamp(v, 0, 255));
}

// One separable pass over an interleaved RGB image. horizontal: taps walk x; else taps walk y.
// Row/column bounds index the source directly (PIL crops the rows first; the arithmetic is the same).
void resample_pass(const ImageRGB8& in, ImageRGB8& out, const ResampleCoeffs& c, bool horizontal) {
    const int out_w = out.width, out_h = out.height, in_w = in.width;
    for (int yy = 0; yy < out_h; ++yy) {
        for (int xx = 0; xx < out_w; ++xx) {
            const int o = horizontal ? xx : yy;
            const int first = c.bounds[2 * o], taps = c.bounds[2 * o + 1];
            const int32_t* k = &c.fixed[static_cast<size_t>(o) * c.ksize];
            int32_t s0 = 1 << (kResamplePrecisionBits - 1), s1 = s0, s2 = s0;
            for (int t = 0; t < taps; ++t) {
                const int sx = horizontal ? first + t : xx;
                const int sy = horizontal ? yy : first + t;
                const uint8_t* p = &in.pixels[(static_cast<size_t>(sy) * in_w + sx) * 3];
                s0 += p[0] * k[t];
                s1 += p[1] * k[t];
                s2 += p[2] * k[t];
            }
            uint8_t* q = &out.pixels[(static_cast<size_t>(yy) * out_w + xx) * 3];
            q[0] = clip8(s0), q[1] = clip8(s1), q[2] = clip8(s2);
        }
    }
}

}  // namespace

ResampleCoeffs bilinear_coeffs(int in_size, int out_size) {
    if (in_size <= 0 || out_size <= 0) throw Error("resize: sizes must be positive");
    // PIL passes the box edges as float and computes the scale in double.
    const double scale = static_cast<double>(static_cast<float>(in_size) - 0.0f) / out_size;
    const double filterscale = std::max(scale, 1.0);
    const double support = 1.0 * filterscale;  // BILINEAR support is 1
    ResampleCoeffs c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.bounds.assign(static_cast<size_t>(out_size) * 2, 0);
    c.weights.assign(static_cast<size_t>(out_size) * c.ksize, 0.0);
    c.fixed.assign(c.weights.size(), 0);
    for (int xx = 0; xx < out_size; ++xx) {
        const double center = (xx + 0.5) * scale;
        const double ss = 1.0 / filterscale;
        const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
        const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
        double* k = &c.weights[static_cast<size_t>(xx) * c.ksize];
        double ww = 0.0;
        for (int x = 0; x < xmax; ++x) {
            k[x] = triangle((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (int x = 0; x < xmax; ++x) {
            if (ww != 0.0) k[x] /= ww;
        }
        c.bounds[2 * xx] = xmin;
        c.bounds[2 * xx + 1] = xmax;
    }
    for (size_t i = 0; i < c.weights.size(); ++i) {
        const double w = c.weights[i] * (1 << kResamplePrecisionBits);
        c.fixed[i] = static_cast<int32_t>(c.weights[i] < 0 ? -0.5 + w : 0.5 + w);
    }
    return c;
}

ImageRGB8 resize_bilinear(const ImageRGB8& in, int width, int height) {
    if (width <= 0 || height <= 0) throw Error("resize: target size must be positive");
    if (in.width == width && in.height == height) return in;
    ImageRGB8 cur = in;
    if (in.width != width) {  // horizontal pass first, as PIL
        ImageRGB8 tmp{width, in.height, std::vector<uint8_t>(static_cast<size_t>(width) * in.height * 3)};
        resample_pass(cur, tmp, bilinear_coeffs(in.width, width), true);
        cur = std::move(tmp);
    }
    if (in.height != height) {
        ImageRGB8 tmp{width, height, std::vector<uint8_t>(static_cast<size_t>(width) * height * 3)};
        resample_pass(cur, tmp, bilinear_coeffs(in.height, height), false);
        cur = std::move(tmp);
    }
    return cur;
}

}  // namespace irreid
