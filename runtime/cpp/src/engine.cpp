// Engine paths, key checks and the choice of precision (see irreid/engine.h); no TensorRT needed,
// so the rules are tested on any machine with fabricated device facts and sidecars.
#include "irreid/engine.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <sys/stat.h>

#include "irreid/build.h"
#include "irreid/error.h"
#include "irreid/sha256.h"

namespace irreid {
namespace {

constexpr int kEngineFormatVersion = 1;  // runtime.backends.engine.ENGINE_FORMAT_VERSION

bool file_exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
    return out;
}

std::string base_name(const std::string& path) { return path.substr(path.rfind('/') + 1); }

// The export flag that writes a precision's graph (export/onnx.py).
std::string export_hint(const std::string& precision) {
    if (precision == "int8") return "`python -m export.onnx --int8 --calib DIR`";
    if (precision == "fp16") return "`python -m export.onnx --fp16`";
    return "`python -m export.onnx`";
}

}  // namespace

const char* const kPrecisions[3] = {"int8", "fp16", "fp32"};

void check_precision_option(const std::string& value) {
    if (value == "auto") return;
    for (const char* p : kPrecisions)
        if (value == p) return;
    throw Error("--precision '" + value + "' is invalid; valid values: auto, fp32, fp16, int8");
}

std::string engine_file(const std::string& model_dir, const std::string& modality, const std::string& precision, int dla_core) {
    const std::string dla = dla_core >= 0 ? ".dla" + std::to_string(dla_core) : "";
    return model_dir + "/engines/" + modality + "." + precision + dla + ".engine";
}

std::string find_engine(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    const std::string gpu = engine_file(model_dir, modality, precision);
    if (file_exists(gpu)) return gpu;
    for (int core = 0; core < 16; ++core)  // Orin has two DLA cores; TensorRT numbers them from 0
        if (file_exists(engine_file(model_dir, modality, precision, core))) return engine_file(model_dir, modality, precision, core);
    return gpu;
}

EngineRun engine_run(const nlohmann::json& key) {
    EngineRun run;
    if (key.contains("dla_core") && key["dla_core"].is_number_integer()) run.dla_core = key["dla_core"].get<int>();
    const auto& profile = key.at("profile");
    if (profile.at(0).get<int>() == profile.at(2).get<int>()) run.fixed_batch = profile.at(0).get<int>();
    return run;
}

std::vector<float> pad_batch(const std::vector<float>& batch, int n, int to, size_t per_image) {
    if (n < 0 || n > to || batch.size() < static_cast<size_t>(n) * per_image)
        throw Error("batch " + std::to_string(n) + " cannot be padded to " + std::to_string(to));
    std::vector<float> out(static_cast<size_t>(to) * per_image, 0.0f);  // (to, 3, H, W), zeros past n
    std::copy(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(n) * per_image), out.begin());
    return out;
}

std::string trt_graph_file(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    return model_dir + "/" + modality + (precision == "fp32" ? "" : "." + precision) + ".onnx";
}

std::string native_build_command(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    return "irreid-edge-native build --model " + model_dir + " --modality " + modality + " --precision " + precision;
}

std::optional<std::string> l4t_release(const std::string& text) {
    static const std::regex re(R"(#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+))");
    std::smatch m;
    if (!std::regex_search(text, m, re)) return std::nullopt;
    std::string revision = m[2].str();
    while (!revision.empty() && revision.back() == '.') revision.pop_back();
    return m[1].str() + "." + revision;
}

std::optional<std::string> read_l4t_release(const std::string& path) {
    std::ifstream f(path);
    if (!f) return std::nullopt;
    std::ostringstream s;
    s << f.rdbuf();
    return l4t_release(s.str());
}

int memory_gib(double total_bytes) { return static_cast<int>(std::nearbyint(total_bytes / 1073741824.0)); }

