#include "test_framework.h"

int main(int argc, char** argv) {
    using irreid::test::registry;
    int skipped = 0, ran = 0;
    auto run_one = [&](const std::string& name, const std::function<void()>& fn) {
        try {
            fn();
            ++ran;
        } catch (const irreid::test::Skip& s) {
            std::printf("SKIP %s: %s\n", name.c_str(), s.what());
            ++skipped;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "FAIL %s: %s\n", name.c_str(), e.what());
            ++irreid::test::failures();
        }
    };
    if (argc > 1) {
        for (int i = 1; i < argc; ++i) {
            const auto it = registry().find(argv[i]);
            if (it == registry().end()) {
                std::fprintf(stderr, "no test named %s\n", argv[i]);
                return 2;
            }
            run_one(it->first, it->second);
        }
    } else {
        for (const auto& [name, fn] : registry()) run_one(name, fn);
    }
    if (irreid::test::failures() > 0) {
        std::fprintf(stderr, "%d check(s) failed\n", irreid::test::failures());
        return 1;
    }
    std::printf("%d test(s) passed, %d skipped\n", ran, skipped);
    return ran == 0 && skipped > 0 ? 77 : 0;
}
