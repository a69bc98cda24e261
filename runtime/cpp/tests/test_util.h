// Shared fixtures for the C++ tests: deterministic images, a scratch folder, and a check on the
// message of an expected exception (doctest's Contains matcher needs doctest >= 2.4.7; JetPack 5's
// Ubuntu 20.04 ships 2.3.7, so this works on both).
#pragma once

#include <cstdint>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <unistd.h>

#include <doctest/doctest.h>

#include "irreid/image.h"

namespace irreid::test {

// The same pattern as the Python snippet that made the golden hashes:
// value(x, y, c) = (37x + 59y + 101c + (x*y mod 17)) mod 256.
inline ImageRGB8 pattern_image(int w, int h) {
    ImageRGB8 im{w, h, std::vector<uint8_t>(static_cast<size_t>(w) * h * 3)};
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x)
            for (int c = 0; c < 3; ++c)
                im.pixels[(static_cast<size_t>(y) * w + x) * 3 + c] = static_cast<uint8_t>((x * 37 + y * 59 + c * 101 + (x * y) % 17) % 256);
    return im;
}

inline std::string scratch_dir() {
    static std::string dir = [] {
        const char* base = std::getenv("TMPDIR");
        std::string t = std::string(base ? base : "/tmp") + "/irreid_cpp_test_XXXXXX";
        if (::mkdtemp(t.data()) == nullptr) throw std::runtime_error("cannot make a scratch folder");
        return t;
    }();
    return dir;
}

// What fn throws, or a marker that it threw nothing.
template <typename Fn>
std::string thrown_message(Fn&& fn) {
    try {
        fn();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "<no exception thrown>";
}

}  // namespace irreid::test

// expr must throw a std::exception whose message contains needle; the message is shown on failure.
#define CHECK_THROWS_CONTAINING(expr, needle)                                                          \
    do {                                                                                               \
        const std::string message_ = irreid::test::thrown_message([&] { (void)(expr); });              \
        CHECK_MESSAGE(message_.find(needle) != std::string::npos,                                      \
                      (std::string("message: '") + message_ + "', expected to contain '" + (needle) + "'")); \
    } while (0)
