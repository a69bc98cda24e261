#include "irreid/index.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string_view>
#include <unordered_set>

#include <dirent.h>
#include <fcntl.h>
#include <csignal>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "irreid/blake2b.h"
#include "irreid/error.h"
#include "irreid/quantise.h"
#include "irreid/sha256.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the index sections are mapped as little-endian arrays: this reader needs a little-endian CPU"
#endif

namespace irreid {
namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t(1) << 31;
constexpr uint64_t kAlign = 64;
constexpr int kReadTries = 5;  // a compaction may remove a segment between our root read and its open
constexpr const char* kCreatedBy = "irreid-edge-native";

// The header checksum (format 1's rule): "header_sha256" is the header's LAST key, and its value is
// the sha256 of the 16-byte prefix plus the header with those 64 hex digits written as "0".
const std::string kSumKey = ",\"header_sha256\":\"";
const size_t kSumTail = kSumKey.size() + 64 + 2;  // the key, 64 hex digits, "}

// The sections of a segment, in file order.
enum Section { kRows, kCodes, kScale, kRnorm, kXnorm, kPathEnd, kPathBlob, kPathHash, kSize, kMtime, kSha256, kSectionCount };
constexpr const char* kSectionNames[kSectionCount] = {"rows", "codes", "scale", "rnorm", "xnorm", "path_end",
                                                      "path_blob", "path_hash", "size", "mtime_ns", "sha256"};

std::string rebuild_hint(const std::string& gallery) {
    return "run `irreid-edge index --gallery " + (gallery.empty() ? std::string("DIR") : gallery) + " --rebuild`";
}

Error corrupt(const std::string& path, const std::string& why, const std::string& gallery) {
    return Error(path + ": corrupted index (" + why + "); " + rebuild_hint(gallery));
}

Error format1(const std::string& path, const std::string& gallery) {
    return Error(path + ": index format 1 was written by an older irreid-edge; " + rebuild_hint(gallery));
}

// A file the root names is gone (ENOENT): the root is read again.
struct Vanished {
    std::string path;
};

std::string prefix_bytes(const char* magic, uint64_t header_len) {
    std::string out(magic, 8);
    for (int i = 0; i < 8; ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xFF);
    return out;
}

uint64_t read_le64(const unsigned char* b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
}

std::string header_digest(const std::string& prefix, const std::string& text) {
    std::string zeroed = prefix + text;
    zeroed.replace(zeroed.size() - 66, 64, std::string(64, '0'));
    return sha256_hex(zeroed.data(), zeroed.size());
}

bool is_hex64(const std::string& s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string to_hex(const uint8_t* p, size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string out(2 * n, '0');
    for (size_t i = 0; i < n; ++i) out[2 * i] = digits[p[i] >> 4], out[2 * i + 1] = digits[p[i] & 15];
    return out;
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// A segment or tombstone name inside <index>.d/ (runtime/gallery/index.py's _safe_name): one plain
// component ("/" or ".." anywhere is corruption), not hidden (temp files are), not a marker.
bool plain_name(const std::string& s) {
    return !s.empty() && s[0] != '.' && s.find('/') == std::string::npos && s.find("..") == std::string::npos &&
           s.find('\0') == std::string::npos && !ends_with(s, ".verified");
}

// Strict UTF-8 (as Python's bytes.decode("utf-8")): no overlong forms, surrogates or values past U+10FFFF.
bool valid_utf8(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) len = 2;
        else if (c == 0xE0) len = 3, lo = 0xA0;
        else if (c >= 0xE1 && c <= 0xEC) len = 3;
        else if (c == 0xED) len = 3, hi = 0x9F;
        else if (c >= 0xEE && c <= 0xEF) len = 3;
        else if (c == 0xF0) len = 4, lo = 0x90;
        else if (c >= 0xF1 && c <= 0xF3) len = 4;
        else if (c == 0xF4) len = 4, hi = 0x8F;
        else return false;
        if (i + len > n || s[i + 1] < lo || s[i + 1] > hi) return false;
        for (size_t k = 2; k < len; ++k)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return false;
        i += len;
    }
    return true;
}

// A relative POSIX path without an empty, "." or ".." component (so it stays inside the gallery root).
bool safe_relative_path(const char* p, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i <= n; ++i) {
        if (i < n && p[i] != '/') continue;
        const size_t len = i - start;
        if (len == 0 || (len == 1 && p[start] == '.') || (len == 2 && p[start] == '.' && p[start + 1] == '.')) return false;
        start = i + 1;
    }
    return true;
}

