// Index format 2: round trip, the int8 quantiser and BLAKE2b against Python's values, refusals of
// damaged files (root, segment, tombstone), logical row order with tombstones; ranking order and ties.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>

#include <dirent.h>
#include <sys/stat.h>

#include "irreid/blake2b.h"
#include "irreid/error.h"
#include "irreid/half.h"
#include "irreid/index.h"
#include "irreid/quantise.h"
#include "irreid/rank.h"
#include "irreid/sha256.h"
#include <doctest/doctest.h>
#include "test_util.h"

namespace {

irreid::ModelSpec tiny_spec(int dim) {
    return irreid::ModelSpec::from_json({{"name", "tiny"}, {"modality", "rgb"}, {"input_height", 32}, {"input_width", 16}, {"embedding_dim", dim}}, "t");
}

// A fresh folder per index: <dir>/index.irx and <dir>/index.irx.d/.
std::string fresh_dir(const std::string& name) {
    const std::string dir = irreid::test::scratch_dir() + "/" + name;
    ::mkdir(dir.c_str(), 0777);
    return dir;
}

std::string write_tiny_index(const std::string& name, int count, int dim, std::vector<uint16_t>* data_out = nullptr) {
    std::mt19937 rng(7);
    std::normal_distribution<float> n01;
    std::vector<uint16_t> data(static_cast<size_t>(count) * dim);
    for (auto& h : data) h = irreid::float_to_half(n01(rng));
    std::vector<irreid::IndexEntry> entries;
    for (int i = 0; i < count; ++i) entries.push_back({"id" + std::to_string(i) + ".jpg", 100 + i, 5, std::string(64, '0')});
    const std::string path = fresh_dir(name) + "/index.irx";
    irreid::write_index(path, tiny_spec(dim), "/gallery", entries, data, dim);
    if (data_out) *data_out = data;
    return path;
}

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes; }

std::vector<std::string> list_dir(const std::string& dir) {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(dir.c_str())) {
        while (const dirent* e = ::readdir(d))
            if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") out.push_back(e->d_name);
        ::closedir(d);
    }
    std::sort(out.begin(), out.end());
    return out;
}

uint64_t le64(const std::string& b, size_t at) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
    return v;
}

// A file's JSON header (after the 16-byte prefix).
nlohmann::json header_of(const std::string& bytes) { return nlohmann::json::parse(bytes.substr(16, le64(bytes, 8))); }

// Rewrites a file's header from j (the checksum recomputed, header_sha256 last). A segment keeps its
// sections at their offsets (the new header must fit before the first): a well-formed file that lies.
std::string resum(const std::string& bytes, nlohmann::ordered_json j) {
    const std::string magic = bytes.substr(0, 8);
    j.erase("header_sha256");
    const std::string body = j.dump();
    std::string text = body.substr(0, body.size() - 1) + ",\"header_sha256\":\"" + std::string(64, '0') + "\"}";
    std::string prefix = magic;
    for (int i = 0; i < 8; ++i) prefix += static_cast<char>((text.size() >> (8 * i)) & 0xFF);
    std::string all = prefix + text;
    const std::string sum = irreid::sha256_hex(all.data(), all.size());
    all.replace(all.size() - 66, 64, sum);
    if (magic == irreid::kIndexMagic) return all;  // a root: nothing after the header
    const size_t first = header_of(bytes)["sections"]["rows"]["offset"].get<size_t>();
    REQUIRE(all.size() <= first);
    all.append(first - all.size(), '\0');
    return all + bytes.substr(first);
}

nlohmann::ordered_json ordered_header(const std::string& bytes) { return nlohmann::ordered_json::parse(bytes.substr(16, le64(bytes, 8))); }

std::string segment_path(const std::string& index_path) {
    const auto root = header_of(slurp(index_path));
    return irreid::index_segment_dir(index_path) + "/" + root["segments"][0]["name"].get<std::string>();
}

}  // namespace

