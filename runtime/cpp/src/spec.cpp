#include "irreid/spec.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "irreid/error.h"
#include "irreid/sha256.h"

namespace irreid {
namespace {

constexpr int kSpecFormatVersion = 1;

template <typename T>
T required(const nlohmann::json& j, const char* key, const std::string& source) {
    if (!j.contains(key)) throw Error(source + ": ModelSpec is missing required field " + key + "; re-export the model");
    try {
        return j.at(key).get<T>();
    } catch (const nlohmann::json::exception&) {
        throw Error(source + ": ModelSpec." + key + " has the wrong type; re-export the model");
    }
}

template <typename T>
T optional_field(const nlohmann::json& j, const char* key, T fallback, const std::string& source) {
    return j.contains(key) && !j.at(key).is_null() ? required<T>(j, key, source) : fallback;
}

void check_choice(const std::string& value, std::initializer_list<const char*> valid, const char* field, const std::string& source) {
    std::string list;
    for (const char* v : valid) {
        if (value == v) return;
        list += (list.empty() ? "" : ", ") + std::string(v);
    }
    throw Error(source + ": ModelSpec." + field + "='" + value + "' is invalid; valid values: " + list);
}

void append_escaped(std::string& out, const std::string& s) {
    out += '"';
    for (size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        uint32_t cp = c;
        size_t len = 1;
        if (c >= 0xF0) cp = c & 0x07, len = 4;
        else if (c >= 0xE0) cp = c & 0x0F, len = 3;
        else if (c >= 0xC0) cp = c & 0x1F, len = 2;
        for (size_t k = 1; k < len && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
        i += len;
        char buf[16];
        if (cp == '"') out += "\\\"";
        else if (cp == '\\') out += "\\\\";
        else if (cp == '\n') out += "\\n";
        else if (cp == '\r') out += "\\r";
        else if (cp == '\t') out += "\\t";
        else if (cp == '\b') out += "\\b";
        else if (cp == '\f') out += "\\f";
        else if (cp < 0x20 || (cp >= 0x7F && cp < 0x10000)) std::snprintf(buf, sizeof(buf), "\\u%04x", cp), out += buf;
        else if (cp >= 0x10000) {  // ensure_ascii writes a surrogate pair
            const uint32_t v = cp - 0x10000;
            std::snprintf(buf, sizeof(buf), "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
            out += buf;
        } else out += static_cast<char>(cp);
    }
    out += '"';
}

void dump(std::string& out, const nlohmann::json& j) {
    switch (j.type()) {
        case nlohmann::json::value_t::object: {
            out += '{';
            bool first = true;
            for (const auto& [k, v] : j.items()) {  // nlohmann's object keeps keys sorted
                out += first ? "" : ", ";
                first = false;
                append_escaped(out, k);
                out += ": ";
                dump(out, v);
            }
            out += '}';
            break;
        }
        case nlohmann::json::value_t::array: {
            out += '[';
            for (size_t i = 0; i < j.size(); ++i) {
                out += i ? ", " : "";
                dump(out, j[i]);
            }
            out += ']';
            break;
        }
        case nlohmann::json::value_t::string: append_escaped(out, j.get<std::string>()); break;
        default: out += j.dump();  // numbers (shortest round-trip, as Python's repr), bools, null
    }
}

nlohmann::json float_list(const std::array<double, 3>& v) {
    return nlohmann::json::array({v[0], v[1], v[2]});
}

}  // namespace

std::string python_json_dumps(const nlohmann::json& j) {
    std::string out;
    dump(out, j);
    return out;
}

ModelSpec ModelSpec::from_json(const nlohmann::json& j, const std::string& source) {
    if (!j.is_object()) throw Error(source + ": a ModelSpec must be a JSON object");
    ModelSpec s;
    s.raw = j;
    s.name = required<std::string>(j, "name", source);
    s.modality = required<std::string>(j, "modality", source);
    check_choice(s.modality, {"rgb", "ir"}, "modality", source);
    s.input_height = required<int>(j, "input_height", source);
    s.input_width = required<int>(j, "input_width", source);
    s.embedding_dim = required<int>(j, "embedding_dim", source);
    if (s.input_height <= 0 || s.input_width <= 0 || s.embedding_dim <= 0)
        throw Error(source + ": ModelSpec sizes must be positive integers; re-export the model");
    s.stripes = optional_field<int>(j, "stripes", 3, source);
    s.channel_order = optional_field<std::string>(j, "channel_order", "RGB", source);
    check_choice(s.channel_order, {"RGB", "BGR"}, "channel_order", source);
    s.normalize = optional_field<std::string>(j, "normalize", "graph", source);
    check_choice(s.normalize, {"graph", "preprocess"}, "normalize", source);
    s.l2_normalized = optional_field<bool>(j, "l2_normalized", true, source);
    s.precision = optional_field<std::string>(j, "precision", "fp32", source);
    check_choice(s.precision, {"fp32", "fp16", "int8"}, "precision", source);
    if (j.contains("mean")) s.mean = required<std::array<double, 3>>(j, "mean", source);
    if (j.contains("std")) s.std = required<std::array<double, 3>>(j, "std", source);
    if (j.contains("checkpoint_sha256") && !j["checkpoint_sha256"].is_null()) s.checkpoint_sha256 = required<std::string>(j, "checkpoint_sha256", source);
    if (j.contains("onnx_sha256") && !j["onnx_sha256"].is_null()) s.onnx_sha256 = required<std::string>(j, "onnx_sha256", source);
    const int version = optional_field<int>(j, "format_version", kSpecFormatVersion, source);
    if (version != kSpecFormatVersion)
        throw Error(source + ": ModelSpec.format_version=" + std::to_string(version) + " is not supported (this build reads 1); re-export the model");
    return s;
}

std::string ModelSpec::fingerprint() const {
    nlohmann::json d = {
        {"name", name}, {"modality", modality}, {"input_height", input_height}, {"input_width", input_width},
        {"embedding_dim", embedding_dim}, {"stripes", stripes}, {"channel_order", channel_order},
        {"mean", float_list(mean)}, {"std", float_list(std)}, {"normalize", normalize},
        {"l2_normalized", l2_normalized}, {"precision", precision},
        {"checkpoint_sha256", checkpoint_sha256 ? nlohmann::json(*checkpoint_sha256) : nlohmann::json(nullptr)},
        {"onnx_sha256", onnx_sha256 ? nlohmann::json(*onnx_sha256) : nlohmann::json(nullptr)},
    };
    const std::string payload = python_json_dumps(d);
    return sha256_hex(payload.data(), payload.size());
}

std::map<std::string, ModelSpec> read_model_dir_specs(const std::string& model_dir) {
    const std::string path = model_dir + "/spec.json";
    std::ifstream f(path);
    if (!f) throw Error(path + ": missing; this is not an irreid-edge export (run `python -m export.onnx`)");
    nlohmann::json j;
    try {
        j = nlohmann::json::parse(f);
    } catch (const nlohmann::json::parse_error& e) {
        throw Error(path + ": malformed JSON (" + e.what() + "); re-export the model");
    }
    if (!j.contains("format_version") || j["format_version"] != kSpecFormatVersion)
        throw Error(path + ": format_version is not 1; re-export the model with this irreid-edge");
    if (!j.contains("encoders") || !j["encoders"].is_object()) throw Error(path + ": no 'encoders' object; re-export the model");
    std::map<std::string, ModelSpec> specs;
    for (const auto& [modality, d] : j["encoders"].items()) specs.emplace(modality, ModelSpec::from_json(d, path));
    return specs;
}

}  // namespace irreid