// The path blob against path_end: NULs exactly at path_end - 1 (so N of them, the last at the end),
// valid UTF-8, every path safe. Returns "" or what is wrong.
std::string check_paths(const char* blob, uint64_t nbytes, const uint64_t* path_end, int64_t count) {
    if (!valid_utf8(reinterpret_cast<const unsigned char*>(blob), nbytes)) return "path_blob is not valid UTF-8";
    uint64_t start = 0;
    for (int64_t k = 0; k < count; ++k) {
        const uint64_t end = path_end[k];
        if (end <= start || end > nbytes) return "path_end " + std::to_string(k) + " is out of order or past path_blob";
        const void* nul = std::memchr(blob + start, '\0', end - start);
        if (nul != blob + end - 1) return "path_blob's NULs do not match path_end at path " + std::to_string(k);
        if (!safe_relative_path(blob + start, end - 1 - start))
            return "path '" + std::string(blob + start, end - 1 - start) + "' leaves the gallery root";
        start = end;
    }
    if (start != nbytes) return "path_blob has bytes after its last path";
    return "";
}

struct Mapping {
    std::shared_ptr<const void> map;
    const unsigned char* bytes = nullptr;
    uint64_t size = 0;
};

// Opens a regular file and maps it (read-only, through the descriptor checked: no swap between).
Mapping map_file(const std::string& path, const std::string& gallery) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) throw Vanished{path};
        throw corrupt(path, std::string("cannot open: ") + std::strerror(errno), gallery);
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw corrupt(path, "not a regular file", gallery);
    }
    Mapping m;
    m.size = static_cast<uint64_t>(st.st_size);
    if (m.size == 0) {
        ::close(fd);
        return m;
    }
    void* base = ::mmap(nullptr, m.size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) throw Error(path + ": cannot memory-map the index file");
    const uint64_t size = m.size;
    m.map = std::shared_ptr<const void>(base, [size](const void* p) { ::munmap(const_cast<void*>(p), size); });
    m.bytes = static_cast<const unsigned char*>(base);
    return m;
}

// Magic, length, checksum, JSON object, format_version 2 and kind. *recorded: the header_sha256.
nlohmann::json parse_header(const std::string& path, const unsigned char* bytes, uint64_t file_size, const char* magic,
                            const char* kind, uint64_t* header_end, std::string* recorded, const std::string& gallery) {
    if (file_size < 16) throw corrupt(path, "file too short (" + std::to_string(file_size) + " bytes)", gallery);
    const std::string got(reinterpret_cast<const char*>(bytes), 8);
    if (got != magic) {
        if (got == kIndexMagicV1 && std::string(magic) == kIndexMagic) throw format1(path, gallery);
        throw corrupt(path, "bad magic, expected " + std::string(magic), gallery);
    }
    const uint64_t hlen = read_le64(bytes + 8);
    if (hlen > kMaxHeaderBytes || hlen > file_size - 16) throw corrupt(path, "header length " + std::to_string(hlen) + " past the end of the file", gallery);
    const std::string text(reinterpret_cast<const char*>(bytes) + 16, hlen);
    if (text.size() < kSumTail || text.compare(text.size() - kSumTail, kSumKey.size(), kSumKey) != 0 ||
        text.compare(text.size() - 2, 2, "\"}") != 0)
        throw corrupt(path, "no header checksum", gallery);
    *recorded = text.substr(text.size() - 66, 64);
    if (header_digest(std::string(reinterpret_cast<const char*>(bytes), 16), text) != *recorded)
        throw corrupt(path, "header checksum mismatch", gallery);
    nlohmann::json h;
    try {
        h = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw corrupt(path, "header is not valid JSON: " + std::string(e.what()), gallery);
    }
    if (!h.is_object()) throw corrupt(path, "header is not a JSON object", gallery);
    const auto v = h.find("format_version");
    if (v != h.end() && v->is_number_integer() && v->get<int64_t>() == 1) throw format1(path, gallery);
    if (v == h.end() || !v->is_number_integer() || v->get<int64_t>() != kIndexFormatVersion)
        throw Error(path + ": index format_version " + (v == h.end() ? std::string("(none)") : v->dump()) +
                    " is not 2 (another irreid-edge version); " + rebuild_hint(gallery));
    if (!h.contains("kind") || h["kind"] != kind) throw corrupt(path, std::string("kind is not '") + kind + "'", gallery);
    *header_end = 16 + hlen;
    return h;
}

