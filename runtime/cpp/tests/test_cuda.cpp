// Built only with CUDA: the GPU preprocessing must equal the CPU one exactly. Skips without a device.
#include "irreid/cuda_preprocess.h"
#include "irreid/preprocess.h"
#include "test_framework.h"
#include "test_util.h"

TEST(cuda_preprocess_matches_cpu) {
    if (!irreid::cuda_device_available()) throw irreid::test::Skip("no CUDA device on this machine");
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
