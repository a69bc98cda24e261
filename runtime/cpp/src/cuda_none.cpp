// Built when CUDA is absent: the GPU preprocessor reports that it cannot run.
#include "irreid/cuda_preprocess.h"
#include "irreid/error.h"

namespace irreid {

bool cuda_device_available() { return false; }

struct CudaPreprocessor::Impl {};

CudaPreprocessor::CudaPreprocessor(int, int, bool) {
    throw Error("this irreid-edge-native was built without the CUDA preprocessing kernel; rebuild with a CUDA toolkit "
                "(nvcc under /usr/local/cuda/bin, or -DCMAKE_CUDA_COMPILER=...) for GPU preprocessing");
}
CudaPreprocessor::~CudaPreprocessor() = default;
void CudaPreprocessor::run(const ImageRGB8&, float*, void*) {}
std::vector<float> CudaPreprocessor::run_to_host(const ImageRGB8&) { return {}; }

}  // namespace irreid