TEST_CASE("blake2b_matches_python") {
    // hashlib.blake2b(b"abc").hexdigest() (RFC 7693 appendix A), and digest_size=8 values as
    // int.from_bytes(hashlib.blake2b(s, digest_size=8).digest(), "little") prints them.
    uint8_t full[64];
    irreid::blake2b("abc", 3, full, 64);
    CHECK_EQ(irreid::sha256_hex("", 0).size(), 64u);
    std::string hex;
    for (uint8_t b : full) hex += "0123456789abcdef"[b >> 4], hex += "0123456789abcdef"[b & 15];
    CHECK_EQ(hex, std::string("ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d17d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"));
    CHECK_EQ(irreid::blake2b_64("", 0), 13020603013274838756ULL);
    CHECK_EQ(irreid::blake2b_64("abc", 3), 6455300059550759896ULL);
    CHECK_EQ(irreid::blake2b_64("a.jpg", 5), 9918916968011810814ULL);
    CHECK_EQ(irreid::blake2b_64("sub/b.jpg", 9), 3654620020047502748ULL);
    CHECK_EQ(irreid::blake2b_64("caf\xc3\xa9/x.png", 11), 3218377449724529369ULL);
    const std::string x200(200, 'x');  // more than one 128-byte block
    CHECK_EQ(irreid::blake2b_64(x200.data(), x200.size()), 10205568089174323286ULL);
    const std::string x128(128, 'x');  // exactly one block: the last block is a full one
    uint8_t d8[8];
    irreid::blake2b(x128.data(), x128.size(), d8, 8);
    CHECK_NE(irreid::blake2b_64(x128.data(), x128.size()), irreid::blake2b_64(x200.data(), 127));
}

TEST_CASE("quantise_matches_python") {
    // runtime.search.int8.quantise_rows on these float16 rows (values printed by Python):
    // row [0.5, -1.0, 0.25, 0.0]: scale = up17(1/127) = 0.007874131 (bits 0x3c010280), codes
    // rint(x / scale) + 128 = [191, 1, 160, 128]; a zero row: scale 1, codes 128.
    const std::vector<uint16_t> rows = {irreid::float_to_half(0.5f), irreid::float_to_half(-1.0f), irreid::float_to_half(0.25f), 0,
                                        0, 0x8000, 0, 0};
    const irreid::QuantisedRows q = irreid::quantise_rows(rows.data(), 2, 4);
    uint32_t bits;
    std::memcpy(&bits, &q.scale[0], 4);
    CHECK_EQ(bits, 0x3c010280u);
    CHECK(q.codes == std::vector<uint8_t>{191, 1, 160, 128, 128, 128, 128, 128});
    CHECK_EQ(q.scale[1], 1.0f);
    CHECK(q.xnorm[0] >= std::sqrt(1.3125f));
    CHECK(q.rnorm[1] >= 0.0f);
    const std::vector<uint16_t> bad = {irreid::float_to_half(1.0f), 0x7C00};
    CHECK_THROWS_CONTAINING(irreid::quantise_rows(bad.data(), 1, 2), "NaN or infinite");
}

