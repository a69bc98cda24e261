#include "irreid/rank.h"

#include <algorithm>
#include <cmath>

#include "irreid/error.h"
#include "irreid/half.h"

namespace irreid {
namespace {

// Four partial sums let the compiler keep the loop in vector registers without -ffast-math.
float dot(const float* a, const float* b, int64_t n) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i], s1 += a[i + 1] * b[i + 1], s2 += a[i + 2] * b[i + 2], s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

void normalise(float* v, int64_t n) {
    double ss = 0.0;
    for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(v[i]) * v[i];
    if (ss <= 0.0) return;
    const auto inv = static_cast<float>(1.0 / std::sqrt(ss));
    for (int64_t i = 0; i < n; ++i) v[i] *= inv;
}

// Four partial sums over table-converted float16 values, as dot() above.
float dot_half(const uint16_t* a, const float* b, int64_t n, const float* table) {
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += table[a[i]] * b[i], s1 += table[a[i + 1]] * b[i + 1], s2 += table[a[i + 2]] * b[i + 2], s3 += table[a[i + 3]] * b[i + 3];
    }
    for (; i < n; ++i) s0 += table[a[i]] * b[i];
    return (s0 + s1) + (s2 + s3);
}

}  // namespace

GalleryMatrix::GalleryMatrix(const uint16_t* half_rows, int64_t rows, int64_t dim)
    : GalleryMatrix([&] {
          std::vector<const uint16_t*> ptrs(static_cast<size_t>(rows));
          for (int64_t r = 0; r < rows; ++r) ptrs[r] = half_rows + r * dim;
          return ptrs;
      }(), dim) {}

GalleryMatrix::GalleryMatrix(std::vector<const uint16_t*> row_ptrs, int64_t dim)
    : rows_(static_cast<int64_t>(row_ptrs.size())), dim_(dim), half_(std::move(row_ptrs)), inv_norm_(half_.size()) {
    const float* table = half_table();
    for (int64_t r = 0; r < rows_; ++r) {
        const uint16_t* row = half_[r];
        double ss = 0.0;
        for (int64_t i = 0; i < dim_; ++i) ss += static_cast<double>(table[row[i]]) * table[row[i]];
        inv_norm_[r] = ss > 0.0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.0f;
    }
}

GalleryMatrix::GalleryMatrix(const std::vector<float>& rows_f32, int64_t rows, int64_t dim)
    : rows_(rows), dim_(dim), f32_(rows_f32), inv_norm_(static_cast<size_t>(rows)) {
    if (static_cast<int64_t>(rows_f32.size()) != rows * dim) throw Error("gallery matrix: data size is not rows x dim");
    for (int64_t r = 0; r < rows_; ++r) {
        const float* row = &f32_[static_cast<size_t>(r * dim_)];
        double ss = 0.0;
        for (int64_t i = 0; i < dim_; ++i) ss += static_cast<double>(row[i]) * row[i];
        inv_norm_[r] = ss > 0.0 ? static_cast<float>(1.0 / std::sqrt(ss)) : 0.0f;
    }
}

float GalleryMatrix::dot_row(int64_t r, const float* q) const {
    return !half_.empty() ? dot_half(half_[r], q, dim_, half_table()) : dot(&f32_[static_cast<size_t>(r * dim_)], q, dim_);
}

std::vector<Match> GalleryMatrix::top_k(const float* probe, int64_t k) const {
    std::vector<float> q(probe, probe + dim_);
    normalise(q.data(), dim_);
    std::vector<Match> all(static_cast<size_t>(rows_));
    for (int64_t r = 0; r < rows_; ++r) all[r] = {r, 1.0f - dot_row(r, q.data()) * inv_norm_[r]};
    k = std::clamp<int64_t>(k, 0, rows_);
    std::partial_sort(all.begin(), all.begin() + k, all.end(), match_less);
    all.resize(static_cast<size_t>(k));
    return all;
}

}  // namespace irreid
