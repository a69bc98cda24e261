// The gallery index file written by runtime/gallery/index.py (little-endian):
//   bytes 0-7   magic "IRREIDX1"
//   bytes 8-15  uint64 header_len L
//   L bytes     UTF-8 JSON header: format_version (1), spec, spec_fingerprint, count, dim, dtype
//               ("float16"), data_offset, data_sha256, created_by, gallery_root,
//               entries [{path, size, mtime_ns, sha256}] in row order, and LAST header_sha256: the
//               sha256 of the 16-byte prefix plus the header with this value's 64 digits as "0"
//   zero padding up to data_offset (a multiple of 64), then count x dim float16, row-major.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irreid/spec.h"

namespace irreid {

constexpr char kIndexMagic[9] = "IRREIDX1";
constexpr const char* kIndexDirName = ".irreid";
constexpr const char* kIndexFileName = "index.irx";

struct IndexEntry {
    std::string path;  // relative POSIX path from the gallery root
    int64_t size = 0;
    int64_t mtime_ns = 0;
    std::string sha256;
};

struct GalleryIndex {
    nlohmann::json header;
    ModelSpec spec;
    std::string spec_fingerprint;
    std::string gallery_root;
    int64_t count = 0;
    int64_t dim = 0;
    std::vector<IndexEntry> entries;
    std::shared_ptr<const void> mapping;  // the file, memory-mapped read-only; keeps data valid
    const uint16_t* data = nullptr;       // (count, dim) float16 bits inside the mapping
};

// <gallery_dir>/.irreid/index.irx
std::string default_index_path(const std::string& gallery_dir);

// Reads and validates the file (the header checksum always); verify_data checks data_sha256 (one
// pass over the rows).
GalleryIndex read_index(const std::string& path, bool verify_data = true);

// Writes an index in the same format, header checksum included, so runtime/gallery/index.py reads it (the
// tests and the benchmark use it to make galleries).
void write_index(const std::string& path, const ModelSpec& spec, const std::string& gallery_root,
                 const std::vector<IndexEntry>& entries, const std::vector<uint16_t>& data, int64_t dim);

}  // namespace irreid