TEST_CASE("index_round_trip") {
    std::vector<uint16_t> data;
    const std::string path = write_tiny_index("rt", 5, 8, &data);
    const irreid::GalleryIndex idx = irreid::read_index(path);
    CHECK_EQ(idx.count, 5);
    CHECK_EQ(idx.dim, 8);
    CHECK_EQ(idx.generation, 1);
    REQUIRE_EQ(idx.segments.size(), 1u);
    REQUIRE_EQ(idx.rows.size(), 5u);
    for (int r = 0; r < 5; ++r) CHECK(std::equal(data.begin() + r * 8, data.begin() + (r + 1) * 8, idx.rows[r]));
    CHECK_EQ(idx.entries[3].path, std::string("id3.jpg"));
    CHECK_EQ(idx.entries[3].size, 103);
    CHECK_EQ(idx.entries[3].sha256, std::string(64, '0'));
    CHECK_EQ(idx.gallery_root, std::string("/gallery"));
    CHECK_EQ(idx.spec_fingerprint, idx.spec.fingerprint());
    CHECK_EQ(irreid::default_index_path("g"), std::string("g/.irreid/index.irx"));
    // The segment: every section present, 64-aligned, in order; the file ends at the last one.
    const irreid::IndexSegment& seg = idx.segments[0];
    const auto& sections = seg.header["sections"];
    uint64_t end = 0;
    for (const char* name : {"rows", "codes", "scale", "rnorm", "xnorm", "path_end", "path_blob", "path_hash", "size", "mtime_ns", "sha256"}) {
        REQUIRE(sections.contains(name));
        CHECK_EQ(sections[name]["offset"].get<uint64_t>() % 64, 0u);
        CHECK(sections[name]["offset"].get<uint64_t>() >= end);
        end = sections[name]["offset"].get<uint64_t>() + sections[name]["nbytes"].get<uint64_t>();
    }
    CHECK_EQ(slurp(irreid::index_segment_dir(path) + "/" + seg.name).size(), end);
    const irreid::QuantisedRows q = irreid::quantise_rows(data.data(), 5, 8);
    CHECK(std::equal(q.codes.begin(), q.codes.end(), seg.codes));
    CHECK(std::equal(q.scale.begin(), q.scale.end(), seg.scale));
    CHECK_EQ(seg.path_hash[3], irreid::blake2b_64("id3.jpg", 7));
    CHECK_EQ(seg.path_end[0], 8u);  // "id0.jpg" + NUL
    // A second write replaces the first: the next generation, the old segment removed, the marker kept.
    std::ofstream(irreid::index_segment_dir(path) + "/leftover.tmp") << "x";
    irreid::write_index(path, tiny_spec(8), "/gallery", {{"a.jpg", 1, 2, std::string(64, 'f')}}, std::vector<uint16_t>(data.begin(), data.begin() + 8), 8);
    const irreid::GalleryIndex again = irreid::read_index(path);
    CHECK_EQ(again.generation, 2);
    CHECK_EQ(again.count, 1);
    CHECK_EQ(list_dir(irreid::index_segment_dir(path)), std::vector<std::string>{again.segments[0].name});
    CHECK_EQ(again.segments[0].name.rfind("seg-000002-", 0), 0u);
}

TEST_CASE("index_empty") {
    const std::string path = fresh_dir("empty") + "/index.irx";
    irreid::write_index(path, tiny_spec(8), "/gallery", {}, {}, 8);
    const irreid::GalleryIndex idx = irreid::read_index(path);
    CHECK_EQ(idx.count, 0);
    CHECK_EQ(idx.segments.size(), 1u);
    const irreid::GalleryMatrix g(idx.rows, idx.dim);
    const float probe[8] = {1, 0, 0, 0, 0, 0, 0, 0};
    CHECK(g.top_k(probe, 5).empty());
}

TEST_CASE("index_writer_refusals") {
    const std::string path = fresh_dir("wr") + "/index.irx";
    const std::vector<uint16_t> two(16, irreid::float_to_half(0.25f));
    const std::string h(64, '0');
    CHECK_THROWS_CONTAINING(irreid::write_index(path, tiny_spec(8), "/g", {{"../x.jpg", 1, 1, h}}, std::vector<uint16_t>(8), 8), "not a relative path");
    CHECK_THROWS_CONTAINING(irreid::write_index(path, tiny_spec(8), "/g", {{"/x.jpg", 1, 1, h}}, std::vector<uint16_t>(8), 8), "not a relative path");
    CHECK_THROWS_CONTAINING(irreid::write_index(path, tiny_spec(8), "/g", {{"a.jpg", 1, 1, h}, {"a.jpg", 1, 1, h}}, two, 8), "listed twice");
    std::vector<uint16_t> nan = two;
    nan[3] = 0x7E00;
    CHECK_THROWS_CONTAINING(irreid::write_index(path, tiny_spec(8), "/g", {{"a.jpg", 1, 1, h}, {"b.jpg", 1, 1, h}}, nan, 8), "NaN");
    CHECK_THROWS_CONTAINING(irreid::write_index(path, tiny_spec(4), "/g", {{"a.jpg", 1, 1, h}, {"b.jpg", 1, 1, h}}, two, 8), "embedding_dim");
}