std::vector<std::string> key_mismatches(const nlohmann::json& key, const DeviceFacts& here, const std::string& onnx_sha256,
                                        const std::string& precision) {
    std::vector<std::string> out;
    auto field = [&](const char* name) { return key.contains(name) && key[name].is_string() ? key[name].get<std::string>() : std::string(); };
    auto check = [&](const char* what, const std::string& was, const std::string& now) {
        if (was != now) out.push_back(std::string(what) + " " + was + " (engine) != " + now + " (here)");
    };
    // A build recorded by Python carries trt.__version__ ("M.m.p.b"); equal, or equal up to the build
    // number where this side only knows "M.m.p", is the same TensorRT.
    const std::string trt = field("trt_version");
    if (trt != here.trt_version && trt.rfind(here.trt_version + ".", 0) != 0 && here.trt_version.rfind(trt + ".", 0) != 0)
        check("TensorRT", trt, here.trt_version);
    check("GPU", field("gpu_name"), here.gpu_name);
    check("compute capability", field("compute_capability"), here.compute_capability);
    check("precision", field("precision"), precision);
    // Facts older sidecars do not record (null or absent) are not compared (runtime/backends/engine.py).
    auto recorded = [&](const char* name) { return key.contains(name) && !key[name].is_null(); };
    auto text = [](const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); };
    if (recorded("sm_count"))
        check("SM count", text(key["sm_count"]), here.sm_count ? std::to_string(*here.sm_count) : "None");
    if (recorded("total_memory_gib"))
        check("memory GiB", text(key["total_memory_gib"]), here.total_memory_gib ? std::to_string(*here.total_memory_gib) : "None");
    if (recorded("l4t_release")) check("L4T", text(key["l4t_release"]), here.l4t_release.value_or("none"));
    if (!onnx_sha256.empty() && field("onnx_sha256") != onnx_sha256)
        out.push_back("ONNX sha256 " + field("onnx_sha256").substr(0, 12) + "... (engine) != " + onnx_sha256.substr(0, 12) + "... (the ONNX now)");
    return out;
}

std::string engine_problem(const std::string& model_dir, const std::string& modality, const std::string& precision,
                           const DeviceFacts& here) {
    const std::string engine = find_engine(model_dir, modality, precision);
    if (!file_exists(engine)) return "not built";
    std::ifstream f(engine + ".json");
    if (!f) return "no sidecar " + base_name(engine) + ".json";
    nlohmann::json side;
    try {
        side = nlohmann::json::parse(f);
    } catch (const nlohmann::json::exception&) {
        return "malformed sidecar";
    }
    if (!side.is_object() || side.value("format_version", 0) != kEngineFormatVersion || !side.contains("key") || !side["key"].is_object())
        return "sidecar of another format";
    const std::string onnx = trt_graph_file(model_dir, modality, precision);
    const auto diff = key_mismatches(side["key"], here, file_exists(onnx) ? file_sha256_hex(onnx) : "", precision);
    return diff.empty() ? "" : "built for another setup (" + join(diff, "; ") + ")";
}

PrecisionChoice choose_run_precision(const std::string& model_dir, const std::string& modality, const std::string& requested,
                                     const DeviceFacts& here) {
    check_precision_option(requested);
    if (requested != "auto") {
        const std::string graph = trt_graph_file(model_dir, modality, requested);
        if (!file_exists(graph) && !file_exists(find_engine(model_dir, modality, requested)))
            throw Error(model_dir + ": has no " + requested + " graph for " + modality + " (" + base_name(graph) + ") and no " + requested +
                        " engine; export it with " + export_hint(requested) + ", or use --precision auto");
        return {requested, "as requested"};
    }
    std::vector<std::string> why_not;
    for (const char* p : kPrecisions) {
        const std::string problem = engine_problem(model_dir, modality, p, here);
        if (problem.empty()) return {p, "auto: the fastest engine built for this device"};
        if (problem != "not built") why_not.push_back(std::string(p) + " " + problem);
    }
    const std::string best = choose_build_precision(model_dir, modality, "auto").precision;
    throw Error(model_dir + ": no TensorRT engine for " + modality + " built for this device" +
                (why_not.empty() ? std::string(" (none built)") : " (" + join(why_not, "; ") + ")") + "; build one with `" +
                native_build_command(model_dir, modality, best) + "` (or `irreid-edge build`)");
}

