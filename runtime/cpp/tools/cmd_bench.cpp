// `irreid-edge-native bench`: per-stage latency of what this build can run.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "irreid/cuda_preprocess.h"
#include "irreid/encoder.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/index.h"
#include "irreid/npy.h"
#include "irreid/preprocess.h"
#include "irreid/rank.h"
#include "irreid/resample.h"

namespace irreid::cli {
namespace {

struct Row {
    std::string stage;
    std::vector<double> ms;
};

// Median and 90th percentile of fn's wall time over runs calls (after one warm-up call).
Row time_stage(const std::string& stage, int runs, const std::function<void()>& fn) {
    fn();
    Row row{stage, {}};
    for (int i = 0; i < runs; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        fn();
        row.ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(row.ms.begin(), row.ms.end());
    return row;
}

void print_rows(const std::vector<Row>& rows) {
    std::printf("%-44s %10s %10s %6s\n", "stage", "median ms", "p90 ms", "runs");
    for (const Row& r : rows) {
        const double med = r.ms[r.ms.size() / 2], p90 = r.ms[std::min(r.ms.size() - 1, r.ms.size() * 9 / 10)];
        std::printf("%-44s %10.3f %10.3f %6zu\n", r.stage.c_str(), med, p90, r.ms.size());
    }
}

void bench_images(const std::vector<std::string>& images, int height, int width, int runs, std::vector<Row>& rows) {
    std::vector<ImageRGB8> decoded;
    for (const auto& p : images) decoded.push_back(decode_image(p));
    if (decoded.empty()) throw Error("no readable images to benchmark");
    const std::string shape = std::to_string(height) + "x" + std::to_string(width);
    rows.push_back(time_stage("decode (per image)", runs, [&] {
        for (const auto& p : images) decode_image(p);
    }));
    for (auto& x : rows.back().ms) x /= images.size();
    rows.push_back(time_stage("resize+layout CPU to " + shape + " (per image)", runs, [&] {
        for (const auto& im : decoded) preprocess_image(im, height, width);
    }));
    for (auto& x : rows.back().ms) x /= decoded.size();
    if (cuda_device_available()) {
        CudaPreprocessor gpu(height, width, false);
        rows.push_back(time_stage("resize+layout CUDA to " + shape + " (per image)", runs, [&] {
            for (const auto& im : decoded) gpu.run_to_host(im);
        }));
        for (auto& x : rows.back().ms) x /= decoded.size();
    }
}

void bench_index(const std::string& index_path, int top_k, int runs, std::vector<Row>& rows) {
    rows.push_back(time_stage("index read + full data check", runs, [&] { read_index(index_path, true); }));
    const GalleryIndex idx = read_index(index_path, true);
    rows.push_back(time_stage("row norms of " + std::to_string(idx.count) + " float16 rows", runs,
                              [&] { GalleryMatrix(idx.rows, idx.dim); }));
    const GalleryMatrix g(idx.rows, idx.dim);
    std::vector<float> probe(static_cast<size_t>(idx.dim));
    for (size_t i = 0; i < probe.size(); ++i) probe[i] = static_cast<float>((i * 2654435761u) % 1000) - 500.0f;
    rows.push_back(time_stage("top-" + std::to_string(top_k) + " for one probe", runs, [&] { g.top_k(probe.data(), top_k); }));
}

}  // namespace

int run_bench(const std::vector<std::string>& argv) {
    const Args args("bench",
                    {{"--images", false, true, "images (files or folders) for the decode / preprocess stages"},
                     {"--index", false, false, "gallery index for the ranking stages"},
                     {"--model", false, false, "exported model folder: input size from its spec, TensorRT where built"},
                     {"--height", false, false, "input height without --model (default 288)"},
                     {"--width", false, false, "input width without --model (default 144)"},
                     {"--modality", false, false, "which encoder TensorRT runs: ir (default) or rgb"},
                     {"--precision", false, false, kPrecisionHelp},
                     {"--batch", false, false, "comma-separated batch sizes for TensorRT (default 1,8,32)"},
                     {"--top-k", false, false, "top-k for the ranking stage (default 10)"},
                     {"--runs", false, false, "timed runs per stage (default 20)"}},
                    argv);
    if (args.help()) return std::fputs(args.usage().c_str(), stdout), 0;
    const int runs = std::max(1, args.get_int("--runs", 20));
    const std::string modality = args.get("--modality", "ir"), precision = args.get("--precision", "auto");
    check_precision_option(precision);
    if (modality != "ir" && modality != "rgb") throw Error("--modality '" + modality + "' is invalid; valid values: ir, rgb");
    int height = args.get_int("--height", 288), width = args.get_int("--width", 144);
    if (args.has("--model")) {
        const auto specs = read_model_dir_specs(args.get("--model"));
        const auto it = specs.find(modality);
        if (it == specs.end()) throw Error(args.get("--model") + "/spec.json: has no '" + modality + "' encoder; pass --modality");
        height = it->second.input_height, width = it->second.input_width;
    }
    std::vector<Row> rows;
    if (args.has("--images")) bench_images(list_images(args.all("--images")), height, width, runs, rows);
    if (args.has("--index")) bench_index(args.get("--index"), args.get_int("--top-k", 10), runs, rows);
    if (args.has("--model") && have_tensorrt()) {
        auto encoder = open_encoder(args.get("--model"), modality, precision);
        std::printf("backend %s  model %s/%s/%s\n", encoder->backend().c_str(), encoder->spec().name.c_str(), modality.c_str(),
                    encoder->spec().precision.c_str());
        std::string list = args.get("--batch", "1,8,32");
        for (size_t pos = 0; pos < list.size();) {
            const size_t end = std::min(list.find(',', pos), list.size());
            const int n = std::stoi(list.substr(pos, end - pos));
            pos = end + 1;
            const std::vector<float> batch(static_cast<size_t>(n) * 3 * height * width, 127.0f);
            rows.push_back(time_stage("TensorRT " + encoder->backend() + " batch " + std::to_string(n), runs, [&] { encoder->embed(batch, n); }));
        }
    } else if (args.has("--model")) {
        std::fprintf(stderr, "note: built without TensorRT; the network stage is not measured\n");
    }
    if (rows.empty()) throw Error("nothing to measure: give --images and/or --index (and --model where TensorRT is built)");
    if (!cuda_device_available()) std::fprintf(stderr, "note: no CUDA preprocessing (not built, or no GPU); CPU stages only\n");
    print_rows(rows);
    return 0;
}

}  // namespace irreid::cli
