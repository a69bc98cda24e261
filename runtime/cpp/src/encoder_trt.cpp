// TensorRT backend (built with IRREID_HAVE_TENSORRT; needs TensorRT >= 8.5 for the named-tensor API).
// Loads <model>/engines/<modality>.<precision>.engine after checking its sidecar key exactly as
// runtime/engine.py does (TensorRT version, GPU name, compute capability, precision, ONNX sha256),
// then runs input "images" (N, 3, H, W) float32 raw 0-255 -> output "embeddings" (N, D).
// Every TensorRT object is owned by a std::unique_ptr (TensorRT >= 8 objects are deleted with delete).
#include <NvInfer.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "irreid/encoder.h"
#include "irreid/error.h"
#include "irreid/sha256.h"

namespace irreid {
namespace {

class Logger : public nvinfer1::ILogger {
public:
    void log(Severity severity, const char* msg) noexcept override {
        if (severity <= Severity::kWARNING) std::fprintf(stderr, "TensorRT: %s\n", msg);
    }
};

Logger& logger() {
    static Logger instance;
    return instance;
}

void cuda_check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) throw Error(std::string("CUDA ") + what + ": " + cudaGetErrorString(e));
}

struct CudaFree {
    void operator()(void* p) const { cudaFree(p); }
};

struct StreamDestroy {
    void operator()(CUstream_st* s) const { cudaStreamDestroy(s); }
};

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

std::string read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": engine not found; build it with `irreid-edge build`");
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

// "M.m.p" of the TensorRT headers this was built with (JetPack and tar installs ship headers and
// library together); Python records trt.__version__ ("M.m.p.b"), so a prefix match is equality.
std::string trt_version_here() {
    return std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + "." + std::to_string(NV_TENSORRT_PATCH);
}

// The same checks as runtime.engine.key_mismatches(); the message ends with the rebuild command.
void check_key(const std::string& engine, const nlohmann::json& key, const std::string& onnx_path, const std::string& precision,
               const std::string& rebuild) {
    cudaDeviceProp prop{};
    cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
    const std::string cc = std::to_string(prop.major) + "." + std::to_string(prop.minor);
    const std::string trt = trt_version_here();
    std::string diff;
    auto differ = [&](const char* what, const std::string& was, const std::string& now) {
        diff += (diff.empty() ? "" : "; ") + std::string(what) + " " + was + " (engine) != " + now + " (here)";
    };
    const std::string recorded_trt = key.value("trt_version", "");
    if (recorded_trt != trt && recorded_trt.rfind(trt + ".", 0) != 0) differ("TensorRT", recorded_trt, trt);
    if (key.value("gpu_name", "") != prop.name) differ("GPU", key.value("gpu_name", ""), prop.name);
    if (key.value("compute_capability", "") != cc) differ("compute capability", key.value("compute_capability", ""), cc);
    if (key.value("precision", "") != precision) differ("precision", key.value("precision", ""), precision);
    if (file_exists(onnx_path) && key.value("onnx_sha256", "") != file_sha256_hex(onnx_path))
        differ("ONNX sha256", key.value("onnx_sha256", "").substr(0, 12) + "...", file_sha256_hex(onnx_path).substr(0, 12) + "...");
    if (!diff.empty()) throw Error(engine + ": built for another setup (" + diff + "); rebuild it on this device with `" + rebuild + "`");
}

