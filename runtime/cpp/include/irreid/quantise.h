// The int8 codes and per-row numbers an index segment stores beside its float16 rows (format 2):
// the C++ twin of runtime.search.int8.quantise_rows, bit-identical in codes and scale.
//
//   scale_i = max|x_i| / 127 in float32, rounded UP to 17 significant bits (bits + 0x7F, low 7 bits
//             cleared); 1.0 for an all-zero row
//   codes_i = rint(x_i * float32(1 / scale_i)) as int8 (ties to even), stored + 128 as uint8
//   rnorm_i >= || x_i - scale_i * (codes_i - 128) ||,  xnorm_i >= || x_i ||  (computed in double,
//             inflated for the double sums, rounded up to float: valid bounds, not Python's bits)
//
// Python falls back to float64 (_row_quantise64) for rows with max|x| < 1e-30 or > 1e18; float16
// rows never reach it (their magnitudes lie in [2^-24, 65504]), so this float16-only quantiser has
// no fallback to mirror.
#pragma once

#include <cstdint>
#include <vector>

namespace irreid {

constexpr int kCodeZeroPoint = 128;  // runtime.search.int8.CODE_ZERO_POINT

struct QuantisedRows {
    std::vector<uint8_t> codes;  // (rows, dim) int8 code + 128
    std::vector<float> scale;    // (rows,)
    std::vector<float> rnorm;    // (rows,)
    std::vector<float> xnorm;    // (rows,)
};

// One row of dim float16 values. Throws irreid::Error for NaN or infinite values.
void quantise_row(const uint16_t* row, int64_t dim, uint8_t* codes, float* scale, float* rnorm, float* xnorm);

QuantisedRows quantise_rows(const uint16_t* half_rows, int64_t rows, int64_t dim);

// The exact (double) norms the bounds above must cover, for checks: ||x||, ||x - scale * (codes - 128)||.
void row_norms(const uint16_t* row, const uint8_t* codes, float scale, int64_t dim, double* resid_norm, double* row_norm);

}  // namespace irreid
