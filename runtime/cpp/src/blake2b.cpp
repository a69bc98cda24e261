// BLAKE2b as RFC 7693 section 3 gives it (unkeyed; parameter block: digest length, fanout 1, depth 1).
#include "irreid/blake2b.h"

#include <cstring>

#include "irreid/error.h"

namespace irreid {
namespace {

constexpr uint64_t kIV[8] = {0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
                             0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL};

constexpr uint8_t kSigma[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4}, {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13}, {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11}, {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5}, {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

inline uint64_t rotr(uint64_t x, int n) { return (x >> n) | (x << (64 - n)); }

inline uint64_t load_le64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

// F: compress one 128-byte block; t = bytes hashed so far (this block included), last = final block.
void compress(uint64_t h[8], const uint8_t block[128], uint64_t t, bool last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; ++i) m[i] = load_le64(block + 8 * i);
    for (int i = 0; i < 8; ++i) v[i] = h[i], v[i + 8] = kIV[i];
    v[12] ^= t;  // the high word of the 128-bit counter stays 0 below 2^64 bytes
    if (last) v[14] = ~v[14];
    auto g = [&](int a, int b, int c, int d, uint64_t x, uint64_t y) {
        v[a] = v[a] + v[b] + x, v[d] = rotr(v[d] ^ v[a], 32);
        v[c] = v[c] + v[d], v[b] = rotr(v[b] ^ v[c], 24);
        v[a] = v[a] + v[b] + y, v[d] = rotr(v[d] ^ v[a], 16);
        v[c] = v[c] + v[d], v[b] = rotr(v[b] ^ v[c], 63);
    };
    for (const auto& s : kSigma) {
        g(0, 4, 8, 12, m[s[0]], m[s[1]]), g(1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(2, 6, 10, 14, m[s[4]], m[s[5]]), g(3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(0, 5, 10, 15, m[s[8]], m[s[9]]), g(1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(2, 7, 8, 13, m[s[12]], m[s[13]]), g(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; ++i) h[i] ^= v[i] ^ v[i + 8];
}

}  // namespace

void blake2b(const void* data, size_t size, uint8_t* out, size_t outlen) {
    if (outlen == 0 || outlen > 64) throw Error("blake2b: digest length must be 1..64 bytes");
    uint64_t h[8];
    std::memcpy(h, kIV, sizeof h);
    h[0] ^= 0x01010000ULL ^ static_cast<uint64_t>(outlen);  // fanout 1, depth 1, no key
    const auto* p = static_cast<const uint8_t*>(data);
    uint64_t done = 0;
    while (size > 128) {  // every full block but the last
        done += 128;
        compress(h, p, done, false);
        p += 128, size -= 128;
    }
    uint8_t block[128] = {};
    if (size) std::memcpy(block, p, size);
    compress(h, block, done + size, true);
    for (size_t i = 0; i < outlen; ++i) out[i] = static_cast<uint8_t>(h[i / 8] >> (8 * (i % 8)));
}

uint64_t blake2b_64(const void* data, size_t size) {
    uint8_t d[8];
    blake2b(data, size, d, 8);
    return load_le64(d);
}

}  // namespace irreid
