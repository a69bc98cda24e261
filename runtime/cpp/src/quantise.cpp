#include "irreid/quantise.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "irreid/error.h"
#include "irreid/half.h"

namespace irreid {
namespace {

uint32_t bits_of(float f) {
    uint32_t b;
    std::memcpy(&b, &f, 4);
    return b;
}

float float_of(uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
}

// double -> float, rounded up (a norm used in an upper bound must not shrink): runtime.search.int8._up.
float round_up(double v) {
    float f = static_cast<float>(v);
    if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
    return f;
}

}  // namespace

void row_norms(const uint16_t* row, const uint8_t* codes, float scale, int64_t dim, double* resid_norm, double* row_norm) {
    const float* table = half_table();
    double rr = 0.0, xx = 0.0;
    for (int64_t i = 0; i < dim; ++i) {
        const double x = table[row[i]];
        // q * scale is exact in double (and in float: 7-bit integers times a 17-bit scale), x - that too
        const double r = x - static_cast<double>(static_cast<int>(codes[i]) - kCodeZeroPoint) * static_cast<double>(scale);
        rr += r * r, xx += x * x;
    }
    *resid_norm = std::sqrt(rr), *row_norm = std::sqrt(xx);
}

void quantise_row(const uint16_t* row, int64_t dim, uint8_t* codes, float* scale, float* rnorm, float* xnorm) {
    const float* table = half_table();
    float amax = 0.0f;
    for (int64_t i = 0; i < dim; ++i) {
        if ((row[i] & 0x7C00) == 0x7C00) throw Error("the gallery has NaN or infinite values; rebuild the index (--rebuild)");
        amax = std::max(amax, std::fabs(table[row[i]]));
    }
    // np: bits = (amax / float32(127)).view(uint32); ((bits + 0x7F) & 0xFFFFFF80).view(float32)
    float s = float_of((bits_of(amax / 127.0f) + 0x7Fu) & 0xFFFFFF80u);
    if (s == 0.0f) s = 1.0f;  // a zero row: codes 0, residual 0
    const float inv = 1.0f / s;  // np: (1.0 / scale) stays float32
    for (int64_t i = 0; i < dim; ++i) {
        const float q = std::nearbyint(table[row[i]] * inv);  // np.rint: ties to even (the default rounding mode)
        codes[i] = static_cast<uint8_t>(static_cast<int>(q) + kCodeZeroPoint);
    }
    *scale = s;
    double rn = 0.0, xn = 0.0;
    row_norms(row, codes, s, dim, &rn, &xn);
    // The double sums of squares carry a relative error below (dim + 4) 2^-53 (sqrt halves it): inflate.
    const double infl = 1.0 + static_cast<double>(dim + 4) * 2.3e-16;
    *rnorm = round_up(rn * infl), *xnorm = round_up(xn * infl);
}

QuantisedRows quantise_rows(const uint16_t* half_rows, int64_t rows, int64_t dim) {
    QuantisedRows out;
    out.codes.resize(static_cast<size_t>(rows * dim));
    out.scale.resize(static_cast<size_t>(rows));
    out.rnorm.resize(static_cast<size_t>(rows));
    out.xnorm.resize(static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r)
        quantise_row(half_rows + r * dim, dim, &out.codes[static_cast<size_t>(r * dim)], &out.scale[r], &out.rnorm[r], &out.xnorm[r]);
    return out;
}

}  // namespace irreid
