// TensorRT engine files as runtime/backends/engine.py lays them out, and the choice of precision, without
// TensorRT: <model>/engines/<modality>.<precision>.engine beside <...>.engine.json (the sidecar:
// format_version, key, engine_sha256, built_at, build, spec). The key says where an engine may run
// (TensorRT version, GPU name, compute capability, precision, ONNX sha256, batch profile).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace irreid {

extern const char* const kPrecisions[3];  // fastest first: int8, fp16, fp32

// What a device is, as the engine key records it (runtime.backends.cuda_mem's device()).
struct DeviceFacts {
    std::string trt_version;         // "10.3.0.30" (Python's trt.__version__; the headers' M.m.p.b)
    std::string gpu_name;            // cudaDeviceProp::name
    std::string compute_capability;  // "8.7"
    // AGX Orin, Orin NX and Orin Nano share name and compute capability (issue 16 item 7): these tell
    // them apart. Compared only where the engine's key records them, as runtime/backends/engine.py does.
    std::optional<int> sm_count;               // cudaDeviceProp::multiProcessorCount
    std::optional<int> total_memory_gib;       // round(totalGlobalMem / 2^30)
    std::optional<std::string> l4t_release;    // "36.4.3" from /etc/nv_tegra_release; none off a Jetson
};

// runtime.backends.engine.l4t_release(): "# R36 (release), REVISION: 4.3, GCID: ..." -> "36.4.3".
std::optional<std::string> l4t_release(const std::string& nv_tegra_release_text);
// This machine's /etc/nv_tegra_release, parsed; nullopt off a Jetson.
std::optional<std::string> read_l4t_release(const std::string& path = "/etc/nv_tegra_release");
// runtime.backends.engine.memory_gib(): Python's round() of bytes / 2^30 (half to even).
int memory_gib(double total_bytes);

// dla_core >= 0: the engine `irreid-edge build --dla-core N` writes, <modality>.<precision>.dla<N>.engine.
std::string engine_file(const std::string& model_dir, const std::string& modality, const std::string& precision, int dla_core = -1);
// The engine to run for (modality, precision): the GPU engine when built, else the first DLA core's
// (runtime.backends.engine.built_engines' order); the GPU engine's path when none is built.
std::string find_engine(const std::string& model_dir, const std::string& modality, const std::string& precision);

// How an engine must run, from its sidecar key: the DLA core it was built for (-1: the GPU) and its
// fixed batch (min == max of the profile, as every DLA engine has; 0: dynamic).
struct EngineRun {
    int dla_core = -1;
    int fixed_batch = 0;
};
EngineRun engine_run(const nlohmann::json& key);
// n images of per_image floats, zero-padded to `to` images (a fixed-batch engine fed fewer).
std::vector<float> pad_batch(const std::vector<float>& batch, int n, int to, size_t per_image);
// The graph TensorRT builds for a precision (runtime.model_dir.model_file(..., target="trt")).
std::string trt_graph_file(const std::string& model_dir, const std::string& modality, const std::string& precision);
// `irreid-edge-native build ...` for one encoder: the fix named in every "no engine" message.
std::string native_build_command(const std::string& model_dir, const std::string& modality, const std::string& precision);

// runtime.backends.engine.key_mismatches(): one phrase per difference; an empty onnx_sha256 skips that check.
std::vector<std::string> key_mismatches(const nlohmann::json& key, const DeviceFacts& here, const std::string& onnx_sha256,
                                        const std::string& precision);

// Why the engine for (modality, precision) cannot run here ("" when it can): missing, unreadable or
// malformed sidecar, or a key that differs from this device / the ONNX beside it.
std::string engine_problem(const std::string& model_dir, const std::string& modality, const std::string& precision,
                           const DeviceFacts& here);

struct PrecisionChoice {
    std::string precision;  // fp32 | fp16 | int8
    std::string reason;     // printed: why this one
};

// --precision for running: "auto" = the fastest engine already built for this device (int8 > fp16 >
// fp32), the same rule as the Python runtime's auto (issue 16 item 1), which also falls back to ONNX
// Runtime; the native runtime runs engines only, so with none usable it refuses with the build command.
// An explicit precision whose graph and engine are both absent is refused (never a silent fp32 run).
PrecisionChoice choose_run_precision(const std::string& model_dir, const std::string& modality, const std::string& requested,
                                     const DeviceFacts& here);

// --precision for building: "auto" = the fastest graph the export has (int8 > fp16 > fp32).
PrecisionChoice choose_build_precision(const std::string& model_dir, const std::string& modality, const std::string& requested);

// "auto" or one of kPrecisions, else an Error listing the valid values.
void check_precision_option(const std::string& value);

// The sidecar runtime.backends.engine.write_engine() writes, as text: json.dumps(payload, indent=2, sort_keys=True) + "\n".
std::string sidecar_text(const nlohmann::json& key, const std::string& engine_sha256, const std::string& built_at,
                         const nlohmann::json& build, const nlohmann::json& spec);

}  // namespace irreid
