// ModelSpec (runtime/spec.py) as read by the native runtime, and the exported model folder's
// spec.json (runtime/model_dir.py): {"format_version": 1, "encoders": {"rgb": spec, "ir": spec}}.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

namespace irreid {

struct ModelSpec {
    std::string name;
    std::string modality;        // "rgb" | "ir"
    int input_height = 0;
    int input_width = 0;
    int embedding_dim = 0;
    int stripes = 3;
    std::string channel_order = "RGB";  // "RGB" | "BGR"
    std::string normalize = "graph";    // "graph" | "preprocess"
    bool l2_normalized = true;
    std::string precision = "fp32";
    std::array<double, 3> mean{0.485, 0.456, 0.406};
    std::array<double, 3> std{0.229, 0.224, 0.225};
    std::optional<std::string> checkpoint_sha256;
    std::optional<std::string> onnx_sha256;
    nlohmann::json raw;  // the dict as read, for writing it back unchanged

    // Validates the fields the native runtime relies on; throws Error naming the field.
    static ModelSpec from_json(const nlohmann::json& j, const std::string& source);

    // Same value as runtime.spec.ModelSpec.fingerprint(): sha256 of Python's json.dumps(..., sort_keys=True)
    // of the fields that decide what an embedding means.
    std::string fingerprint() const;
};

// Reads <dir>/spec.json; keys are modalities.
std::map<std::string, ModelSpec> read_model_dir_specs(const std::string& model_dir);

// Python's json.dumps(obj, sort_keys=True) with the default separators and ensure_ascii=True.
std::string python_json_dumps(const nlohmann::json& j);

}  // namespace irreid
