// sha256, float16, Python-compatible JSON and the ModelSpec fingerprint, .npy.
#include <cmath>
#include <cstring>
#include <fstream>

#include "irreid/error.h"
#include "irreid/half.h"
#include "irreid/npy.h"
#include "irreid/sha256.h"
#include "irreid/spec.h"
#include <doctest/doctest.h>
#include "test_util.h"

TEST_CASE("sha256_vectors") {
    // FIPS 180-2 examples (the values Python's hashlib.sha256(...).hexdigest() prints), through OpenSSL,
    // both for buffers and for a file read in 1 MiB blocks (the million 'a' spans the block boundary).
    const std::string abc = "abc";
    const std::string two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    const std::string million(1000000, 'a');
    CHECK_EQ(irreid::sha256_hex("", 0), std::string("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    CHECK_EQ(irreid::sha256_hex(abc.data(), abc.size()), std::string("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    CHECK_EQ(irreid::sha256_hex(two.data(), two.size()), std::string("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    const std::string million_hex = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
    CHECK_EQ(irreid::sha256_hex(million.data(), million.size()), million_hex);
    const std::string path = irreid::test::scratch_dir() + "/million.txt";
    const std::string big = million + million;  // 2 000 000 bytes: two full 1 MiB reads, then a short one
    std::ofstream(path, std::ios::binary).write(big.data(), static_cast<std::streamsize>(big.size()));
    CHECK_EQ(irreid::file_sha256_hex(path), irreid::sha256_hex(big.data(), big.size()));
    CHECK_THROWS_CONTAINING(irreid::file_sha256_hex(path + ".missing"), "cannot open for hashing");
}

TEST_CASE("half_conversions") {
    CHECK_EQ(irreid::half_to_float(0x3C00), 1.0f);
    CHECK_EQ(irreid::half_to_float(0xC000), -2.0f);
    CHECK_EQ(irreid::half_to_float(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK_EQ(irreid::half_to_float(0x7BFF), 65504.0f);
    CHECK(std::isinf(irreid::half_to_float(0x7C00)));
    CHECK(std::isnan(irreid::half_to_float(0x7E00)));
    // Every finite half survives float -> half; table and function agree everywhere.
    const float* table = irreid::half_table();
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = irreid::half_to_float(static_cast<uint16_t>(h));
        if (std::isnan(f)) continue;
        CHECK_EQ(irreid::float_to_half(f), static_cast<uint16_t>(h));
        CHECK_EQ(std::memcmp(&table[h], &f, 4), 0);
    }
    CHECK_EQ(irreid::float_to_half(1.0f + std::ldexp(1.0f, -11)), 0x3C00);  // tie -> even
    CHECK_EQ(irreid::float_to_half(1e6f), 0x7C00);
}

TEST_CASE("fingerprint_matches_python") {
    // Values printed by runtime.spec.ModelSpec(...).fingerprint() (see the Python snippet in the report).
    const auto tiny = irreid::ModelSpec::from_json(
        {{"name", "tiny-ir"}, {"modality", "ir"}, {"input_height", 32}, {"input_width", 16}, {"embedding_dim", 8}}, "t");
    CHECK_EQ(tiny.fingerprint(), std::string("936b565d1731a64624fb884509c9e6324cf5cef8919cc100d04b5670d586079f"));
    const auto odd = irreid::ModelSpec::from_json(
        {{"name", "Z\xc3\xbcrich \xf0\x9f\x9a\xb6"}, {"modality", "rgb"}, {"input_height", 288}, {"input_width", 144},
         {"embedding_dim", 1536}, {"mean", {0, 0.5, 1e-5}}, {"std", {1.0 / 3.0, 1e16, 123456.789}}, {"precision", "int8"},
         {"onnx_sha256", std::string(64, 'a')}, {"channel_order", "BGR"}},
        "t");
    CHECK_EQ(odd.fingerprint(), std::string("b3475e7eda88734bde7a00d7235f4b779c6708852be8dca941c6b5df429649a3"));
    CHECK_EQ(irreid::python_json_dumps({{"b", {1, 2.5, nullptr}}, {"a", "x\"y\n"}}), std::string("{\"a\": \"x\\\"y\\n\", \"b\": [1, 2.5, null]}"));
}

TEST_CASE("spec_refuses_bad_fields") {
    CHECK_THROWS_CONTAINING(irreid::ModelSpec::from_json({{"name", "x"}, {"modality", "thermal"}, {"input_height", 1}, {"input_width", 1}, {"embedding_dim", 1}}, "s.json"),
                 "valid values: rgb, ir");
    CHECK_THROWS_CONTAINING(irreid::ModelSpec::from_json({{"name", "x"}, {"modality", "ir"}}, "s.json"), "input_height");
    CHECK_THROWS_CONTAINING(irreid::read_model_dir_specs(irreid::test::scratch_dir() + "/nope"), "spec.json");
}

TEST_CASE("npy_round_trip") {
    irreid::Matrix m{2, 3, {1, 2, 3, 4, 5, -6.5f}};
    const std::string path = irreid::test::scratch_dir() + "/m.npy";
    irreid::write_npy(path, m);
    const irreid::Matrix r = irreid::read_npy(path);
    CHECK_EQ(r.rows, 2);
    CHECK_EQ(r.cols, 3);
    CHECK(r.data == m.data);
    irreid::write_npy(path, std::vector<float>{7, 8}, {2});
    const irreid::Matrix v = irreid::read_npy(path);
    CHECK_EQ(v.rows, 1);
    CHECK_EQ(v.cols, 2);
    CHECK_THROWS_CONTAINING(irreid::read_npy(irreid::test::scratch_dir() + "/missing.npy"), "cannot open");
}
