// Building a TensorRT engine from an exported model on the device that will run it: the native
// twin of `irreid-edge build` (runtime/backends/trt_build.py), for devices without the TensorRT
// Python module (JetPack 5's Python 3.8; issue 16 item 9). Writes the engine and the same sidecar
// (runtime/backends/engine.py's write_engine), so either runtime loads what the other built.
#pragma once

#include <array>
#include <string>
#include <vector>

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

// runtime.backends.engine.profile_batches(): (1, opt, max), checked; a static batch N in the graph gives (N, N, N).
std::array<int, 3> profile_batches(int max_batch, int opt_batch);

// runtime.backends.engine.timing_cache_path(): one cache per (GPU, compute capability, TensorRT).
std::string timing_cache_file(const std::string& engines_dir, const std::string& gpu_name, const std::string& compute_capability,
                              const std::string& trt_version);

// What fp32_layer_indices needs of a TensorRT layer (pure, so it is tested without TensorRT).
struct LayerView {
    std::string kind;  // LayerType without the k: "REDUCE", "ELEMENTWISE", ... ("OTHER" for the rest)
    std::vector<std::string> inputs, outputs;  // tensor names
    bool float_outputs = true;                 // every output is a float tensor
};

// runtime.backends.trt_compat.fp32_layer_indices (issue 16 item 6): in a weakly typed fp16/int8 build
// (TensorRT < 10, JetPack 5's 8.5) TensorRT may run the graph's fp32 region in fp16, where the L2
// norm's sum of squares overflows; these layers get fp32 precision, kept by OBEY_PRECISION_CONSTRAINTS:
// every reduction or normalisation, the elementwise math feeding a reduction, everything downstream
// of one, skipping Q/DQ, shape, constant, cast, identity and assertion layers.
std::vector<int> fp32_layer_indices(const std::vector<LayerView>& layers);

// Parse -> configure -> build -> write engine + sidecar; returns the engine path. Throws Error in a
// build without TensorRT, saying so.
std::string build_engine(const BuildOptions& options);

}  // namespace irreid