int64_t int_field(const nlohmann::json& h, const char* key, const std::string& path, const std::string& gallery) {
    const auto it = h.find(key);
    if (it == h.end() || !it->is_number_integer()) throw corrupt(path, std::string("header field '") + key + "' missing or not an integer", gallery);
    return it->get<int64_t>();
}

std::string str_field(const nlohmann::json& h, const char* key, const std::string& path, const std::string& gallery) {
    const auto it = h.find(key);
    if (it == h.end() || !it->is_string()) throw corrupt(path, std::string("header field '") + key + "' missing or not a string", gallery);
    return it->get<std::string>();
}

struct SegmentRecord {
    std::string name;
    int64_t count = 0;
    std::string header_sha256;
    std::string dead_name;  // "" when dead is null
    int64_t dead_count = 0;
    std::string dead_sha256;
};

std::vector<SegmentRecord> segment_records(const nlohmann::json& h, const std::string& path, const std::string& gallery) {
    const auto it = h.find("segments");
    if (it == h.end() || !it->is_array()) throw corrupt(path, "header field 'segments' missing or not a list", gallery);
    std::vector<SegmentRecord> out;
    std::unordered_set<std::string> names;
    for (const auto& s : *it) {
        if (!s.is_object()) throw corrupt(path, "a segment record is not an object", gallery);
        SegmentRecord r;
        r.name = str_field(s, "name", path, gallery);
        r.count = int_field(s, "count", path, gallery);
        r.header_sha256 = str_field(s, "header_sha256", path, gallery);
        if (!plain_name(r.name)) throw corrupt(path, "segment name '" + r.name + "' is not a file name", gallery);
        if (r.count < 0 || !is_hex64(r.header_sha256)) throw corrupt(path, "segment " + r.name + ": bad count or header_sha256", gallery);
        const auto dead = s.find("dead");
        if (dead == s.end()) throw corrupt(path, "segment " + r.name + " has no 'dead' field", gallery);
        if (!dead->is_null()) {
            if (!dead->is_object()) throw corrupt(path, "segment " + r.name + ": 'dead' is neither null nor an object", gallery);
            r.dead_name = str_field(*dead, "name", path, gallery);
            r.dead_count = int_field(*dead, "count", path, gallery);
            r.dead_sha256 = str_field(*dead, "sha256", path, gallery);
            if (!plain_name(r.dead_name)) throw corrupt(path, "tombstone name '" + r.dead_name + "' is not a file name", gallery);
            if (r.dead_count < 0 || r.dead_count > r.count || !is_hex64(r.dead_sha256))
                throw corrupt(path, "tombstone " + r.dead_name + ": bad count or sha256", gallery);
        }
        if (!names.insert(r.name).second || (!r.dead_name.empty() && !names.insert(r.dead_name).second))
            throw corrupt(path, "a file is named twice in the segment list", gallery);
        out.push_back(std::move(r));
    }
    return out;
}

std::vector<uint32_t> read_tombstone(const std::string& dir, const SegmentRecord& r, const std::string& gallery) {
    const std::string path = dir + "/" + r.dead_name;
    const Mapping m = map_file(path, gallery);
    if (m.size != static_cast<uint64_t>(r.dead_count) * 4)
        throw corrupt(path, "tombstone is " + std::to_string(m.size) + " bytes, the root says " + std::to_string(r.dead_count) + " rows", gallery);
    if (sha256_hex(m.bytes, m.size) != r.dead_sha256) throw corrupt(path, "tombstone sha256 mismatch", gallery);
    std::vector<uint32_t> dead(static_cast<size_t>(r.dead_count));
    if (m.size) std::memcpy(dead.data(), m.bytes, m.size);
    for (size_t i = 0; i < dead.size(); ++i) {
        if ((i > 0 && dead[i] <= dead[i - 1]) || dead[i] >= static_cast<uint64_t>(r.count))
            throw corrupt(path, "tombstone rows are not sorted, unique and below the segment's count", gallery);
    }
    return dead;
}

