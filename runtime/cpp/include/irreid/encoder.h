// An encoder turns a preprocessed batch (N, 3, H, W) float32 raw 0-255 into embeddings (N, D).
// The TensorRT backend is compiled only when TensorRT is found (IRREID_HAVE_TENSORRT); without it
// make_encoder() throws an Error saying so, and ranking precomputed embeddings still works.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "irreid/engine.h"
#include "irreid/spec.h"

namespace irreid {

class Encoder {
public:
    virtual ~Encoder() = default;
    virtual const ModelSpec& spec() const = 0;
    virtual std::string backend() const = 0;
    // batch: n x 3 x H x W floats; returns n x D floats.
    virtual std::vector<float> embed(const std::vector<float>& batch, int n) = 0;
};

bool have_tensorrt();

// This device as an engine key records it (TensorRT version, GPU, compute capability); nullopt in a
// build without TensorRT. Throws Error when TensorRT is built in but no GPU can be used.
std::optional<DeviceFacts> device_facts();

// The engine for <model_dir>/engines/<modality>.<precision>.engine, checked against its key sidecar;
// precision is a concrete one (choose_run_precision() resolves "auto").
std::unique_ptr<Encoder> make_encoder(const std::string& model_dir, const std::string& modality, const std::string& precision);

}  // namespace irreid
