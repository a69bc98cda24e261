// Building a TensorRT engine from an exported model on the device that will run it: the native
// twin of `irreid-edge build` (runtime/backends/trt_build.py), for devices without the TensorRT
// Python module (JetPack 5's Python 3.8; issue 16 item 9). Writes the engine and the same sidecar
// (runtime/engine.py's write_engine), so either runtime loads what the other built.
#pragma once

#include <array>
#include <string>

namespace irreid {

struct BuildOptions {
    std::string model_dir;
    std::string modality;           // rgb | ir
    std::string precision;          // fp32 | fp16 | int8 (a concrete one; see choose_build_precision)
    int max_batch = 32;
    int opt_batch = 0;              // 0: min(8, max_batch)
    int workspace_mb = 1024;
    std::string timing_cache;       // "": engines/timing-<gpu>-sm<cc>-trt<version>.cache
    bool verbose = false;
};

// runtime.engine.profile_batches(): (1, opt, max), checked; a static batch N in the graph gives (N, N, N).
std::array<int, 3> profile_batches(int max_batch, int opt_batch);

// runtime.engine.timing_cache_path(): one cache per (GPU, compute capability, TensorRT).
std::string timing_cache_file(const std::string& engines_dir, const std::string& gpu_name, const std::string& compute_capability,
                              const std::string& trt_version);

// Parse -> configure -> build -> write engine + sidecar; returns the engine path. Throws Error in a
// build without TensorRT, saying so.
std::string build_engine(const BuildOptions& options);

}  // namespace irreid