TEST_CASE("index_refusals_root") {
    const std::string path = write_tiny_index("rr", 4, 8);
    const std::string bytes = slurp(path);
    const std::string dir = irreid::test::scratch_dir();
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/none.irx"), "not found");
    spit(dir + "/magic.irx", "NOTANIDX" + bytes.substr(8));
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/magic.irx"), "bad magic");
    // format 1: one line naming --rebuild, by the magic or by the version
    spit(dir + "/v1.irx", "IRREIDX1" + bytes.substr(8));
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/v1.irx", false, "/data/g"),
                            "index format 1 was written by an older irreid-edge; run `irreid-edge index --gallery /data/g --rebuild`");
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/v1.irx"), "`irreid-edge index --gallery DIR --rebuild`");
    auto h = ordered_header(bytes);
    h["format_version"] = 1;
    spit(dir + "/v1b.irx", resum(bytes, h));
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/v1b.irx"), "index format 1 was written by an older irreid-edge");
    h["format_version"] = 3;
    spit(dir + "/v3.irx", resum(bytes, h));
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/v3.irx"), "format_version 3 is not 2");
    // the checksum
    std::string edited = bytes;
    edited[edited.find("\"count\":4") + 8] = '5';
    spit(dir + "/edited.irx", edited);
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/edited.irx"), "header checksum mismatch");
    std::string unsummed = bytes;
    unsummed.replace(unsummed.find("header_sha256\":\"", unsummed.size() - 90), 13, "header_sha257");
    spit(dir + "/nosum.irx", unsummed);
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/nosum.irx"), "no header checksum");
    spit(dir + "/trail.irx", bytes + "x");
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/trail.irx"), "bytes after the root header");
    // well-formed roots that lie: the live count, the segment's recorded checksum, a name outside <index>.d
    h = ordered_header(bytes);
    h["count"] = 5;
    spit(path, resum(bytes, h));
    CHECK_THROWS_CONTAINING(irreid::read_index(path), "live rows");
    h = ordered_header(bytes);
    h["segments"][0]["header_sha256"] = std::string(64, 'a');
    spit(path, resum(bytes, h));
    CHECK_THROWS_CONTAINING(irreid::read_index(path), "differs from the root's record");
    for (const char* name : {"../index.irx", "a/b.irs", "", "..", ".hidden.irs", "seg.irs.verified"}) {
        h = ordered_header(bytes);
        h["segments"][0]["name"] = name;
        spit(path, resum(bytes, h));
        CHECK_THROWS_CONTAINING(irreid::read_index(path), "is not a file name");
    }
    h = ordered_header(bytes);
    h["segments"][0]["name"] = "seg-gone.irs";
    spit(path, resum(bytes, h));
    CHECK_THROWS_CONTAINING(irreid::read_index(path), "seg-gone.irs is missing");
    spit(path, bytes);
    CHECK_EQ(irreid::read_index(path).count, 4);
}

