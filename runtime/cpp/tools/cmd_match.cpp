// `irreid-edge-native match`: the same options and JSON as `irreid-edge match`, plus
// --probe-embedding so ranking runs natively where no network can (a build without TensorRT).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "irreid/encoder.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/index.h"
#include "irreid/npy.h"
#include "irreid/preprocess.h"
#include "irreid/rank.h"
#include "irreid/sha256.h"
#include "irreid/spec.h"

namespace irreid::cli {
namespace {

struct Probe {
    std::string name;
    std::vector<float> embedding;
};

struct ProbeSet {
    std::string backend;
    std::string precision;  // of the probe encoder; "precomputed" for --probe-embedding
    std::vector<Probe> probes;
    nlohmann::ordered_json skipped = nlohmann::ordered_json::array();
};

ProbeSet probes_from_npy(const std::string& path, int64_t dim) {
    const Matrix m = read_npy(path);
    if (m.cols != dim)
        throw Error(path + ": probe embeddings have " + std::to_string(m.cols) + " values per row but the index has " +
                    std::to_string(dim) + "; embed the probes with the index's model");
    ProbeSet set{"precomputed", "precomputed", {}, nlohmann::ordered_json::array()};
    for (int64_t r = 0; r < m.rows; ++r) {
        const std::string name = m.rows == 1 ? path : path + "[" + std::to_string(r) + "]";
        set.probes.push_back({name, std::vector<float>(m.data.begin() + r * dim, m.data.begin() + (r + 1) * dim)});
    }
    return set;
}

ProbeSet probes_from_images(const std::vector<std::string>& inputs, const std::string& model_dir, const std::string& modality,
                            const std::string& precision) {
    if (model_dir.empty()) throw Error("--probe images need --model DIR (the exported model folder with its engines)");
    auto encoder = open_encoder(model_dir, modality, precision);
    ProbeSet set{encoder->backend(), encoder->spec().precision, {}, nlohmann::ordered_json::array()};
    const ModelSpec& spec = encoder->spec();
    for (const std::string& path : list_images(inputs)) {
        try {
            const std::vector<float> x = preprocess_path(path, spec);
            set.probes.push_back({path, encoder->embed(x, 1)});
        } catch (const ImageDecodeError& e) {
            set.skipped.push_back({{"path", path}, {"reason", e.what()}});
        }
    }
    return set;
}

// What runtime.encoder.open_encoder records in an index: spec.json's spec for the modality with the
// precision used and the sha256 of the ONNX file actually loaded (the ONNX Runtime CPU graph or the
// TensorRT graph; both names of runtime.model_dir.model_file are tried).
void check_model(const std::string& model_dir, const GalleryIndex& idx, const std::string& index_path) {
    const auto specs = read_model_dir_specs(model_dir);
    const auto it = specs.find(idx.spec.modality);
    if (it == specs.end()) throw Error(model_dir + ": has no " + idx.spec.modality + " encoder, which the index was built with");
    const std::string& p = idx.spec.precision;
    const std::string stem = model_dir + "/" + idx.spec.modality;
    std::vector<std::string> files = {p == "fp32" ? stem + ".onnx" : p == "fp16" ? stem + ".fp16.onnx" : stem + ".int8-cpu.onnx"};
    if (p == "int8") files.push_back(stem + ".int8.onnx");
    for (const std::string& file : files) {
        if (!std::ifstream(file)) continue;
        ModelSpec spec = it->second;
        spec.precision = p;
        spec.onnx_sha256 = file_sha256_hex(file);
        if (spec.fingerprint() == idx.spec_fingerprint) return;
    }
    throw Error(index_path + ": built with another model (spec fingerprint differs from " + model_dir +
                "); rebuild it with `irreid-edge index --gallery DIR --model " + model_dir + " --rebuild`");
}

// runtime/commands/match.py: distance rounded to 6 decimals, never negative (float rounding).
double report_distance(float d) { return std::round(std::max(static_cast<double>(d), 0.0) * 1e6) / 1e6; }

void print_table(const nlohmann::ordered_json& out) {
    for (const auto& p : out["probes"]) {
        std::printf("probe %s (%s) vs %s\n", p["probe"].get<std::string>().c_str(), p["modality"].get<std::string>().c_str(),
                    out["gallery"].get<std::string>().c_str());
        if (p["results"].empty()) {
            std::printf("  no gallery crop within the threshold\n");
            continue;
        }
        std::printf("  %4s  %8s  path\n", "rank", "distance");
        for (const auto& r : p["results"])
            std::printf("  %4d  %8.4f  %s\n", r["rank"].get<int>(), r["distance"].get<double>(), r["path"].get<std::string>().c_str());
    }
    for (const auto& s : out["skipped"]) std::fprintf(stderr, "skipped %s\n", s["reason"].get<std::string>().c_str());
}

}  // namespace

int run_match(const std::vector<std::string>& argv) {
    const Args args("match",
                    {{"--probe", false, true, "probe image(s) or a folder of probes (needs TensorRT)"},
                     {"--probe-embedding", false, false, "probe embedding(s) as .npy, (D,) or (N, D): ranks without a network"},
                     {"--gallery", false, false, "folder of gallery crops (its index: DIR/.irreid/index.irx)"},
                     {"--index", false, false, "gallery index file (default: the gallery's)"},
                     {"--model", false, false, "exported model folder; checked against the index's spec"},
                     {"--probe-modality", false, false, "ir (default) or rgb"},
                     {"--precision", false, false, kPrecisionHelp},
                     {"--top-k", false, false, "results per probe (default 10)"},
                     {"--threshold", false, false, "drop results whose distance (1 - cosine) is above D"},
                     {"--json", true, false, "print JSON instead of a table"},
                     {"--verify", true, false, "check every index section's sha256 (and the codes, norms, paths) before ranking"}},
                    argv);
    if (args.help()) return std::fputs(args.usage().c_str(), stdout), 0;
    const std::string gallery = args.get("--gallery");
    const std::string index_path = args.has("--index") ? args.get("--index") : (gallery.empty() ? "" : default_index_path(gallery));
    if (index_path.empty()) throw Error("give --gallery DIR (with an index) or --index FILE");
    if (args.has("--probe") == args.has("--probe-embedding")) throw Error("give exactly one of --probe IMAGE... or --probe-embedding FILE.npy");
    const std::string modality = args.get("--probe-modality", "ir");
    if (modality != "ir" && modality != "rgb") throw Error("--probe-modality '" + modality + "' is invalid; valid values: ir, rgb");
    const std::string precision = args.get("--precision", "auto");
    check_precision_option(precision);
    const int top_k = args.get_int("--top-k", 10);
    if (top_k <= 0) throw Error("--top-k must be a positive integer");

    const double threshold = args.has("--threshold") ? std::stod(args.get("--threshold")) : -1.0;
    const GalleryIndex idx = read_index(index_path, args.has("--verify"), gallery);
    const std::string model_dir = args.get("--model");
    if (!model_dir.empty()) check_model(model_dir, idx, index_path);
    const ProbeSet set = args.has("--probe-embedding") ? probes_from_npy(args.get("--probe-embedding"), idx.dim)
                                                       : probes_from_images(args.all("--probe"), model_dir, modality, precision);
    const GalleryMatrix gallery_rows(idx.rows, idx.dim);  // the live rows, in logical order
    // The shape of `irreid-edge match --json` (runtime/commands/match.py), less its index_stats:
    // the native command reads the index as it is and never refreshes it.
    nlohmann::ordered_json out = {{"model", model_dir.empty() ? idx.spec.name : model_dir}, {"backend", set.backend}, {"precision", set.precision},
                                  {"gallery", gallery}, {"index", index_path}, {"gallery_modality", idx.spec.modality},
                                  {"rerank", false}, {"top_k", top_k},
                                  {"threshold", threshold < 0 ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(threshold)},
                                  {"probes", nlohmann::ordered_json::array()}, {"skipped", set.skipped}};
    for (const Probe& p : set.probes) {
        nlohmann::ordered_json results = nlohmann::ordered_json::array();
        int rank = 1;
        for (const Match& m : gallery_rows.top_k(p.embedding.data(), top_k)) {
            const double d = report_distance(m.distance);
            if (threshold < 0 || m.distance <= threshold)
                results.push_back({{"rank", rank}, {"distance", d}, {"path", idx.entries[m.row].path}});
            ++rank;
        }
        out["probes"].push_back({{"probe", p.name}, {"modality", modality}, {"results", results}});
    }
    if (args.has("--json")) {
        std::printf("%s\n", out.dump(2).c_str());
    } else {
        print_table(out);
    }
    return 0;
}

}  // namespace irreid::cli