IndexSegment read_segment(const std::string& dir, const SegmentRecord& r, int64_t dim, const std::string& fingerprint,
                          const std::string& gallery) {
    const std::string path = dir + "/" + r.name;
    const Mapping m = map_file(path, gallery);
    IndexSegment seg;
    seg.name = r.name;
    seg.mapping = m.map;
    uint64_t header_end = 0;
    std::string recorded;
    seg.header = parse_header(path, m.bytes, m.size, kSegmentMagic, "segment", &header_end, &recorded, gallery);
    const auto& h = seg.header;
    if (recorded != r.header_sha256) throw corrupt(path, "segment header_sha256 differs from the root's record", gallery);
    seg.count = int_field(h, "count", path, gallery);
    if (int_field(h, "dim", path, gallery) != dim) throw corrupt(path, "segment dim differs from the root's", gallery);
    if (seg.count != r.count) throw corrupt(path, "segment count differs from the root's record", gallery);
    if (str_field(h, "spec_fingerprint", path, gallery) != fingerprint) throw corrupt(path, "segment spec_fingerprint differs from the root's", gallery);
    const auto sections = h.find("sections");
    if (sections == h.end() || !sections->is_object() || sections->size() != kSectionCount)
        throw corrupt(path, "header field 'sections' missing or not the 11 sections of format 2", gallery);
    const auto n = static_cast<uint64_t>(seg.count), d = static_cast<uint64_t>(dim);
    if (n > m.size || (n && d > m.size / n / 2))  // also keeps the section sizes below from overflowing
        throw corrupt(path, "count " + std::to_string(n) + " x dim " + std::to_string(d) + " does not fit in the file", gallery);
    const uint64_t want[kSectionCount] = {n * d * 2, n * d, n * 4, n * 4, n * 4, n * 8, 0, n * 8, n * 8, n * 8, n * 32};
    uint64_t offset[kSectionCount], nbytes[kSectionCount];
    uint64_t end = header_end;
    for (int s = 0; s < kSectionCount; ++s) {
        const auto it = sections->find(kSectionNames[s]);
        if (it == sections->end() || !it->is_object() || !it->contains("offset") || !(*it)["offset"].is_number_unsigned() ||
            !it->contains("nbytes") || !(*it)["nbytes"].is_number_unsigned() || !it->contains("sha256") ||
            !(*it)["sha256"].is_string() || !is_hex64((*it)["sha256"].get<std::string>()))
            throw corrupt(path, std::string("section '") + kSectionNames[s] + "' missing or invalid", gallery);
        offset[s] = (*it)["offset"].get<uint64_t>(), nbytes[s] = (*it)["nbytes"].get<uint64_t>();
        if (offset[s] % kAlign || offset[s] < end || offset[s] > m.size || nbytes[s] > m.size - offset[s])
            throw corrupt(path, std::string("section '") + kSectionNames[s] + "' is not 64-aligned, in order and inside the file", gallery);
        if (s != kPathBlob && nbytes[s] != want[s])
            throw corrupt(path, std::string("section '") + kSectionNames[s] + "' has " + std::to_string(nbytes[s]) +
                                    " bytes, count and dim give " + std::to_string(want[s]), gallery);
        end = offset[s] + nbytes[s];
    }
    if (end != m.size) throw corrupt(path, "file is " + std::to_string(m.size) + " bytes, its sections end at " + std::to_string(end), gallery);
    const auto at = [&](int s) { return m.bytes + offset[s]; };
    seg.rows = reinterpret_cast<const uint16_t*>(at(kRows));
    seg.codes = at(kCodes);
    seg.scale = reinterpret_cast<const float*>(at(kScale));
    seg.rnorm = reinterpret_cast<const float*>(at(kRnorm));
    seg.xnorm = reinterpret_cast<const float*>(at(kXnorm));
    seg.path_end = reinterpret_cast<const uint64_t*>(at(kPathEnd));
    seg.path_blob = reinterpret_cast<const char*>(at(kPathBlob));
    seg.path_hash = reinterpret_cast<const uint64_t*>(at(kPathHash));
    seg.size = reinterpret_cast<const int64_t*>(at(kSize));
    seg.mtime_ns = reinterpret_cast<const int64_t*>(at(kMtime));
    seg.sha256 = at(kSha256);
    const uint64_t blob_bytes = n ? seg.path_end[n - 1] : 0;
    if (nbytes[kPathBlob] != blob_bytes)
        throw corrupt(path, "section 'path_blob' has " + std::to_string(nbytes[kPathBlob]) + " bytes, path_end says " + std::to_string(blob_bytes), gallery);
    const std::string bad = check_paths(seg.path_blob, blob_bytes, seg.path_end, seg.count);
    if (!bad.empty()) throw corrupt(path, bad, gallery);
    return seg;
}

