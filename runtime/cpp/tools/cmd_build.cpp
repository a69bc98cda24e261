// `irreid-edge-native build`: TensorRT engines for an exported model folder, on the device that will
// run them, with the same files and sidecar as `irreid-edge build` (runtime/commands/build.py).
#include <cstdio>
#include <string>
#include <vector>

#include "args.h"
#include "commands.h"
#include "irreid/build.h"
#include "irreid/encoder.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/spec.h"

namespace irreid::cli {
namespace {

std::vector<std::string> split_modalities(const std::string& text) {
    std::vector<std::string> out;
    for (size_t pos = 0; pos <= text.size();) {
        const size_t end = std::min(text.find(',', pos), text.size());
        const std::string m = text.substr(pos, end - pos);
        if (m != "rgb" && m != "ir") throw Error("--modality '" + text + "' is invalid; valid values: rgb, ir (comma-separated)");
        out.push_back(m);
        pos = end + 1;
    }
    return out;
}

}  // namespace

int run_build(const std::vector<std::string>& argv) {
    const Args args("build",
                    {{"--model", false, false, "exported model folder (spec.json and the ONNX graphs)"},
                     {"--precision", false, false, "auto (default: the fastest graph exported, int8 > fp16 > fp32), fp32, fp16 or int8"},
                     {"--modality", false, false, "comma-separated encoders to build (default rgb,ir)"},
                     {"--max-batch", false, false, "largest batch of the profile (default 32)"},
                     {"--opt-batch", false, false, "batch the kernels are tuned for (default min(8, max))"},
                     {"--workspace", false, false, "builder workspace in MB (default 1024)"},
                     {"--timing-cache", false, false, "timing cache file, reused and updated (default: engines/timing-<gpu>-<trt>.cache)"},
                     {"--verbose", true, false, "TensorRT's verbose builder log"}},
                    argv);
    if (args.help()) return std::fputs(args.usage().c_str(), stdout), 0;
    if (!args.has("--model")) throw Error("build needs --model DIR (an exported model folder)");
    BuildOptions o;
    o.model_dir = args.get("--model");
    o.max_batch = args.get_int("--max-batch", 32);
    o.opt_batch = args.get_int("--opt-batch", 0);
    o.workspace_mb = args.get_int("--workspace", 1024);
    o.timing_cache = args.get("--timing-cache");
    o.verbose = args.has("--verbose");
    const std::string precision = args.get("--precision", "auto");
    check_precision_option(precision);
    profile_batches(o.max_batch, o.opt_batch);  // refuse bad values before anything slow
    if (o.workspace_mb <= 0) throw Error("--workspace " + std::to_string(o.workspace_mb) + " is invalid; it must be a positive number of MB");
    const auto modalities = split_modalities(args.get("--modality", "rgb,ir"));
    const auto specs = read_model_dir_specs(o.model_dir);
    for (const std::string& m : modalities)
        if (specs.find(m) == specs.end()) throw Error(o.model_dir + "/spec.json: has no '" + m + "' encoder; pass --modality with the ones it has");
    std::vector<PrecisionChoice> choices;  // all refusals (a missing int8 graph...) before anything slow
    for (const std::string& m : modalities) choices.push_back(choose_build_precision(o.model_dir, m, precision));
    if (!have_tensorrt()) build_engine(o);  // throws, saying how to get TensorRT
    for (size_t i = 0; i < modalities.size(); ++i) {
        std::fprintf(stderr, "irreid-edge-native: %s encoder: building %s (%s)\n", modalities[i].c_str(), choices[i].precision.c_str(),
                     choices[i].reason.c_str());
        o.modality = modalities[i];
        o.precision = choices[i].precision;
        std::printf("%s\n", build_engine(o).c_str());
    }
    return 0;
}

}  // namespace irreid::cli
