#include "irreid/index.h"

#include <fstream>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "irreid/error.h"
#include "irreid/npy.h"
#include "irreid/sha256.h"

namespace irreid {
namespace {

constexpr int kIndexFormatVersion = 1;
constexpr uint64_t kMaxHeaderBytes = uint64_t(1) << 31;

// The header checksum, as runtime/gallery/index.py writes it: "header_sha256" is the header's LAST key, and
// its value is the sha256 of the 16-byte prefix plus the header with those 64 hex digits written as "0".
const std::string kSumKey = ",\"header_sha256\":\"";
const size_t kSumTail = kSumKey.size() + 64 + 2;  // the key, 64 hex digits, "}

std::string prefix_bytes(uint64_t header_len) {
    std::string out(kIndexMagic, 8);
    for (int i = 0; i < 8; ++i) out += static_cast<char>((header_len >> (8 * i)) & 0xFF);
    return out;
}

std::string header_digest(const std::string& prefix, const std::string& text) {
    std::string zeroed = prefix + text;
    zeroed.replace(zeroed.size() - 66, 64, std::string(64, '0'));
    return sha256_hex(zeroed.data(), zeroed.size());
}

void check_header_sum(const std::string& path, const unsigned char* pre, const std::string& text) {
    if (text.size() < kSumTail || text.compare(text.size() - kSumTail, kSumKey.size(), kSumKey) != 0 ||
        text.compare(text.size() - 2, 2, "\"}") != 0)
        throw Error(path + ": index header has no checksum (a damaged header, or an index written by an older irreid-edge); "
                           "rebuild it with `irreid-edge index`");
    const std::string recorded = text.substr(text.size() - 66, 64);
    if (header_digest(std::string(reinterpret_cast<const char*>(pre), 16), text) != recorded)
        throw Error(path + ": index header checksum mismatch (corrupted file); rebuild it with `irreid-edge index`");
}

uint64_t read_le64(const unsigned char* b) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | b[i];
    return v;
}

template <typename T>
T header_field(const nlohmann::json& h, const char* key, const std::string& path) {
    if (!h.contains(key)) throw Error(path + ": index header has no '" + key + "'; rebuild it with `irreid-edge index`");
    try {
        return h.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
        throw Error(path + ": index header field '" + key + "' has the wrong type; rebuild it with `irreid-edge index`");
    }
}

std::vector<IndexEntry> parse_entries(const nlohmann::json& h, const std::string& path) {
    const auto& list = h.contains("entries") ? h["entries"] : nlohmann::json();
    if (!list.is_array()) throw Error(path + ": index header has no 'entries' list; rebuild it with `irreid-edge index`");
    std::vector<IndexEntry> entries;
    entries.reserve(list.size());
    for (const auto& e : list) {
        IndexEntry x;
        x.path = header_field<std::string>(e, "path", path);
        x.size = e.value("size", int64_t{0});
        x.mtime_ns = e.value("mtime_ns", int64_t{0});
        x.sha256 = e.contains("sha256") && e["sha256"].is_string() ? e["sha256"].get<std::string>() : "";
        entries.push_back(std::move(x));
    }
    return entries;
}

}  // namespace

std::string default_index_path(const std::string& gallery_dir) {
    return gallery_dir + "/" + kIndexDirName + "/" + kIndexFileName;
}

