// Built only with CUDA, as its own runner (irreid_cuda_tests): the GPU preprocessing must equal the
// CPU one exactly. Without a CUDA device the runner exits 77, which ctest reports as skipped
// (SKIP_RETURN_CODE); doctest itself has no run-time skip.
#include <cstdio>

#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "irreid/cuda_preprocess.h"
#include "irreid/preprocess.h"
#include "test_util.h"

TEST_CASE("cuda_preprocess_matches_cpu") {
    struct Case {
        int w, h, ow, oh;
        bool bgr;
    };
    const Case cases[] = {{97, 203, 64, 128, false}, {40, 30, 144, 288, true}, {300, 100, 144, 288, false}, {144, 288, 144, 288, false}};
    for (const Case& k : cases) {
        irreid::CudaPreprocessor gpu(k.oh, k.ow, k.bgr);
        const irreid::ImageRGB8 im = irreid::test::pattern_image(k.w, k.h);
        CHECK(gpu.run_to_host(im) == irreid::preprocess_image(im, k.oh, k.ow, k.bgr ? "BGR" : "RGB"));
    }
}

int main(int argc, char** argv) {
    if (!irreid::cuda_device_available()) {
        std::printf("skipped: no CUDA device on this machine\n");
        return 77;
    }
    doctest::Context context(argc, argv);
    return context.run();
}
