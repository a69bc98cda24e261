// Index round trip and refusals; ranking order and the tie rule.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "irreid/error.h"
#include "irreid/half.h"
#include "irreid/index.h"
#include "irreid/rank.h"
#include <doctest/doctest.h>
#include "test_util.h"

namespace {

irreid::ModelSpec tiny_spec(int dim) {
    return irreid::ModelSpec::from_json({{"name", "tiny"}, {"modality", "rgb"}, {"input_height", 32}, {"input_width", 16}, {"embedding_dim", dim}}, "t");
}

std::string write_tiny_index(const std::string& name, int count, int dim, std::vector<uint16_t>* data_out = nullptr) {
    std::mt19937 rng(7);
    std::normal_distribution<float> n01;
    std::vector<uint16_t> data(static_cast<size_t>(count) * dim);
    for (auto& h : data) h = irreid::float_to_half(n01(rng));
    std::vector<irreid::IndexEntry> entries;
    for (int i = 0; i < count; ++i) entries.push_back({"id" + std::to_string(i) + ".jpg", 100 + i, 5, std::string(64, '0')});
    const std::string path = irreid::test::scratch_dir() + "/" + name;
    irreid::write_index(path, tiny_spec(dim), "/gallery", entries, data, dim);
    if (data_out) *data_out = data;
    return path;
}

}  // namespace

TEST_CASE("index_round_trip") {
    std::vector<uint16_t> data;
    const std::string path = write_tiny_index("a.irx", 5, 8, &data);
    const irreid::GalleryIndex idx = irreid::read_index(path);
    CHECK_EQ(idx.count, 5);
    CHECK_EQ(idx.dim, 8);
    CHECK(std::equal(data.begin(), data.end(), idx.data));
    CHECK_EQ(idx.entries[3].path, std::string("id3.jpg"));
    CHECK_EQ(idx.gallery_root, std::string("/gallery"));
    CHECK_EQ(idx.spec_fingerprint, idx.spec.fingerprint());
    CHECK_EQ(idx.header["data_offset"].get<int>() % 64, 0);
    CHECK_EQ(irreid::default_index_path("g"), std::string("g/.irreid/index.irx"));
}

TEST_CASE("index_refusals") {
    const std::string path = write_tiny_index("b.irx", 4, 8);
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string dir = irreid::test::scratch_dir();
    std::string flipped = bytes;
    flipped[flipped.size() - 1] ^= 0x01;  // one bit of the last embedding
    std::ofstream(dir + "/flip.irx", std::ios::binary) << flipped;
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/flip.irx"), "data_sha256");
    CHECK(irreid::read_index(dir + "/flip.irx", false).count == 4);  // --no-verify skips the check
    std::ofstream(dir + "/cut.irx", std::ios::binary) << bytes.substr(0, bytes.size() - 2);
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/cut.irx"), "truncated");
    std::ofstream(dir + "/magic.irx", std::ios::binary) << "NOTANIDX" << bytes.substr(8);
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/magic.irx"), "bad magic");
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/none.irx"), "not found");
}

TEST_CASE("index_header_checksum") {
    const std::string path = write_tiny_index("c.irx", 3, 8);
    std::ifstream in(path, std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const size_t at = bytes.find("id1.jpg");
    REQUIRE(at != std::string::npos);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | static_cast<unsigned char>(bytes[8 + i]);
    const size_t tail = 16 + hlen - 2;  // the header ends ,"header_sha256":"<64 hex>"}
    CHECK_EQ(bytes.substr(tail, 2), std::string("\"}"));
    CHECK_EQ(bytes.substr(tail - 64 - 18, 18), std::string(",\"header_sha256\":\""));  // the last key
    const std::string dir = irreid::test::scratch_dir();
    std::string edited = bytes;
    edited[at + 2] = '7';  // "id7.jpg": same length, valid JSON, a different gallery
    std::ofstream(dir + "/edited.irx", std::ios::binary) << edited;
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/edited.irx", false), "header checksum mismatch");
    std::string unsummed = bytes;
    unsummed.replace(tail - 64 - 17, 13, "header_sha257");  // the key renamed: as if written without one
    std::ofstream(dir + "/nosum.irx", std::ios::binary) << unsummed;
    CHECK_THROWS_CONTAINING(irreid::read_index(dir + "/nosum.irx", false), "no checksum");
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
    const std::string path = write_tiny_index("c.irx", 300, 16, &data);
    const irreid::GalleryIndex idx = irreid::read_index(path);
    const irreid::GalleryMatrix g(idx.data, idx.count, idx.dim);
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
    for (int i = 0; i < 10; ++i) {
        CHECK_EQ(top[i].row, all[i].row);
        CHECK(std::fabs(top[i].distance - all[i].distance) < 1e-5f);
    }
}
