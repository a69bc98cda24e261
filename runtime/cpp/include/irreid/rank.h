// Ranking: distance = 1 - cosine on L2-normalised float32 vectors (float16 rows converted first);
// top-k by partial sort, ties broken by the lower row index (the same rule as runtime/search/rank.py:
// a stable sort on (distance, row)).
#pragma once

#include <cstdint>
#include <vector>

namespace irreid {

struct Match {
    int64_t row = 0;
    float distance = 0.0f;
};

// Gallery rows, ranked as L2-normalised float32. Float16 rows stay float16 in memory (converted
// on the fly through a table, with the inverse row norms computed once): for one probe against an
// index this reads the rows twice and allocates nothing of the gallery's size.
class GalleryMatrix {
public:
    // half_rows must outlive the matrix (e.g. the index's memory map).
    GalleryMatrix(const uint16_t* half_rows, int64_t rows, int64_t dim);
    // One pointer per row (dim float16 values each), e.g. GalleryIndex::rows: the live rows of an
    // index's segments in logical order; row r of the result is row_ptrs[r]. The rows must outlive it.
    GalleryMatrix(std::vector<const uint16_t*> row_ptrs, int64_t dim);
    GalleryMatrix(const std::vector<float>& rows_f32, int64_t rows, int64_t dim);

    // The k nearest rows to probe (dim values, normalised here), ascending distance then row.
    std::vector<Match> top_k(const float* probe, int64_t k) const;

    int64_t rows() const { return rows_; }
    int64_t dim() const { return dim_; }

private:
    float dot_row(int64_t r, const float* q) const;

    int64_t rows_;
    int64_t dim_;
    std::vector<const uint16_t*> half_;  // per row: dim float16 values, or
    std::vector<float> f32_;          // (rows, dim) float32
    std::vector<float> inv_norm_;     // (rows,) 1 / ||row||; 0 for an all-zero row (distance 1)
};

// The rule itself, for tests: a before b when its distance is smaller, or equal with a lower row.
inline bool match_less(const Match& a, const Match& b) {
    return a.distance < b.distance || (a.distance == b.distance && a.row < b.row);
}

}  // namespace irreid