TEST_CASE("index_refusals_segment") {
    std::vector<uint16_t> data;
    const std::string path = write_tiny_index("rs", 4, 8, &data);
    const std::string seg = segment_path(path);
    const std::string bytes = slurp(seg);
    const auto sections = header_of(bytes)["sections"];
    auto at = [&](const char* s) { return sections[s]["offset"].get<size_t>(); };
    auto refused = [&](const std::string& damaged, bool verify, const std::string& needle) {
        spit(seg, damaged);
        CHECK_THROWS_CONTAINING(irreid::read_index(path, verify), needle);
        spit(seg, bytes);
    };
    std::string b = bytes;
    b[b.size() - 1] ^= 0x01;  // the last byte of the sha256 section: only the full check sees it
    spit(seg, b);
    CHECK_EQ(irreid::read_index(path, false).count, 4);
    CHECK_THROWS_CONTAINING(irreid::read_index(path, true), "section 'sha256' sha256 mismatch");
    spit(seg, bytes);
    b = bytes;
    b[at("rows") + 3] ^= 0x01;
    refused(b, true, "section 'rows' sha256 mismatch");
    refused(bytes.substr(0, bytes.size() - 1), false, "inside the file");
    refused(bytes + std::string(64, '\0'), false, "its sections end at");
    b = bytes;
    b[20] = b[20] == ' ' ? '\t' : ' ';  // a header byte: the segment's own checksum
    refused(b, false, "header checksum mismatch");
    refused("IRREIDX2" + bytes.substr(8), false, "bad magic");
    // the path blob: a NUL moved, a path made absolute, a ".." component, invalid UTF-8 (the same length)
    b = bytes;
    b[at("path_blob") + 3] = '\0';  // "id0\0jpg\0": two NULs in the first path
    refused(b, false, "NULs do not match path_end");
    b = bytes;
    b[at("path_blob")] = '/';  // "/d0.jpg"
    refused(b, false, "leaves the gallery root");
    b = bytes;
    b.replace(at("path_blob") + 8, 7, "../.jpg");  // the second path "id1.jpg" -> "../.jpg"
    refused(b, false, "leaves the gallery root");
    b = bytes;
    b[at("path_blob") + 1] = static_cast<char>(0xC3);  // a lead byte followed by "0"
    refused(b, false, "not valid UTF-8");
    // well-formed segments that lie: sections out of place, a wrong size, codes that are not the rows'
    auto h = ordered_header(bytes);
    h["sections"]["codes"]["offset"] = h["sections"]["codes"]["offset"].get<uint64_t>() + 1;
    auto relinked = [&](const nlohmann::ordered_json& hh) {
        // the segment with a new header, and the root's record of its checksum updated to match
        const std::string s = resum(bytes, hh);
        const std::string root = slurp(path);
        auto r = ordered_header(root);
        r["segments"][0]["header_sha256"] = s.substr(16 + le64(s, 8) - 66, 64);
        spit(path, resum(root, r));
        return s;
    };
    const std::string root_bytes = slurp(path);
    refused(relinked(h), false, "not 64-aligned");
    h = ordered_header(bytes);
    h["sections"]["scale"]["nbytes"] = 12;
    refused(relinked(h), false, "section 'scale' has 12 bytes");
    h = ordered_header(bytes);
    h["sections"].erase("xnorm");
    refused(relinked(h), false, "not the 11 sections");
    h = ordered_header(bytes);
    h["spec_fingerprint"] = std::string(64, '1');
    refused(relinked(h), false, "spec_fingerprint differs");
    h = ordered_header(bytes);
    h["count"] = 9999;  // a count the file cannot hold (the guard that keeps section sizes from overflowing)
    const std::string huge = relinked(h);
    auto rr = ordered_header(slurp(path));
    rr["segments"][0]["count"] = 9999;
    rr["count"] = 9999;
    spit(path, resum(slurp(path), rr));
    refused(huge, false, "does not fit in the file");
    spit(path, root_bytes);
    b = bytes;
    b[at("codes")] = static_cast<char>(b[at("codes")] ^ 0x01);
    h = ordered_header(bytes);
    const std::string codes_sum = irreid::sha256_hex(b.data() + at("codes"), sections["codes"]["nbytes"].get<size_t>());
    h["sections"]["codes"]["sha256"] = codes_sum;
    std::string recoded = resum(b, h);
    spit(seg, recoded);
    auto r = ordered_header(root_bytes);
    r["segments"][0]["header_sha256"] = recoded.substr(16 + le64(recoded, 8) - 66, 64);
    spit(path, resum(root_bytes, r));
    CHECK_EQ(irreid::read_index(path, false).count, 4);
    CHECK_THROWS_CONTAINING(irreid::read_index(path, true), "int8 codes or scale of row 0");
    spit(path, root_bytes);
    spit(seg, bytes);
    CHECK_EQ(irreid::read_index(path, true).count, 4);
}