class TrtEncoder : public Encoder {
public:
    TrtEncoder(const std::string& model_dir, const std::string& modality, const std::string& precision) {
        const std::string engine = model_dir + "/engines/" + modality + "." + precision + ".engine";
        const std::string sidecar = engine + ".json";
        const std::string rebuild = "irreid-edge build --model " + model_dir + " --precision " + precision + " --modality " + modality;
        const std::string blob = read_bytes(engine);
        nlohmann::json side;
        try {
            side = nlohmann::json::parse(read_bytes(sidecar));
        } catch (const nlohmann::json::exception&) {
            throw Error(sidecar + ": malformed JSON; rebuild the engine with `" + rebuild + "`");
        }
        if (side.value("engine_sha256", "") != sha256_hex(blob.data(), blob.size()))
            throw Error(engine + ": does not match its sidecar (interrupted build?); rebuild it with `" + rebuild + "`");
        const std::string onnx = model_dir + "/" + modality + (precision == "fp32" ? "" : "." + precision) + ".onnx";
        check_key(engine, side.at("key"), onnx, precision, rebuild);
        spec_ = ModelSpec::from_json(side.at("spec"), sidecar);
        max_batch_ = side.at("key").at("profile").at(2).get<int>();

        runtime_.reset(nvinfer1::createInferRuntime(logger()));
        if (!runtime_) throw Error("TensorRT: cannot create a runtime");
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_) throw Error(engine + ": TensorRT could not deserialise it; rebuild it with `" + rebuild + "`");
        context_.reset(engine_->createExecutionContext());
        if (!context_) throw Error(engine + ": cannot create an execution context");
        cudaStream_t s = nullptr;
        cuda_check(cudaStreamCreate(&s), "cudaStreamCreate");
        stream_.reset(s);
    }

    const ModelSpec& spec() const override { return spec_; }
    std::string backend() const override { return "tensorrt-" + spec_.precision; }

    std::vector<float> embed(const std::vector<float>& batch, int n) override {
        const int h = spec_.input_height, w = spec_.input_width, d = spec_.embedding_dim;
        if (n <= 0 || n > max_batch_) throw Error("batch " + std::to_string(n) + " is outside the engine's profile (1.." + std::to_string(max_batch_) + ")");
        const size_t in_bytes = static_cast<size_t>(n) * 3 * h * w * sizeof(float), out_bytes = static_cast<size_t>(n) * d * sizeof(float);
        reserve(input_, input_cap_, in_bytes);
        reserve(output_, output_cap_, out_bytes);
        cuda_check(cudaMemcpyAsync(input_.get(), batch.data(), in_bytes, cudaMemcpyHostToDevice, stream_.get()), "upload");
        if (!context_->setInputShape("images", nvinfer1::Dims4{n, 3, h, w})) throw Error("TensorRT: input 'images' refused the batch shape");
        context_->setTensorAddress("images", input_.get());
        context_->setTensorAddress("embeddings", output_.get());
        if (!context_->enqueueV3(stream_.get())) throw Error("TensorRT: inference failed (enqueueV3)");
        std::vector<float> out(static_cast<size_t>(n) * d);
        cuda_check(cudaMemcpyAsync(out.data(), output_.get(), out_bytes, cudaMemcpyDeviceToHost, stream_.get()), "download");
        cuda_check(cudaStreamSynchronize(stream_.get()), "synchronize");
        return out;
    }

private:
    static void reserve(std::unique_ptr<void, CudaFree>& p, size_t& cap, size_t bytes) {
        if (bytes <= cap) return;
        void* raw = nullptr;
        cuda_check(cudaMalloc(&raw, bytes), "cudaMalloc");
        p.reset(raw);
        cap = bytes;
    }

    ModelSpec spec_;
    int max_batch_ = 1;
    // Declaration order = reverse destruction order: the context goes before its engine, the engine before the runtime.
    std::unique_ptr<nvinfer1::IRuntime> runtime_;
    std::unique_ptr<nvinfer1::ICudaEngine> engine_;
    std::unique_ptr<nvinfer1::IExecutionContext> context_;
    std::unique_ptr<CUstream_st, StreamDestroy> stream_;
    std::unique_ptr<void, CudaFree> input_, output_;
    size_t input_cap_ = 0, output_cap_ = 0;
};

}  // namespace

bool have_tensorrt() { return true; }

std::unique_ptr<Encoder> make_encoder(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    return std::make_unique<TrtEncoder>(model_dir, modality, precision);
}

}  // namespace irreid