GalleryIndex read_index(const std::string& path, bool verify_data) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) throw Error(path + ": gallery index not found; build it with `irreid-edge index --gallery DIR`");
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open the gallery index; check permissions");
    const auto file_size = static_cast<uint64_t>(st.st_size);
    unsigned char pre[16];
    f.read(reinterpret_cast<char*>(pre), 16);
    if (f.gcount() != 16 || std::string(reinterpret_cast<char*>(pre), 8) != kIndexMagic)
        throw Error(path + ": not an irreid-edge gallery index (bad magic); rebuild it with `irreid-edge index`");
    const uint64_t hlen = read_le64(pre + 8);
    if (hlen > kMaxHeaderBytes || 16 + hlen > file_size) throw Error(path + ": index header length is corrupt; rebuild the index");
    std::string text(hlen, '\0');
    f.read(text.data(), static_cast<std::streamsize>(hlen));
    check_header_sum(path, pre, text);
    GalleryIndex idx;
    try {
        idx.header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
        throw Error(path + ": index header is not valid JSON (" + std::string(e.what()) + "); rebuild the index");
    }
    const auto& h = idx.header;
    if (header_field<int>(h, "format_version", path) != kIndexFormatVersion)
        throw Error(path + ": index format_version is not 1; rebuild it with this irreid-edge");
    if (header_field<std::string>(h, "dtype", path) != "float16") throw Error(path + ": index dtype is not float16; rebuild the index");
    idx.count = header_field<int64_t>(h, "count", path);
    idx.dim = header_field<int64_t>(h, "dim", path);
    const auto offset = header_field<uint64_t>(h, "data_offset", path);
    if (idx.count < 0 || idx.dim <= 0 || offset % 64 != 0 || offset < 16 + hlen)
        throw Error(path + ": index count/dim/data_offset are inconsistent; rebuild the index");
    const uint64_t data_bytes = static_cast<uint64_t>(idx.count) * static_cast<uint64_t>(idx.dim) * 2;
    if (offset + data_bytes != file_size)
        throw Error(path + ": index is truncated or has trailing bytes (" + std::to_string(file_size) + " bytes, expected " +
                    std::to_string(offset + data_bytes) + "); rebuild the index");
    idx.spec = ModelSpec::from_json(header_field<nlohmann::json>(h, "spec", path), path);
    idx.spec_fingerprint = header_field<std::string>(h, "spec_fingerprint", path);
    idx.gallery_root = h.contains("gallery_root") && h["gallery_root"].is_string() ? h["gallery_root"].get<std::string>() : "";
    if (idx.spec.embedding_dim != idx.dim)
        throw Error(path + ": index dim " + std::to_string(idx.dim) + " differs from its spec's embedding_dim; rebuild the index");
    idx.entries = parse_entries(h, path);
    if (static_cast<int64_t>(idx.entries.size()) != idx.count) throw Error(path + ": index entries do not match its count; rebuild the index");
    // Map instead of read: the rows are touched once per probe, and pages stay shared between processes.
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) throw Error(path + ": cannot open the gallery index; check permissions");
    void* base = ::mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) throw Error(path + ": cannot memory-map the gallery index");
    idx.mapping = std::shared_ptr<const void>(base, [file_size](const void* p) { ::munmap(const_cast<void*>(p), file_size); });
    idx.data = reinterpret_cast<const uint16_t*>(static_cast<const char*>(base) + offset);
    if (verify_data) {
        const std::string want = header_field<std::string>(h, "data_sha256", path);
        if (sha256_hex(idx.data, data_bytes) != want)
            throw Error(path + ": index data does not match its data_sha256 (corrupted file); rebuild the index");
    }
    return idx;
}

void write_index(const std::string& path, const ModelSpec& spec, const std::string& gallery_root,
                 const std::vector<IndexEntry>& entries, const std::vector<uint16_t>& data, int64_t dim) {
    const auto count = static_cast<int64_t>(entries.size());
    if (static_cast<int64_t>(data.size()) != count * dim) throw Error("write_index: data size is not count x dim");
    nlohmann::json list = nlohmann::json::array();
    for (const auto& e : entries) list.push_back({{"path", e.path}, {"size", e.size}, {"mtime_ns", e.mtime_ns}, {"sha256", e.sha256}});
    const size_t data_bytes = data.size() * 2;
    nlohmann::json h = {{"format_version", kIndexFormatVersion}, {"spec", spec.raw}, {"spec_fingerprint", spec.fingerprint()},
                        {"count", count}, {"dim", dim}, {"dtype", "float16"}, {"data_offset", 0},
                        {"data_sha256", sha256_hex(data.data(), data_bytes)}, {"created_by", "irreid-edge-native"},
                        {"gallery_root", gallery_root}, {"entries", list}};
    // data_offset depends on the header's own length: iterate until the padded offset is stable.
    // nlohmann::json orders keys alphabetically, so the checksum key is appended by hand: last.
    std::string text;
    uint64_t offset = 0;
    for (int i = 0; i < 4; ++i) {
        h["data_offset"] = offset;
        const std::string body = h.dump();
        text = body.substr(0, body.size() - 1) + kSumKey + std::string(64, '0') + "\"}";
        const uint64_t want = (16 + text.size() + 63) / 64 * 64;
        if (want == offset) break;
        offset = want;
    }
    std::string out = prefix_bytes(text.size());
    text.replace(text.size() - 66, 64, header_digest(out, text));
    out += text;
    out.append(offset - out.size(), '\0');
    out.append(reinterpret_cast<const char*>(data.data()), data_bytes);
    atomic_write(path, out);
}

}  // namespace irreid