TEST_CASE("index_tombstones_and_segments") {
    // Two segments written by C++ combined into one root by hand, with a tombstone: the logical rows
    // are segment order, file order, dead rows skipped; ranking runs over the live rows only.
    std::vector<uint16_t> a, b;
    const std::string pa = write_tiny_index("ta", 4, 8, &a);  // id0..id3.jpg
    std::vector<irreid::IndexEntry> eb = {{"x/b0.jpg", 1, 1, std::string(64, '1')}, {"x/b1.jpg", 2, 2, std::string(64, '2')},
                                          {"x/b2.jpg", 3, 3, std::string(64, '3')}};
    const std::string pb = fresh_dir("tb") + "/index.irx";
    b.assign(a.begin(), a.begin() + 24);  // rows equal to a's first three: exact ties between segments
    irreid::write_index(pb, tiny_spec(8), "/gallery", eb, b, 8);
    const std::string sa = segment_path(pa), sb = segment_path(pb);
    const std::string dir = irreid::index_segment_dir(pa);
    const std::string nb = sb.substr(sb.rfind('/') + 1);
    spit(dir + "/" + nb, slurp(sb));
    // dead: rows 0 and 2 of the first segment (id0, id2); 1 of the second (x/b1)
    auto tomb = [](std::vector<uint32_t> rows) { return std::string(reinterpret_cast<const char*>(rows.data()), rows.size() * 4); };
    spit(dir + "/a.dead", tomb({0, 2}));
    spit(dir + "/b.dead", tomb({1}));
    const std::string root = slurp(pa);
    auto h = ordered_header(root);
    auto rb = header_of(slurp(pb))["segments"][0];
    h["segments"][0]["dead"] = {{"name", "a.dead"}, {"count", 2}, {"sha256", irreid::sha256_hex(tomb({0, 2}).data(), 8)}};
    h["segments"].push_back({{"name", nb}, {"count", 3}, {"header_sha256", rb["header_sha256"]},
                             {"dead", {{"name", "b.dead"}, {"count", 1}, {"sha256", irreid::sha256_hex(tomb({1}).data(), 4)}}}});
    h["count"] = 4;
    spit(pa, resum(root, h));
    const irreid::GalleryIndex idx = irreid::read_index(pa, true);
    REQUIRE_EQ(idx.count, 4);
    std::vector<std::string> paths;
    for (const auto& e : idx.entries) paths.push_back(e.path);
    CHECK_EQ(paths, std::vector<std::string>{"id1.jpg", "id3.jpg", "x/b0.jpg", "x/b2.jpg"});
    CHECK_EQ(idx.entries[3].size, 3);
    CHECK_EQ(idx.segments[1].dead, std::vector<uint32_t>{1});
    // Probe = a's row 0 (= b's row 0): id0 is dead, so x/b0 (logical row 2) is the exact match.
    const irreid::GalleryMatrix g(idx.rows, idx.dim);
    std::vector<float> probe(8);
    for (int i = 0; i < 8; ++i) probe[i] = irreid::half_to_float(a[i]);
    const auto top = g.top_k(probe.data(), 4);
    REQUIRE_EQ(top.size(), 4u);
    CHECK_EQ(top[0].row, 2);
    CHECK(std::fabs(top[0].distance) < 1e-6f);
    // Probe = a's row 1 (= b's dead row 1, = live id1): id1 only.
    for (int i = 0; i < 8; ++i) probe[i] = irreid::half_to_float(a[8 + i]);
    CHECK_EQ(g.top_k(probe.data(), 1)[0].row, 0);
    // damaged tombstones
    auto with_dead = [&](const std::string& bytes, int64_t count, const std::string& sum) {
        spit(dir + "/a.dead", bytes);
        auto hh = ordered_header(root);
        hh["segments"] = h["segments"];
        hh["segments"][0]["dead"] = {{"name", "a.dead"}, {"count", count}, {"sha256", sum}};
        hh["count"] = 4 - count + 2;
        spit(pa, resum(root, hh));
    };
    with_dead(tomb({0, 3}), 2, irreid::sha256_hex(tomb({0, 2}).data(), 8));
    CHECK_THROWS_CONTAINING(irreid::read_index(pa, false), "tombstone sha256 mismatch");
    with_dead(tomb({2, 0}), 2, irreid::sha256_hex(tomb({2, 0}).data(), 8));
    CHECK_THROWS_CONTAINING(irreid::read_index(pa, false), "not sorted, unique");
    with_dead(tomb({1, 4}), 2, irreid::sha256_hex(tomb({1, 4}).data(), 8));
    CHECK_THROWS_CONTAINING(irreid::read_index(pa, false), "below the segment's count");
    with_dead(tomb({1}), 2, irreid::sha256_hex(tomb({1}).data(), 4));
    CHECK_THROWS_CONTAINING(irreid::read_index(pa, false), "tombstone is 4 bytes");
    // a path live twice (b's segment listed with its own name twice is refused earlier: names are unique)
    with_dead(tomb({0, 2}), 2, irreid::sha256_hex(tomb({0, 2}).data(), 8));
    CHECK_EQ(irreid::read_index(pa, true).count, 4);
}

