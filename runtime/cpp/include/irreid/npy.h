// .npy (NumPy format 1.0-3.0) for probe embeddings in and embedding matrices out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace irreid {

// A float32 matrix (rows, cols), row-major. A 1-D file reads as one row.
struct Matrix {
    int64_t rows = 0;
    int64_t cols = 0;
    std::vector<float> data;
};

// Reads little-endian float32 / float16 / float64 C-order arrays of 1 or 2 dimensions as float32.
Matrix read_npy(const std::string& path);

// Writes float32 (rows, cols) atomically (temp file + rename).
void write_npy(const std::string& path, const Matrix& m);

// Writes float32 data of any C-order shape atomically.
void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape);

// Writes bytes to path atomically: readers see the old file or the new one, never a torn one.
void atomic_write(const std::string& path, const std::string& bytes);

}  // namespace irreid
