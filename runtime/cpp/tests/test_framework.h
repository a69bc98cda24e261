// A minimal test framework: TEST(name) registers a function; CHECK records a failure and goes on,
// REQUIRE stops the test. The runner takes test names to run (ctest registers each one), or none for all.
// Exit code 77 from a test = skipped (ctest SKIP_RETURN_CODE), e.g. no CUDA device.
#pragma once

#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

namespace irreid::test {

struct Skip : std::runtime_error {
    explicit Skip(const std::string& why) : std::runtime_error(why) {}
};
struct Fatal : std::runtime_error {
    explicit Fatal(const std::string& why) : std::runtime_error(why) {}
};

inline std::map<std::string, std::function<void()>>& registry() {
    static std::map<std::string, std::function<void()>> tests;
    return tests;
}
inline int& failures() {
    static int n = 0;
    return n;
}
struct Registrar {
    Registrar(const char* name, std::function<void()> fn) { registry()[name] = std::move(fn); }
};

template <typename A, typename B>
std::string describe(const A& a, const B& b) {
    std::ostringstream s;
    s << a << " vs " << b;
    return s.str();
}

}  // namespace irreid::test

#define TEST(name)                                                                 \
    static void test_##name();                                                     \
    static const irreid::test::Registrar registrar_##name(#name, test_##name);     \
    static void test_##name()

#define CHECK(cond)                                                                                    \
    do {                                                                                               \
        if (!(cond)) {                                                                                 \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);              \
            ++irreid::test::failures();                                                                \
        }                                                                                              \
    } while (0)

#define CHECK_EQ(a, b)                                                                                 \
    do {                                                                                               \
        if (!((a) == (b))) {                                                                           \
            std::fprintf(stderr, "%s:%d: CHECK_EQ failed: %s == %s (%s)\n", __FILE__, __LINE__, #a, #b, \
                         irreid::test::describe((a), (b)).c_str());                                    \
            ++irreid::test::failures();                                                                \
        }                                                                                              \
    } while (0)

#define REQUIRE(cond)                                                                                  \
    do {                                                                                               \
        if (!(cond)) throw irreid::test::Fatal(std::string("REQUIRE failed: ") + #cond);               \
    } while (0)

#define CHECK_THROWS(expr, needle)                                                                     \
    do {                                                                                               \
        bool thrown_ = false;                                                                          \
        try {                                                                                          \
            expr;                                                                                      \
        } catch (const std::exception& e_) {                                                           \
            thrown_ = true;                                                                            \
            if (std::strstr(e_.what(), needle) == nullptr) {                                           \
                std::fprintf(stderr, "%s:%d: message '%s' lacks '%s'\n", __FILE__, __LINE__, e_.what(), needle); \
                ++irreid::test::failures();                                                            \
            }                                                                                          \
        }                                                                                              \
        if (!thrown_) {                                                                                \
            std::fprintf(stderr, "%s:%d: expected an exception from %s\n", __FILE__, __LINE__, #expr);   \
            ++irreid::test::failures();                                                                \
        }                                                                                              \
    } while (0)