PrecisionChoice choose_build_precision(const std::string& model_dir, const std::string& modality, const std::string& requested) {
    check_precision_option(requested);
    if (requested != "auto") {
        const std::string graph = trt_graph_file(model_dir, modality, requested);
        if (!file_exists(graph))
            throw Error(graph + ": missing, so no " + requested + " engine can be built; export it with " + export_hint(requested) +
                        ", or use --precision auto");
        return {requested, "as requested"};
    }
    for (const char* p : kPrecisions)
        if (file_exists(trt_graph_file(model_dir, modality, p))) return {p, "auto: the fastest graph the export has"};
    throw Error(model_dir + ": no ONNX graph for " + modality + " (" + modality + ".onnx, " + modality + ".fp16.onnx or " + modality +
                ".int8.onnx); export the model with `python -m export.onnx`");
}

std::array<int, 3> profile_batches(int max_batch, int opt_batch) {
    if (max_batch < 1 || max_batch > 4096) throw Error("--max-batch " + std::to_string(max_batch) + " is invalid; it must be an integer in 1..4096");
    const int opt = opt_batch == 0 ? std::min(8, max_batch) : opt_batch;
    if (opt < 1 || opt > max_batch)
        throw Error("--opt-batch " + std::to_string(opt_batch) + " is invalid; it must be an integer in 1.." + std::to_string(max_batch) + " (--max-batch)");
    return {1, opt, max_batch};
}

std::string timing_cache_file(const std::string& engines_dir, const std::string& gpu_name, const std::string& compute_capability,
                              const std::string& trt_version) {
    // runtime.backends.engine._slug: lowercase, runs of anything but [a-z0-9] become one '-', trimmed.
    std::string slug;
    for (const char ch : gpu_name) {
        const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        const bool keep = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (keep) slug += c;
        else if (!slug.empty() && slug.back() != '-') slug += '-';
    }
    while (!slug.empty() && slug.back() == '-') slug.pop_back();
    std::string cc;
    for (const char c : compute_capability)
        if (c != '.') cc += c;
    return engines_dir + "/timing-" + (slug.empty() ? "gpu" : slug) + "-sm" + cc + "-trt" + trt_version + ".cache";
}

std::vector<int> fp32_layer_indices(const std::vector<LayerView>& layers) {
    static const std::set<std::string> seeds = {"REDUCE", "NORMALIZATION"};
    static const std::set<std::string> not_pinned = {"QUANTIZE", "DEQUANTIZE", "SHAPE", "CONSTANT", "CAST", "IDENTITY", "ASSERTION"};
    std::set<std::string> reduced, tainted;
    for (const LayerView& l : layers)
        if (l.kind == "REDUCE") reduced.insert(l.inputs.begin(), l.inputs.end());
    auto any_in = [](const std::vector<std::string>& names, const std::set<std::string>& set) {
        return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return set.count(n) > 0; });
    };
    std::vector<int> out;
    for (size_t i = 0; i < layers.size(); ++i) {  // network order is topological (the parser adds in ONNX order)
        const LayerView& l = layers[i];
        const bool squares = (l.kind == "ELEMENTWISE" || l.kind == "UNARY") && any_in(l.outputs, reduced);
        if (seeds.count(l.kind) || squares || any_in(l.inputs, tainted)) {
            tainted.insert(l.outputs.begin(), l.outputs.end());
            if (!not_pinned.count(l.kind) && l.float_outputs) out.push_back(static_cast<int>(i));
        }
    }
    return out;
}

std::string sidecar_text(const nlohmann::json& key, const std::string& engine_sha256, const std::string& built_at,
                         const nlohmann::json& build, const nlohmann::json& spec) {
    // nlohmann::json keeps object keys sorted (std::map), as sort_keys=True does; ensure_ascii as Python's default.
    const nlohmann::json payload = {{"format_version", kEngineFormatVersion}, {"key", key}, {"engine_sha256", engine_sha256},
                                    {"built_at", built_at}, {"build", build}, {"spec", spec}};
    return payload.dump(2, ' ', true) + "\n";
}

}  // namespace irreid
