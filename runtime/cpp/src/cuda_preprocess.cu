// GPU twin of preprocess_image(): Pillow's two fixed-point passes (horizontal into an 8-bit
// intermediate, then vertical) with the host-computed coefficients, writing NCHW float32 directly.
// One thread per output pixel and pass; all three channels per thread (interleaved input).
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "irreid/cuda_preprocess.h"
#include "irreid/error.h"
#include "irreid/resample.h"

namespace irreid {
namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw Error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

struct DeviceFree {
    void operator()(void* p) const { cudaFree(p); }
};
template <typename T>
using DevicePtr = std::unique_ptr<T, DeviceFree>;

template <typename T>
DevicePtr<T> device_alloc(size_t count) {
    void* p = nullptr;
    check(cudaMalloc(&p, count * sizeof(T)), "cudaMalloc");
    return DevicePtr<T>(static_cast<T*>(p));
}

__device__ inline uint8_t clip8(int32_t acc) {
    const int32_t v = acc >> kResamplePrecisionBits;  // arithmetic shift, as the host
    return static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
}

// (in_h, in_w, 3) uint8 -> (in_h, out_w, 3) uint8
__global__ void horizontal_pass(const uint8_t* in, int in_w, int in_h, uint8_t* out, int out_w,
                                const int* bounds, const int32_t* k, int ksize) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= in_h) return;
    const int first = bounds[2 * x], taps = bounds[2 * x + 1];
    const int32_t* w = k + static_cast<size_t>(x) * ksize;
    int32_t s0 = 1 << (kResamplePrecisionBits - 1), s1 = s0, s2 = s0;
    const uint8_t* row = in + static_cast<size_t>(y) * in_w * 3;
    for (int t = 0; t < taps; ++t) {
        const uint8_t* p = row + (first + t) * 3;
        s0 += p[0] * w[t], s1 += p[1] * w[t], s2 += p[2] * w[t];
    }
    uint8_t* q = out + (static_cast<size_t>(y) * out_w + x) * 3;
    q[0] = clip8(s0), q[1] = clip8(s1), q[2] = clip8(s2);
}

// (in_h, out_w, 3) uint8 -> (3, out_h, out_w) float32, channels swapped for BGR
__global__ void vertical_pass_to_nchw(const uint8_t* in, int out_w, uint8_t bgr, float* out, int out_h,
                                      const int* bounds, const int32_t* k, int ksize) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= out_w || y >= out_h) return;
    const int first = bounds[2 * y], taps = bounds[2 * y + 1];
    const int32_t* w = k + static_cast<size_t>(y) * ksize;
    int32_t s[3] = {1 << (kResamplePrecisionBits - 1), 1 << (kResamplePrecisionBits - 1), 1 << (kResamplePrecisionBits - 1)};
    for (int t = 0; t < taps; ++t) {
        const uint8_t* p = in + (static_cast<size_t>(first + t) * out_w + x) * 3;
        s[0] += p[0] * w[t], s[1] += p[1] * w[t], s[2] += p[2] * w[t];
    }
    const size_t plane = static_cast<size_t>(out_h) * out_w, at = static_cast<size_t>(y) * out_w + x;
    for (int c = 0; c < 3; ++c) out[plane * c + at] = static_cast<float>(clip8(s[bgr ? 2 - c : c]));
}

// Coefficients for one (input size -> output size) pair, on the device.
struct DeviceCoeffs {
    int ksize = 0;
    DevicePtr<int> bounds;
    DevicePtr<int32_t> weights;
};

DeviceCoeffs upload(const ResampleCoeffs& c) {
    DeviceCoeffs d{c.ksize, device_alloc<int>(c.bounds.size()), device_alloc<int32_t>(c.fixed.size())};
    check(cudaMemcpy(d.bounds.get(), c.bounds.data(), c.bounds.size() * sizeof(int), cudaMemcpyHostToDevice), "coeffs");
    check(cudaMemcpy(d.weights.get(), c.fixed.data(), c.fixed.size() * sizeof(int32_t), cudaMemcpyHostToDevice), "coeffs");
    return d;
}

}  // namespace

bool cuda_device_available() {
    int n = 0;
    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct CudaPreprocessor::Impl {
    int height, width;
    bool bgr;
    // Coefficients are cached per input size: camera crops repeat a few sizes.
    std::map<int, DeviceCoeffs> horizontal, vertical;
    DevicePtr<uint8_t> input, temp;
    size_t input_cap = 0, temp_cap = 0;

    const DeviceCoeffs& coeffs(std::map<int, DeviceCoeffs>& cache, int in_size, int out_size) {
        auto it = cache.find(in_size);
        if (it == cache.end()) it = cache.emplace(in_size, upload(bilinear_coeffs(in_size, out_size))).first;
        return it->second;
    }
    void reserve(DevicePtr<uint8_t>& p, size_t& cap, size_t bytes) {
        if (bytes > cap) p = device_alloc<uint8_t>(bytes), cap = bytes;
    }
};

CudaPreprocessor::CudaPreprocessor(int height, int width, bool bgr) : impl_(new Impl{height, width, bgr, {}, {}, nullptr, nullptr}) {
    if (height <= 0 || width <= 0) throw Error("CudaPreprocessor: size must be positive");
    if (!cuda_device_available()) throw Error("no CUDA device is available for GPU preprocessing");
}

CudaPreprocessor::~CudaPreprocessor() = default;

void CudaPreprocessor::run(const ImageRGB8& img, float* device_out, void* stream_handle) {
    Impl& m = *impl_;
    auto stream = static_cast<cudaStream_t>(stream_handle);
    const size_t in_bytes = img.pixels.size(), temp_bytes = static_cast<size_t>(img.height) * m.width * 3;
    m.reserve(m.input, m.input_cap, in_bytes);
    m.reserve(m.temp, m.temp_cap, temp_bytes);
    check(cudaMemcpyAsync(m.input.get(), img.pixels.data(), in_bytes, cudaMemcpyHostToDevice, stream), "upload");
    // Equal sizes give identity coefficients (one tap of weight 1), so both passes always run.
    const DeviceCoeffs& h = m.coeffs(m.horizontal, img.width, m.width);
    const DeviceCoeffs& v = m.coeffs(m.vertical, img.height, m.height);
    const dim3 block(32, 8);
    const dim3 grid_h((m.width + block.x - 1) / block.x, (img.height + block.y - 1) / block.y);
    horizontal_pass<<<grid_h, block, 0, stream>>>(m.input.get(), img.width, img.height, m.temp.get(), m.width, h.bounds.get(), h.weights.get(), h.ksize);
    const dim3 grid_v((m.width + block.x - 1) / block.x, (m.height + block.y - 1) / block.y);
    vertical_pass_to_nchw<<<grid_v, block, 0, stream>>>(m.temp.get(), m.width, m.bgr ? 1 : 0, device_out, m.height, v.bounds.get(), v.weights.get(), v.ksize);
    check(cudaGetLastError(), "kernel launch");
}

std::vector<float> CudaPreprocessor::run_to_host(const ImageRGB8& img) {
    const size_t n = static_cast<size_t>(3) * impl_->height * impl_->width;
    DevicePtr<float> out = device_alloc<float>(n);
    run(img, out.get(), nullptr);
    std::vector<float> host(n);
    check(cudaMemcpy(host.data(), out.get(), n * sizeof(float), cudaMemcpyDeviceToHost), "download");
    return host;
}

}  // namespace irreid
