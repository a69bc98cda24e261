// GPU preprocessing (built when CUDA is found, IRREID_HAVE_CUDA): raw interleaved 8-bit RGB pixels in,
// resized NCHW float32 raw 0-255 out on the device, bit-identical to preprocess_image(): the same
// Pillow coefficients (computed on the host once per input size) and the same fixed-point passes.
#pragma once

#include <map>
#include <memory>
#include <utility>

#include "irreid/image.h"

namespace irreid {

// True when a CUDA device can be used (false in builds without CUDA).
bool cuda_device_available();

class CudaPreprocessor {
public:
    CudaPreprocessor(int height, int width, bool bgr);
    ~CudaPreprocessor();
    CudaPreprocessor(const CudaPreprocessor&) = delete;
    CudaPreprocessor& operator=(const CudaPreprocessor&) = delete;

    // Uploads img and writes 3 x height x width floats to device_out (device memory) on stream
    // (a cudaStream_t, nullptr = default stream). Asynchronous with respect to the host.
    void run(const ImageRGB8& img, float* device_out, void* stream = nullptr);

    // Convenience for tests and bench: runs, synchronises and copies back to the host.
    std::vector<float> run_to_host(const ImageRGB8& img);

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace irreid