TEST_CASE("index_for_python") {
    // tests/cpp/test_native_parity.py runs this case with both variables set and reads the index with
    // runtime/gallery/index.py: what the C++ writer makes, the Python reader must accept (and the reverse
    // direction is every native `match`). Without them (plain ctest) it checks nothing.
    const char* out = std::getenv("IRREID_INDEX_OUT");
    const char* spec_path = std::getenv("IRREID_INDEX_SPEC");
    if (!out || !spec_path) return;
    std::ifstream in(spec_path);
    const irreid::ModelSpec spec = irreid::ModelSpec::from_json(nlohmann::json::parse(in), spec_path);
    const int64_t dim = spec.embedding_dim;
    std::vector<uint16_t> data(static_cast<size_t>(3 * dim));
    for (size_t i = 0; i < data.size(); ++i) data[i] = irreid::float_to_half(static_cast<float>(i % 7) - 3.0f);
    std::vector<irreid::IndexEntry> entries = {{"a.jpg", 10, 1, std::string(64, 'a')}, {"sub/b.jpg", 20, 2, std::string(64, 'b')},
                                               {"c d.png", 30, 3, std::string(64, 'c')}};
    // IRREID_INDEX_ROWS (a raw little-endian float16 file, n x dim) and IRREID_INDEX_PATHS (n lines):
    // the parity test's own rows, to compare the codes and scales with runtime.search.int8.quantise_rows.
    if (const char* rows = std::getenv("IRREID_INDEX_ROWS")) {
        const std::string raw = slurp(rows);
        data.assign(raw.size() / 2, 0);
        std::memcpy(data.data(), raw.data(), data.size() * 2);
        entries.clear();
        std::ifstream names(std::getenv("IRREID_INDEX_PATHS"));
        for (std::string line; std::getline(names, line);) entries.push_back({line, 7, 8, std::string(64, 'd')});
    }
    irreid::write_index(out, spec, "/gallery", entries, data, dim);
}

TEST_CASE("rank_orders_by_distance_then_row") {
    // Rows 1 and 3 are the same vector: a tie, so the lower row comes first.
    const std::vector<float> rows = {1, 0, 0, 0.6f, 0.8f, 0, 0, 1, 0, 0.6f, 0.8f, 0, -1, 0, 0};
    const irreid::GalleryMatrix g(rows, 5, 3);
    const float probe[3] = {0, 2, 0};  // not unit length: normalised inside
    const auto top = g.top_k(probe, 4);
    REQUIRE(top.size() == 4);
    CHECK_EQ(top[0].row, 2);
    CHECK(std::fabs(top[0].distance) < 1e-6f);
    CHECK_EQ(top[1].row, 1);
    CHECK_EQ(top[2].row, 3);
    CHECK_EQ(top[1].distance, top[2].distance);
    CHECK(std::fabs(top[1].distance - 0.2f) < 1e-6f);
    CHECK_EQ(g.top_k(probe, 50).size(), 5u);  // k larger than the gallery
}

TEST_CASE("rank_matches_brute_force") {
    std::vector<uint16_t> data;
    const std::string path = write_tiny_index("bf", 300, 16, &data);
    const irreid::GalleryIndex idx = irreid::read_index(path);
    const irreid::GalleryMatrix g(idx.rows, idx.dim);
    const irreid::GalleryMatrix contiguous(data.data(), 300, 16);
    std::vector<float> probe(16);
    for (int i = 0; i < 16; ++i) probe[i] = irreid::half_to_float(data[5 * 16 + i]);  // row 5 itself
    const auto top = g.top_k(probe.data(), 10);
    CHECK_EQ(top[0].row, 5);
    std::vector<irreid::Match> all;
    for (int64_t r = 0; r < idx.count; ++r) {
        double dot = 0, nr = 0, nq = 0;
        for (int i = 0; i < 16; ++i) {
            const double a = irreid::half_to_float(data[r * 16 + i]);
            dot += a * probe[i], nr += a * a, nq += double(probe[i]) * probe[i];
        }
        all.push_back({r, static_cast<float>(1.0 - dot / std::sqrt(nr * nq))});
    }
    std::sort(all.begin(), all.end(), irreid::match_less);
    const auto top_c = contiguous.top_k(probe.data(), 10);
    for (int i = 0; i < 10; ++i) {
        CHECK_EQ(top[i].row, all[i].row);
        CHECK(std::fabs(top[i].distance - all[i].distance) < 1e-5f);
        CHECK_EQ(top_c[i].row, top[i].row);
        CHECK_EQ(top_c[i].distance, top[i].distance);
    }
}
