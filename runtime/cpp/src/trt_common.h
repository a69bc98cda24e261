// Shared by the TensorRT sources (built with IRREID_HAVE_TENSORRT only): one logger per process,
// CUDA error checks, and this device's facts for the engine key.
#pragma once

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "irreid/engine.h"
#include "irreid/error.h"

namespace irreid::trt {

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= min_severity) std::fprintf(stderr, "TensorRT: %s\n", msg);
    }
    Severity min_severity = Severity::kWARNING;
};

inline Logger& logger() {
    static Logger instance;
    return instance;
}

inline void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw Error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

// "M.m.p.b" of the TensorRT headers this was built with (JetPack and tar installs ship headers and
// library together), the form Python's trt.__version__ records in the key.
inline std::string version_here() {
    return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." + std::to_string(NV_TENSORRT_PATCH) +
           "." + std::to_string(NV_TENSORRT_BUILD);
}

inline DeviceFacts facts_here() {
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties (is a GPU visible?)");
    DeviceFacts facts;
    facts.trt_version = version_here();
    facts.gpu_name = prop.name;
    facts.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    facts.sm_count = prop.multiProcessorCount;
    facts.total_memory_gib = memory_gib(static_cast<double>(prop.totalGlobalMem));
    facts.l4t_release = read_l4t_release();
    return facts;
}

}  // namespace irreid::trt
