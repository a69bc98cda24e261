// `irreid-edge-native build` with TensorRT's C++ API (built with IRREID_HAVE_TENSORRT): the stages of
// runtime/backends/trt_build.py -- parse ONNX, configure (flags, workspace, batch profile, timing
// cache), build the serialised network, write engine + sidecar. The calls follow NVIDIA's
// sampleOnnxMNIST (github.com/NVIDIA/TensorRT samples/sampleOnnxMNIST) and the TensorRT C++ API
// reference (IBuilder::createNetworkV2, nvonnxparser::IParser::parseFromFile,
// IBuilderConfig::setMemoryPoolLimit, IOptimizationProfile::setDimensions,
// IBuilder::buildSerializedNetwork); the version rules are runtime/backends/trt_compat.py's build_plan().
#include <NvOnnxParser.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cmath>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <sys/stat.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "irreid/build.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/npy.h"
#include "irreid/sha256.h"
#include "irreid/spec.h"
#include "irreid/version.h"
#include "trt_common.h"

namespace irreid {
namespace {

using nvinfer1::BuilderFlag;
using nvinfer1::NetworkDefinitionCreationFlag;

struct Plan {
    uint32_t network_flags = 0;
    std::vector<BuilderFlag> builder_flags;
    std::vector<std::string> network_names, builder_names;  // recorded in the sidecar, as Python does
    bool strongly_typed = false;
};

// runtime.backends.trt_compat.build_plan(v, precision, precision): the export's graph already holds the
// precision (fp16 graph, explicit Q/DQ int8 graph), so it is built strongly typed where TensorRT
// allows (10.x flag; always from 11), else weakly typed with the flags that let TensorRT use the
// graph's own precision (explicit batch before 10; INT8 needs FP16 for the layers around Q/DQ).
Plan build_plan(const std::string& precision) {
    Plan p;
#if NV_TENSORRT_MAJOR >= 11
    (void)precision;
    p.strongly_typed = true;
#elif NV_TENSORRT_MAJOR == 10
    (void)precision;
    p.network_flags |= 1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kSTRONGLY_TYPED);
    p.network_names = {"STRONGLY_TYPED"};
    p.strongly_typed = true;
#else
    p.network_flags |= 1U << static_cast<uint32_t>(NetworkDefinitionCreationFlag::kEXPLICIT_BATCH);
    p.network_names = {"EXPLICIT_BATCH"};
    if (precision == "int8") p.builder_flags = {BuilderFlag::kINT8, BuilderFlag::kFP16}, p.builder_names = {"INT8", "FP16"};
    if (precision == "fp16") p.builder_flags = {BuilderFlag::kFP16}, p.builder_names = {"FP16"};
    if (precision != "fp32") {  // keeps the fp32 layers pinned by pin_fp32_layers (from 8.2; trt_compat)
        p.builder_flags.push_back(BuilderFlag::kOBEY_PRECISION_CONSTRAINTS);
        p.builder_names.push_back("OBEY_PRECISION_CONSTRAINTS");
    }
#endif
    return p;
}

#if NV_TENSORRT_MAJOR < 10
// The layer kinds fp32_layer_indices distinguishes; TensorRT 8.x's ONNX parser imports Cast as Identity.
std::string kind_name(nvinfer1::LayerType t) {
    using nvinfer1::LayerType;
    switch (t) {
        case LayerType::kREDUCE: return "REDUCE";
        case LayerType::kELEMENTWISE: return "ELEMENTWISE";
        case LayerType::kUNARY: return "UNARY";
        case LayerType::kQUANTIZE: return "QUANTIZE";
        case LayerType::kDEQUANTIZE: return "DEQUANTIZE";
        case LayerType::kSHAPE: return "SHAPE";
        case LayerType::kCONSTANT: return "CONSTANT";
        case LayerType::kIDENTITY: return "IDENTITY";
        case LayerType::kASSERTION: return "ASSERTION";
#if NV_TENSORRT_MAJOR > 8 || NV_TENSORRT_MINOR >= 6
        case LayerType::kNORMALIZATION: return "NORMALIZATION";  // INormalizationLayer: 8.6
#endif
        default: return "OTHER";
    }
}

// Weakly typed fp16/int8 build: run the graph's fp32 region (the L2 normalisation) in fp32
// (ILayer::setPrecision / setOutputType, kept by kOBEY_PRECISION_CONSTRAINTS); returns the count.
int pin_fp32_layers(nvinfer1::INetworkDefinition& network) {
    std::vector<LayerView> views;
    for (int32_t i = 0; i < network.getNbLayers(); ++i) {
        const nvinfer1::ILayer& layer = *network.getLayer(i);
        LayerView v;
        v.kind = kind_name(layer.getType());
        for (int32_t k = 0; k < layer.getNbInputs(); ++k)
            if (const nvinfer1::ITensor* t = layer.getInput(k)) v.inputs.push_back(t->getName());
        for (int32_t k = 0; k < layer.getNbOutputs(); ++k) {
            const nvinfer1::ITensor* t = layer.getOutput(k);
            v.outputs.push_back(t->getName());
            v.float_outputs = v.float_outputs && (t->getType() == nvinfer1::DataType::kFLOAT || t->getType() == nvinfer1::DataType::kHALF);
        }
        views.push_back(std::move(v));
    }
    const std::vector<int> indices = fp32_layer_indices(views);
    for (const int i : indices) {
        nvinfer1::ILayer& layer = *network.getLayer(i);
        layer.setPrecision(nvinfer1::DataType::kFLOAT);
        for (int32_t k = 0; k < layer.getNbOutputs(); ++k) layer.setOutputType(k, nvinfer1::DataType::kFLOAT);
    }
    return static_cast<int>(indices.size());
}
#endif

std::string read_file_or_empty(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return "";
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

std::string now_iso() {  // time.strftime("%Y-%m-%dT%H:%M:%S%z"), local time
    const std::time_t t = std::time(nullptr);
    std::tm local{};
    localtime_r(&t, &local);
    char buf[64];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S%z", &local);
    return buf;
}

std::string parse_errors(const nvonnxparser::IParser& parser) {
    std::string out;
    for (int32_t i = 0; i < parser.getNbErrors(); ++i) out += (out.empty() ? "" : "; ") + std::string(parser.getError(i)->desc());
    return out.empty() ? "unknown error" : out;
}

// The input must be [N, 3, H, W] with static C, H, W; a static N pins the profile to (N, N, N),
// since TensorRT needs min = opt = max for a fixed dimension (issue 16 item 4).
std::array<int, 3> check_input(const nvinfer1::ITensor& input, const std::string& onnx, std::array<int, 3> batches) {
    const nvinfer1::Dims d = input.getDimensions();
    if (d.nbDims != 4 || d.d[1] <= 0 || d.d[2] <= 0 || d.d[3] <= 0)
        throw Error(onnx + ": input '" + input.getName() + "' is not [N, 3, H, W] with static H, W; re-export the model");
    if (d.d[0] > 0) {
        const int n = static_cast<int>(d.d[0]);
        std::fprintf(stderr, "irreid-edge-native: %s has a fixed batch of %d; the profile is %d/%d/%d\n", onnx.c_str(), n, n, n, n);
        return {n, n, n};
    }
    return batches;
}

}  // namespace

std::string build_engine(const BuildOptions& o) {
    const auto specs = read_model_dir_specs(o.model_dir);
    const auto spec_it = specs.find(o.modality);
    if (spec_it == specs.end()) throw Error(o.model_dir + "/spec.json: has no '" + o.modality + "' encoder");
    const std::string onnx = trt_graph_file(o.model_dir, o.modality, o.precision);
    std::array<int, 3> batches = profile_batches(o.max_batch, o.opt_batch);
    const DeviceFacts here = trt::facts_here();
    const std::string engines_dir = o.model_dir + "/engines";
    if (::mkdir(engines_dir.c_str(), 0755) != 0 && errno != EEXIST) throw Error(engines_dir + ": cannot create it; check permissions");
    const std::string cache_path = o.timing_cache.empty()
                                       ? timing_cache_file(engines_dir, here.gpu_name, here.compute_capability, here.trt_version)
                                       : o.timing_cache;
    const std::string cache_in = read_file_or_empty(cache_path);

    trt::logger().min_severity = o.verbose ? nvinfer1::ILogger::Severity::kVERBOSE : nvinfer1::ILogger::Severity::kWARNING;
    std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(trt::logger()));
    if (!builder) throw Error("TensorRT: cannot create a builder (is a GPU visible?)");
    const Plan plan = build_plan(o.precision);
    std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(plan.network_flags));
    if (!network) throw Error("TensorRT: cannot create a network definition");
    std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, trt::logger()));
    if (!parser) throw Error("TensorRT: cannot create the ONNX parser");
    // From the file, so external weights resolve beside it.
    if (!parser->parseFromFile(onnx.c_str(), static_cast<int32_t>(nvinfer1::ILogger::Severity::kWARNING)))
        throw Error(onnx + ": TensorRT cannot parse it: " + parse_errors(*parser));
    if (network->getNbInputs() != 1) throw Error(onnx + ": expected one input, found " + std::to_string(network->getNbInputs()));
    nvinfer1::ITensor& input = *network->getInput(0);
    batches = check_input(input, onnx, batches);
    const nvinfer1::Dims chw = input.getDimensions();
    int pinned = 0;
