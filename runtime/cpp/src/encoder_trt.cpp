// TensorRT backend (built with IRREID_HAVE_TENSORRT; needs TensorRT >= 8.5 for the named-tensor API).
// Loads <model>/engines/<modality>.<precision>.engine after checking its sidecar key exactly as
// runtime/backends/engine.py does (TensorRT version, GPU name, compute capability, precision, ONNX sha256),
// then runs input "images" (N, 3, H, W) float32 raw 0-255 -> output "embeddings" (N, D). The input
// is preprocessed on the CPU and copied with cudaMemcpyAsync, so this needs the CUDA runtime only,
// not the CUDA compiler (issue 16 item 8).
// Every TensorRT object is owned by a std::unique_ptr (TensorRT >= 8 objects are deleted with delete).
#include <fstream>
#include <memory>
#include <sstream>

#include <nlohmann/json.hpp>

#include "irreid/encoder.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/sha256.h"
#include "trt_common.h"

namespace irreid {
namespace {

using trt::cuda_check;
using trt::logger;

struct CudaFree {
    void operator()(void* p) const { cudaFree(p); }
};

struct StreamDestroy {
    void operator()(CUstream_st* s) const { cudaStreamDestroy(s); }
};

std::string read_bytes(const std::string& path, const std::string& rebuild) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": not found; build it with `" + rebuild + "`");
    std::ostringstream s;
    s << f.rdbuf();
    return s.str();
}

class TrtEncoder : public Encoder {
public:
    TrtEncoder(const std::string& model_dir, const std::string& modality, const std::string& precision) {
        const std::string engine = find_engine(model_dir, modality, precision);  // the GPU engine, else a DLA one
        const std::string sidecar = engine + ".json";
        const std::string rebuild = native_build_command(model_dir, modality, precision);
        const std::string blob = read_bytes(engine, rebuild);
        nlohmann::json side;
        try {
            side = nlohmann::json::parse(read_bytes(sidecar, rebuild));
            if (side.value("engine_sha256", "") != sha256_hex(blob.data(), blob.size()))
                throw Error(engine + ": does not match its sidecar (interrupted build?); rebuild it with `" + rebuild + "`");
            const std::string onnx = trt_graph_file(model_dir, modality, precision);
            std::ifstream onnx_present(onnx);
            const auto diff = key_mismatches(side.at("key"), trt::facts_here(), onnx_present ? file_sha256_hex(onnx) : "", precision);
            if (!diff.empty()) {
                std::string text;
                for (const auto& d : diff) text += (text.empty() ? "" : "; ") + d;
                throw Error(engine + ": built for another setup (" + text + "); rebuild it on this device with `" + rebuild + "`");
            }
            spec_ = ModelSpec::from_json(side.at("spec"), sidecar);
            max_batch_ = side.at("key").at("profile").at(2).get<int>();
            run_ = engine_run(side.at("key"));
        } catch (const nlohmann::json::exception& e) {
            throw Error(sidecar + ": malformed (" + e.what() + "); rebuild the engine with `" + rebuild + "`");
        }

        runtime_.reset(nvinfer1::createInferRuntime(logger()));
        if (!runtime_) throw Error("TensorRT: cannot create a runtime");
        // An engine built for DLA runs on the core the runtime names before deserialising
        // (IRuntime::setDLACore), as runtime/backends/trt.py does with IRuntime.DLA_core.
        if (run_.dla_core >= 0) runtime_->setDLACore(run_.dla_core);
        engine_.reset(runtime_->deserializeCudaEngine(blob.data(), blob.size()));
        if (!engine_) throw Error(engine + ": TensorRT could not deserialise it; rebuild it with `" + rebuild + "`");
        // The exports keep float32 I/O around fp16/int8 bodies (export/fp16.py); this backend copies
        // float32 in and out, so any other I/O type (a foreign fp16-I/O graph) is refused, not misread.
        for (const char* name : {"images", "embeddings"})
            if (engine_->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
                throw Error(engine + ": tensor '" + name + "' is not float32; the native runtime needs float32 input and output "
                            "(export with float32 I/O, or use `irreid-edge`, which converts)");
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
        if (run_.fixed_batch > 0 && n < run_.fixed_batch) {
            // a fixed-batch engine (every DLA engine): pad with zero images, keep the first n rows
            std::vector<float> out = embed(pad_batch(batch, n, run_.fixed_batch, static_cast<size_t>(3) * h * w), run_.fixed_batch);
            out.resize(static_cast<size_t>(n) * d);
            return out;
        }
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
    EngineRun run_;
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

std::optional<DeviceFacts> device_facts() { return trt::facts_here(); }

std::unique_ptr<Encoder> make_encoder(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    return std::make_unique<TrtEncoder>(model_dir, modality, precision);
}

}  // namespace irreid
