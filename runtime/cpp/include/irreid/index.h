// The gallery index, format 2 (issue 27; the spec both runtimes follow: docs/native.md, "The gallery
// index"), as runtime/gallery/index.py writes it. All integers little-endian.
//
// ROOT file <index> (e.g. <gallery>/.irreid/index.irx; small, replaced atomically on every commit):
//   bytes 0-7 "IRREIDX2", bytes 8-15 uint64 header_len L, then L bytes of UTF-8 JSON and nothing after:
//   format_version (2), kind ("root"), spec, spec_fingerprint, dim, count (live rows), generation,
//   created_by, gallery_root, segments [{name, count, header_sha256, dead: null | {name, count, sha256}}],
//   and LAST header_sha256: the sha256 of the 16-byte prefix plus the header with this value's 64
//   digits written as "0" (the rule of format 1).
// SEGMENT files <index>.d/<name> (immutable): "IRREIDS2", header_len, JSON header (format_version,
//   kind "segment", dim, count N, spec_fingerprint, created_by, sections {name: {offset, nbytes,
//   sha256}}, header_sha256 last, same rule), then 64-aligned sections in this order: rows (N x D
//   float16), codes (N x D uint8 = int8 + 128), scale, rnorm, xnorm (N float32 each), path_end (N
//   uint64, end of each path after its NUL), path_blob (the paths, each NUL-terminated), path_hash
//   (N uint64: blake2b(path, digest_size=8)), size, mtime_ns (N int64 each), sha256 (N x 32 bytes).
// TOMBSTONE files <index>.d/<name>: sorted unique uint32 row numbers of one segment, dead rows.
// Logical rows: segments in root order, rows in file order, dead rows skipped.
// Format 1 (magic "IRREIDX1", one file) is refused with a one-line message naming `--rebuild`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "irreid/spec.h"

namespace irreid {

constexpr char kIndexMagic[9] = "IRREIDX2";    // the root file
constexpr char kSegmentMagic[9] = "IRREIDS2";  // a segment file
constexpr char kIndexMagicV1[9] = "IRREIDX1";  // format 1: refused (rebuild)
constexpr int kIndexFormatVersion = 2;
constexpr const char* kIndexDirName = ".irreid";
constexpr const char* kIndexFileName = "index.irx";

struct IndexEntry {
    std::string path;  // relative POSIX path from the gallery root
    int64_t size = 0;
    int64_t mtime_ns = 0;
    std::string sha256;  // 64 lowercase hex digits
};

// One segment file, memory-mapped read-only; the pointers point into the mapping.
struct IndexSegment {
    std::string name;  // file name inside <index>.d/
    nlohmann::json header;
    int64_t count = 0;           // rows in the file, dead ones included
    std::vector<uint32_t> dead;  // sorted row numbers of the tombstone (empty: none)
    std::string dead_name;       // the tombstone's file name ("" when none)
    std::shared_ptr<const void> mapping;
    const uint16_t* rows = nullptr;  // (count, dim) float16 bits
    const uint8_t* codes = nullptr;  // (count, dim) int8 + 128
    const float* scale = nullptr;
    const float* rnorm = nullptr;
    const float* xnorm = nullptr;
    const uint64_t* path_end = nullptr;
    const char* path_blob = nullptr;
    const uint64_t* path_hash = nullptr;
    const int64_t* size = nullptr;
    const int64_t* mtime_ns = nullptr;
    const uint8_t* sha256 = nullptr;  // (count, 32) raw digests
};

struct GalleryIndex {
    nlohmann::json header;  // the root's
    ModelSpec spec;
    std::string spec_fingerprint;
    std::string gallery_root;
    int64_t count = 0;  // live rows
    int64_t dim = 0;
    int64_t generation = 0;
    std::vector<IndexSegment> segments;
    std::vector<IndexEntry> entries;   // the live rows' manifest, in logical order
    std::vector<const uint16_t*> rows;  // the live rows' float16 data (dim values each), in logical order
};

// <gallery_dir>/.irreid/index.irx
std::string default_index_path(const std::string& gallery_dir);

// <index>.d: the folder of its segments and tombstones.
std::string index_segment_dir(const std::string& index_path);

// Reads and validates the index. Always: the root (magic, header checksum, format, fields), each
// segment's header checksum and its equality with the root's record, dim and spec fingerprint, the
// section layout and file size, the path blob (NULs where path_end says, UTF-8, relative paths
// without empty/"."/".." components), the tombstones (sha256, sorted, unique, in range).
// verify_data adds one pass over the data: every section's sha256, finite rows, the codes and scales
// re-derived from the rows, the norm bounds, path_hash, live paths unique. (Python skips that pass
// when its verified-once marker matches; this reader keeps no marker: the caller chooses, as for
// format 1.) gallery only feeds messages (`--gallery DIR` in the rebuild hint).
GalleryIndex read_index(const std::string& path, bool verify_data = true, const std::string& gallery = "");

// Writes a fresh index (root + one segment with every section) under <path>.lock, as
// runtime/gallery/index.py would: the segment and the root durably (temp file, fsync, rename,
// fsync of the folder), then removes files of <index>.d/ that the new root does not name. data:
// (entries.size(), dim) float16 bits, stored as given (rows are expected L2-normalised).
void write_index(const std::string& path, const ModelSpec& spec, const std::string& gallery_root,
                 const std::vector<IndexEntry>& entries, const std::vector<uint16_t>& data, int64_t dim);

}  // namespace irreid