#if NV_TENSORRT_MAJOR < 10
    if (!plan.strongly_typed && o.precision != "fp32") pinned = pin_fp32_layers(*network);
#endif

    std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
    if (!config) throw Error("TensorRT: cannot create a builder config");
    for (const BuilderFlag f : plan.builder_flags) config->setFlag(f);
    config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE, static_cast<size_t>(o.workspace_mb) << 20);
    nvinfer1::IOptimizationProfile* profile = builder->createOptimizationProfile();  // owned by the builder
    const nvinfer1::OptProfileSelector selectors[3] = {nvinfer1::OptProfileSelector::kMIN, nvinfer1::OptProfileSelector::kOPT,
                                                       nvinfer1::OptProfileSelector::kMAX};
    for (int i = 0; i < 3; ++i)
        if (!profile->setDimensions(input.getName(), selectors[i], nvinfer1::Dims4{batches[i], chw.d[1], chw.d[2], chw.d[3]}))
            throw Error(onnx + ": TensorRT refused the batch profile " + std::to_string(batches[0]) + "/" + std::to_string(batches[1]) + "/" +
                        std::to_string(batches[2]));
    if (config->addOptimizationProfile(profile) < 0) throw Error("TensorRT: the optimisation profile is invalid");
    // A timing cache from another device or version is skipped, not fatal (ignoreMismatch), as in Python.
    std::unique_ptr<nvinfer1::ITimingCache> cache(config->createTimingCache(cache_in.empty() ? nullptr : cache_in.data(), cache_in.size()));
    if (!cache || !config->setTimingCache(*cache, true)) throw Error(cache_path + ": TensorRT cannot use this timing cache; delete it");

    const auto start = std::chrono::steady_clock::now();
    std::unique_ptr<nvinfer1::IHostMemory> blob(builder->buildSerializedNetwork(*network, *config));
    if (!blob || blob->size() == 0) throw Error("TensorRT failed to build the engine for " + onnx + "; rerun with --verbose for the builder log");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::unique_ptr<nvinfer1::IHostMemory> cache_out(config->getTimingCache()->serialize());
    if (cache_out) atomic_write(cache_path, std::string(static_cast<const char*>(cache_out->data()), cache_out->size()));

    const std::string bytes(static_cast<const char*>(blob->data()), blob->size());
    const std::string onnx_sha = file_sha256_hex(onnx);
    auto or_null = [](const auto& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); };
    const nlohmann::json key = {{"onnx_sha256", onnx_sha}, {"trt_version", here.trt_version}, {"gpu_name", here.gpu_name},
                                {"compute_capability", here.compute_capability}, {"precision", o.precision},
                                {"profile", {batches[0], batches[1], batches[2]}}, {"sm_count", or_null(here.sm_count)},
                                {"total_memory_gib", or_null(here.total_memory_gib)}, {"l4t_release", or_null(here.l4t_release)},
                                {"dla_core", nullptr}};
    nlohmann::json spec = spec_it->second.raw;
    spec["precision"] = o.precision;
    spec["onnx_sha256"] = onnx_sha;
    const std::string onnx_rel = "../" + onnx.substr(onnx.rfind('/') + 1);  // os.path.relpath(onnx, engines/)
    const nlohmann::json info = {{"onnx", onnx_rel}, {"workspace_mb", o.workspace_mb}, {"timing_cache", cache_path},
                                 {"timing_cache_reused", !cache_in.empty()}, {"network_flags", plan.network_names},
                                 {"builder_flags", plan.builder_names}, {"strongly_typed", plan.strongly_typed},
                                 {"fp32_pinned_layers", pinned},
                                 {"build_seconds", std::round(seconds * 10.0) / 10.0},
                                 {"builder", std::string("irreid-edge-native ") + IRREID_VERSION}};
    const std::string engine = engine_file(o.model_dir, o.modality, o.precision);
    // Engine first, then the sidecar recording its sha256: a pair torn by a crash is refused at load.
    atomic_write(engine, bytes);
    atomic_write(engine + ".json", sidecar_text(key, sha256_hex(bytes.data(), bytes.size()), now_iso(), info, spec));
    std::fprintf(stderr, "irreid-edge-native: built %s (%.1f MB, %.0f s, batch %d/%d/%d, TensorRT %s, %s sm%s)\n", engine.c_str(),
                 static_cast<double>(bytes.size()) / (1 << 20), seconds, batches[0], batches[1], batches[2], here.trt_version.c_str(),
                 here.gpu_name.c_str(), here.compute_capability.c_str());
    return engine;
}

}  // namespace irreid
