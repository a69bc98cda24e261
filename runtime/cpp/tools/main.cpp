// irreid-edge-native: the C++ twin of the `irreid-edge` command for devices and C++ pipelines.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "irreid/encoder.h"
#include "irreid/error.h"
#include "irreid/version.h"

namespace {

constexpr const char* kUsage =
    "usage: irreid-edge-native COMMAND [options]\n\n"
    "Cross-modal (infrared <-> colour) person re-identification, native runtime.\n\n"
    "commands:\n"
    "  match       rank gallery crops for probe crops or precomputed probe embeddings\n"
    "  embed       embed a folder of images to a .npy matrix plus a JSON list of paths (needs TensorRT)\n"
    "  bench       latency per stage: decode, preprocess, rank (and TensorRT / CUDA where built)\n"
    "  preprocess  write the network input (N, 3, H, W) float32 for images, as the runtime feeds it\n"
    "  build       build TensorRT engines for an exported model on this device (needs TensorRT)\n\n"
    "Run `irreid-edge-native COMMAND --help` for a command's options.\n";

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::strcmp(argv[1], "-h") == 0 || std::strcmp(argv[1], "--help") == 0) {
        std::fputs(kUsage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    if (command == "--version") {
        std::printf("irreid-edge-native %s (TensorRT: %s, CUDA preprocessing: %s)\n", IRREID_VERSION,
                    irreid::have_tensorrt() ? "yes" : "no", IRREID_HAVE_CUDA ? "yes" : "no");
        return 0;
    }
    const std::vector<std::string> rest(argv + 2, argv + argc);
    try {
        if (command == "match") return irreid::cli::run_match(rest);
        if (command == "embed") return irreid::cli::run_embed(rest);
        if (command == "bench") return irreid::cli::run_bench(rest);
        if (command == "preprocess") return irreid::cli::run_preprocess(rest);
        if (command == "build") return irreid::cli::run_build(rest);
        std::fprintf(stderr, "irreid-edge-native: unknown command '%s'; valid commands: match, embed, bench, preprocess, build\n", command.c_str());
        return 2;
    } catch (const irreid::Error& e) {
        std::fprintf(stderr, "irreid-edge-native %s: error: %s\n", command.c_str(), e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "irreid-edge-native %s: internal error: %s\n", command.c_str(), e.what());
        return 1;
    }
}