// The one pass over the data that --verify (verify_data) adds.
void verify_segment(const std::string& path, const IndexSegment& seg, int64_t dim, const std::string& gallery) {
    const auto& sections = seg.header["sections"];
    for (int s = 0; s < kSectionCount; ++s) {
        const auto& rec = sections[kSectionNames[s]];
        const auto* p = reinterpret_cast<const unsigned char*>(seg.mapping.get()) + rec["offset"].get<uint64_t>();
        if (sha256_hex(p, rec["nbytes"].get<uint64_t>()) != rec["sha256"].get<std::string>())
            throw corrupt(path, std::string("section '") + kSectionNames[s] + "' sha256 mismatch", gallery);
    }
    std::vector<uint8_t> codes(static_cast<size_t>(dim));
    const double slack = 1.0 - static_cast<double>(dim + 4) * 2.3e-16;
    for (int64_t r = 0; r < seg.count; ++r) {
        const uint16_t* row = seg.rows + r * dim;
        for (int64_t i = 0; i < dim; ++i)
            if ((row[i] & 0x7C00) == 0x7C00) throw corrupt(path, "row " + std::to_string(r) + " holds NaN or infinite values", gallery);
        float scale = 0, rnorm = 0, xnorm = 0;
        quantise_row(row, dim, codes.data(), &scale, &rnorm, &xnorm);
        if (std::memcmp(codes.data(), seg.codes + r * dim, static_cast<size_t>(dim)) != 0 || std::memcmp(&scale, &seg.scale[r], 4) != 0)
            throw corrupt(path, "the int8 codes or scale of row " + std::to_string(r) + " differ from the rows'", gallery);
        double rn = 0, xn = 0;
        row_norms(row, seg.codes + r * dim, seg.scale[r], dim, &rn, &xn);
        if (!(static_cast<double>(seg.rnorm[r]) >= rn * slack) || !(static_cast<double>(seg.xnorm[r]) >= xn * slack) ||
            !std::isfinite(seg.rnorm[r]) || !std::isfinite(seg.xnorm[r]))
            throw corrupt(path, "rnorm or xnorm of row " + std::to_string(r) + " is not an upper bound", gallery);
        const uint64_t start = r ? seg.path_end[r - 1] : 0;
        if (blake2b_64(seg.path_blob + start, seg.path_end[r] - 1 - start) != seg.path_hash[r])
            throw corrupt(path, "path_hash of row " + std::to_string(r) + " is not its path's", gallery);
    }
}

GalleryIndex read_once(const std::string& path, const std::string& root_bytes, bool verify_data, const std::string& gallery) {
    GalleryIndex idx;
    const auto* bytes = reinterpret_cast<const unsigned char*>(root_bytes.data());
    uint64_t header_end = 0;
    std::string recorded;
    idx.header = parse_header(path, bytes, root_bytes.size(), kIndexMagic, "root", &header_end, &recorded, gallery);
    if (header_end != root_bytes.size()) throw corrupt(path, "bytes after the root header", gallery);
    const auto& h = idx.header;
    if (!h.contains("spec")) throw corrupt(path, "header field 'spec' missing", gallery);
    idx.spec = ModelSpec::from_json(h["spec"], path);
    idx.spec_fingerprint = str_field(h, "spec_fingerprint", path, gallery);
    idx.gallery_root = str_field(h, "gallery_root", path, gallery);
    idx.dim = int_field(h, "dim", path, gallery);
    idx.count = int_field(h, "count", path, gallery);
    idx.generation = int_field(h, "generation", path, gallery);
    if (idx.dim <= 0 || idx.spec.embedding_dim != idx.dim)
        throw corrupt(path, "dim " + std::to_string(idx.dim) + " differs from the spec's embedding_dim", gallery);
    const std::vector<SegmentRecord> records = segment_records(h, path, gallery);
    int64_t live = 0;
    for (const auto& r : records) live += r.count - r.dead_count;
    if (live != idx.count) throw corrupt(path, "count " + std::to_string(idx.count) + " is not the segments' live rows (" + std::to_string(live) + ")", gallery);
    const std::string dir = index_segment_dir(path);
    idx.entries.reserve(static_cast<size_t>(idx.count));
    idx.rows.reserve(static_cast<size_t>(idx.count));
    for (const auto& r : records) {
        IndexSegment seg = read_segment(dir, r, idx.dim, idx.spec_fingerprint, gallery);
        if (!r.dead_name.empty()) seg.dead = read_tombstone(dir, r, gallery), seg.dead_name = r.dead_name;
        if (verify_data) verify_segment(dir + "/" + r.name, seg, idx.dim, gallery);
        size_t next_dead = 0;
        for (int64_t row = 0; row < seg.count; ++row) {
            if (next_dead < seg.dead.size() && seg.dead[next_dead] == row) {
                ++next_dead;
                continue;
            }
            const uint64_t start = row ? seg.path_end[row - 1] : 0;
            idx.entries.push_back({std::string(seg.path_blob + start, seg.path_end[row] - 1 - start), seg.size[row], seg.mtime_ns[row],
                                   to_hex(seg.sha256 + 32 * row, 32)});
            idx.rows.push_back(seg.rows + row * idx.dim);
        }
        idx.segments.push_back(std::move(seg));
    }
    if (verify_data) {
        std::unordered_set<std::string_view> seen;
        seen.reserve(idx.entries.size());
        for (const auto& e : idx.entries)
            if (!seen.insert(e.path).second) throw corrupt(path, "path '" + e.path + "' is listed twice among the live rows", gallery);
    }
    return idx;
}

std::string read_root_bytes(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) throw Error(path + ": gallery index not found; build it with `irreid-edge index --gallery DIR`");
        throw Error(path + ": cannot open the gallery index (" + std::strerror(errno) + ")");
    }
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        throw Error(path + ": not a regular file (--index takes the index file)");
    }
    std::string out;
    char buf[1 << 16];
    for (;;) {
        const ssize_t got = ::read(fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        out.append(buf, static_cast<size_t>(got));
        if (out.size() > kMaxHeaderBytes + 16) break;  // corrupt: parse_header says so
    }
    ::close(fd);
    return out;
}

// --- writing -----------------------------------------------------------------------------------

void write_all(int fd, const void* p, size_t n, const std::string& path) {
    const auto* c = static_cast<const char*>(p);
    while (n > 0) {
        const ssize_t w = ::write(fd, c, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) throw Error(path + ": write failed (" + std::strerror(errno) + "; disk full?); the previous index is intact");
        c += w, n -= static_cast<size_t>(w);
    }
}

void fsync_dir(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

std::string dir_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string base_of(const std::string& path) {
    const size_t slash = path.rfind('/');
    return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string random_hex(size_t digits) {
    static std::mt19937_64 rng(std::random_device{}());
    static const char* hex = "0123456789abcdef";
    std::string out;
    for (size_t i = 0; i < digits; ++i) out += hex[rng() & 15];
    return out;
}

// Durably, as runtime.base.fileio.atomic_write: ".<name>.<pid>.<8 hex>.tmp" beside path (the name its
// remove_stale_temps recognises), fsync, rename over path, fsync of the folder.
void durable_write(const std::string& path, const std::vector<std::pair<const void*, size_t>>& chunks) {
    const std::string tmp = dir_of(path) + "/." + base_of(path) + "." + std::to_string(::getpid()) + "." + random_hex(8) + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) throw Error(path + ": cannot write (" + std::strerror(errno) + "); check the folder exists and is writable");
    try {
        for (const auto& [p, n] : chunks) write_all(fd, p, n, path);
        if (::fsync(fd) != 0) throw Error(path + ": fsync failed (" + std::strerror(errno) + "); the previous index is intact");
    } catch (...) {
        ::close(fd);
        std::remove(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(path + ": cannot replace the file; check permissions");
    }
    fsync_dir(dir_of(path));
}

// A header with its checksum: j's JSON (compact) with "header_sha256" appended LAST, then filled in.
std::string summed_header(const nlohmann::ordered_json& j, const char* magic) {
    std::string body;
    try {
        body = j.dump();
    } catch (const nlohmann::json::exception& e) {
        throw Error(std::string("write_index: the header cannot be written as JSON (") + e.what() + ")");
    }
    std::string text = body.substr(0, body.size() - 1) + kSumKey + std::string(64, '0') + "\"}";
    text.replace(text.size() - 66, 64, header_digest(prefix_bytes(magic, text.size()), text));
    return text;
}

uint64_t align_up(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

// The generation of the root at path (format 2, readable), or 0.
int64_t previous_generation(const std::string& path) {
    try {
        const std::string bytes = read_root_bytes(path);
        if (bytes.size() < 16 || bytes.compare(0, 8, kIndexMagic) != 0) return 0;
        const uint64_t hlen = read_le64(reinterpret_cast<const unsigned char*>(bytes.data()) + 8);
        if (hlen > bytes.size() - 16) return 0;
        const auto h = nlohmann::json::parse(bytes.substr(16, hlen));
        return h.value("generation", int64_t{0});
    } catch (const std::exception&) {
        return 0;
    }
}

class FileLock {
public:
    explicit FileLock(const std::string& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666)) {
        if (fd_ < 0) throw Error(path + ": cannot create the index lock (" + std::strerror(errno) + ")");
        while (::flock(fd_, LOCK_EX) != 0) {
            if (errno != EINTR) {
                ::close(fd_);
                throw Error(path + ": cannot lock the index (" + std::strerror(errno) + ")");
            }
        }
    }
    ~FileLock() { ::close(fd_); }  // closing releases the lock
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_;
};

// ".<name>.<pid>.<8 hex>.tmp" of another process that is still running.
bool live_temp(const std::string& f) {
    if (f.size() < 6 || f[0] != '.' || !ends_with(f, ".tmp")) return false;
    const std::string stem = f.substr(0, f.size() - 4);
    const size_t dot_hex = stem.rfind('.');
    if (dot_hex == std::string::npos || stem.size() - dot_hex - 1 != 8) return false;
    const size_t dot_pid = stem.rfind('.', dot_hex - 1);
    if (dot_pid == std::string::npos || dot_pid == 0 || dot_hex - dot_pid < 2) return false;
    const std::string pid = stem.substr(dot_pid + 1, dot_hex - dot_pid - 1);
    if (!std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; }) || pid.size() > 9) return false;
    const long p = std::stol(pid);
    return p != ::getpid() && (::kill(static_cast<pid_t>(p), 0) == 0 || errno == EPERM);
}

uint8_t hex_value(char c) {
    if (c >= '0' && c <= '9') return static_cast<uint8_t>(c - '0');
    if (c >= 'a' && c <= 'f') return static_cast<uint8_t>(c - 'a' + 10);
    if (c >= 'A' && c <= 'F') return static_cast<uint8_t>(c - 'A' + 10);
    throw Error("write_index: an entry's sha256 is not 64 hex digits");
}

}  // namespace

std::string default_index_path(const std::string& gallery_dir) {
    return gallery_dir + "/" + kIndexDirName + "/" + kIndexFileName;
}

std::string index_segment_dir(const std::string& index_path) { return index_path + ".d"; }

GalleryIndex read_index(const std::string& path, bool verify_data, const std::string& gallery) {
    std::string previous;
    for (int attempt = 0;; ++attempt) {
        const std::string root = read_root_bytes(path);
        try {
            return read_once(path, root, verify_data, gallery);
        } catch (const Vanished& v) {
            // A compaction removed it after we read the root: read the new root. The same root again
            // (or too many tries) means the file is really missing.
            if (root == previous || attempt + 1 >= kReadTries) throw corrupt(path, v.path + " is missing", gallery);
            previous = root;
        }
    }
}

void write_index(const std::string& path, const ModelSpec& spec, const std::string& gallery_root,
                 const std::vector<IndexEntry>& entries, const std::vector<uint16_t>& data, int64_t dim) {
    const auto count = static_cast<int64_t>(entries.size());
    if (dim <= 0 || static_cast<int64_t>(data.size()) != count * dim) throw Error("write_index: data size is not count x dim");
    if (spec.embedding_dim != dim)
        throw Error("write_index: embedding dim " + std::to_string(dim) + " != spec.embedding_dim " + std::to_string(spec.embedding_dim));
    // The manifest sections.
    std::string blob;
    std::vector<uint64_t> path_end, path_hash;
    std::vector<int64_t> sizes, mtimes;
    std::vector<uint8_t> digests;
    std::unordered_set<std::string> seen;
    for (const auto& e : entries) {
        if (!valid_utf8(reinterpret_cast<const unsigned char*>(e.path.data()), e.path.size()) || e.path.find('\0') != std::string::npos ||
            !safe_relative_path(e.path.data(), e.path.size()))
            throw Error("write_index: entry path '" + e.path + "' is not a relative path inside the gallery");
        if (!seen.insert(e.path).second) throw Error("write_index: entry path '" + e.path + "' is listed twice");
        if (e.sha256.size() != 64) throw Error("write_index: the sha256 of '" + e.path + "' is not 64 hex digits");
        blob += e.path;
        blob += '\0';
        path_end.push_back(blob.size());
        path_hash.push_back(blake2b_64(e.path.data(), e.path.size()));
        sizes.push_back(e.size), mtimes.push_back(e.mtime_ns);
        for (size_t i = 0; i < 64; i += 2) digests.push_back(static_cast<uint8_t>(hex_value(e.sha256[i]) << 4 | hex_value(e.sha256[i + 1])));
    }
    QuantisedRows q;
    try {
        q = quantise_rows(data.data(), count, dim);
    } catch (const Error&) {
        throw Error("write_index: an embedding row holds NaN or infinite values");
    }
    const std::pair<const void*, size_t> payload[kSectionCount] = {
        {data.data(), data.size() * 2}, {q.codes.data(), q.codes.size()}, {q.scale.data(), q.scale.size() * 4},
        {q.rnorm.data(), q.rnorm.size() * 4}, {q.xnorm.data(), q.xnorm.size() * 4}, {path_end.data(), path_end.size() * 8},
        {blob.data(), blob.size()}, {path_hash.data(), path_hash.size() * 8}, {sizes.data(), sizes.size() * 8},
        {mtimes.data(), mtimes.size() * 8}, {digests.data(), digests.size()}};
    std::string sums[kSectionCount];
    for (int s = 0; s < kSectionCount; ++s) sums[s] = sha256_hex(payload[s].first, payload[s].second);

    FileLock lock(path + ".lock");  // runtime.gallery.index.index_lock: the same file, the same flock
    const std::string dir = index_segment_dir(path);
    if (::mkdir(dir.c_str(), 0777) != 0 && errno != EEXIST) throw Error(dir + ": cannot create the segment folder (" + std::strerror(errno) + ")");
    const int64_t generation = previous_generation(path) + 1;
    char gen[32];
    std::snprintf(gen, sizeof gen, "%06lld", static_cast<long long>(generation));
    const std::string name = std::string("seg-") + gen + "-" + random_hex(6) + ".irs";

    // The segment: section offsets depend on the header's length, which depends on their digits: iterate.
    std::string text;
    uint64_t offsets[kSectionCount] = {};
    for (int round = 0; round < 8; ++round) {
        nlohmann::ordered_json sections = nlohmann::ordered_json::object();
        for (int s = 0; s < kSectionCount; ++s)
            sections[kSectionNames[s]] = {{"offset", offsets[s]}, {"nbytes", payload[s].second}, {"sha256", sums[s]}};
        const nlohmann::ordered_json h = {{"format_version", kIndexFormatVersion}, {"kind", "segment"}, {"dim", dim}, {"count", count},
                                          {"spec_fingerprint", spec.fingerprint()}, {"created_by", kCreatedBy}, {"sections", sections}};
        text = summed_header(h, kSegmentMagic);
        uint64_t end = 16 + text.size();
        bool stable = true;
        for (int s = 0; s < kSectionCount; ++s) {
            const uint64_t at = align_up(end);
            stable = stable && at == offsets[s];
            offsets[s] = at, end = at + payload[s].second;
        }
        if (stable) break;
        if (round == 7) throw Error("write_index: segment header length did not converge");
    }
    const std::string prefix = prefix_bytes(kSegmentMagic, text.size());
    const std::string zeros(kAlign, '\0');
    std::vector<std::pair<const void*, size_t>> chunks = {{prefix.data(), prefix.size()}, {text.data(), text.size()}};
    uint64_t end = 16 + text.size();
    for (int s = 0; s < kSectionCount; ++s) {
        chunks.emplace_back(zeros.data(), offsets[s] - end);
        chunks.push_back(payload[s]);
        end = offsets[s] + payload[s].second;
    }
    durable_write(dir + "/" + name, chunks);
    const std::string segment_sum = text.substr(text.size() - 66, 64);

    // The root, then the files it no longer names (a killed writer's leftovers, the old segments).
    nlohmann::ordered_json segments = nlohmann::ordered_json::array();
    segments.push_back({{"name", name}, {"count", count}, {"header_sha256", segment_sum}, {"dead", nullptr}});
    const nlohmann::ordered_json root = {{"format_version", kIndexFormatVersion}, {"kind", "root"},
                                         {"spec", nlohmann::ordered_json::parse(spec.raw.dump())}, {"spec_fingerprint", spec.fingerprint()},
                                         {"dim", dim}, {"count", count}, {"generation", generation}, {"created_by", kCreatedBy},
                                         {"gallery_root", gallery_root}, {"segments", segments}};
    const std::string root_text = summed_header(root, kIndexMagic);
    const std::string root_prefix = prefix_bytes(kIndexMagic, root_text.size());
    durable_write(path, {{root_prefix.data(), root_prefix.size()}, {root_text.data(), root_text.size()}});
    // As runtime/gallery/index.py's _clean_folder: a live process's temp file (a reader writing a
    // segment's .verified marker) is left alone; format 1's marker beside the root goes too.
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* ent = ::readdir(d)) {
            const std::string f = ent->d_name;
            if (f == "." || f == ".." || f == name || f == name + ".verified" || live_temp(f)) continue;
            ::unlink((dir + "/" + f).c_str());
        }
        ::closedir(d);
    }
    ::unlink((path + ".verified").c_str());
}

}  // namespace irreid
