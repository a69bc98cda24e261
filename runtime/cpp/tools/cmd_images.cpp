// `embed` and `preprocess`, and the image listing they share with `match`.
#include <algorithm>
#include <optional>
#include <cstdio>
#include <dirent.h>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "args.h"
#include "commands.h"
#include "irreid/encoder.h"
#include "irreid/engine.h"
#include "irreid/error.h"
#include "irreid/npy.h"
#include "irreid/preprocess.h"

namespace irreid::cli {
namespace {

// runtime.preprocess.IMAGE_SUFFIXES; the native decoders read JPEG and PNG and report the rest.
const char* const kImageSuffixes[] = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"};

bool is_image_path(const std::string& path) {
    const auto dot = path.rfind('.');
    if (dot == std::string::npos) return false;
    std::string suffix = path.substr(dot);
    std::transform(suffix.begin(), suffix.end(), suffix.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return std::any_of(std::begin(kImageSuffixes), std::end(kImageSuffixes), [&](const char* s) { return suffix == s; });
}

bool is_dir(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

const char* const kPrecisionHelp =
    "auto (default: the fastest engine built for this device, int8 > fp16 > fp32), fp32, fp16 or int8";

std::unique_ptr<Encoder> open_encoder(const std::string& model_dir, const std::string& modality, const std::string& precision) {
    check_precision_option(precision);
    const std::optional<DeviceFacts> here = device_facts();
    if (!here) {
        // No TensorRT in this build: an explicit precision is still checked against the folder first.
        if (precision != "auto") choose_run_precision(model_dir, modality, precision, DeviceFacts{});
        return make_encoder(model_dir, modality, precision);  // throws: built without TensorRT
    }
    const PrecisionChoice choice = choose_run_precision(model_dir, modality, precision, *here);
    std::fprintf(stderr, "irreid-edge-native: %s encoder: %s engine (%s)\n", modality.c_str(), choice.precision.c_str(), choice.reason.c_str());
    return make_encoder(model_dir, modality, choice.precision);
}

std::vector<std::string> list_images(const std::vector<std::string>& paths_or_dirs) {
    std::vector<std::string> out;
    for (const std::string& p : paths_or_dirs) {
        if (!is_dir(p)) {
            out.push_back(p);  // a missing file is reported by the decoder, per file
            continue;
        }
        std::vector<std::string> found;
        if (DIR* d = ::opendir(p.c_str())) {
            while (const dirent* e = ::readdir(d)) {
                const std::string name = e->d_name;
                if (name.empty() || name[0] == '.' || !is_image_path(name)) continue;
                found.push_back(p.back() == '/' ? p + name : p + "/" + name);
            }
            ::closedir(d);
        } else {
            throw Error(p + ": cannot list the folder; check permissions");
        }
        std::sort(found.begin(), found.end());
        out.insert(out.end(), found.begin(), found.end());
    }
    return out;
}

int run_embed(const std::vector<std::string>& argv) {
    const Args args("embed",
                    {{"--images", false, true, "folder of images (or image files)"},
                     {"--out", false, false, "output .npy path (a JSON list of paths goes beside it)"},
                     {"--model", false, false, "exported model folder with its engines"},
                     {"--modality", false, false, "encoder to use: rgb (default) or ir"},
                     {"--precision", false, false, kPrecisionHelp}},
                    argv);
    if (args.help()) return std::fputs(args.usage().c_str(), stdout), 0;
    if (!args.has("--images") || !args.has("--out") || !args.has("--model")) throw Error("embed needs --images, --out and --model");
    auto encoder = open_encoder(args.get("--model"), args.get("--modality", "rgb"), args.get("--precision", "auto"));
    const ModelSpec& spec = encoder->spec();
    Matrix emb;
    emb.cols = spec.embedding_dim;
    nlohmann::ordered_json paths = nlohmann::ordered_json::array(), skipped = nlohmann::ordered_json::array();
    for (const std::string& path : list_images(args.all("--images"))) {
        try {
            const std::vector<float> e = encoder->embed(preprocess_path(path, spec), 1);
            emb.data.insert(emb.data.end(), e.begin(), e.end());
            ++emb.rows;
            paths.push_back(path);
        } catch (const ImageDecodeError& e) {
            skipped.push_back({{"path", path}, {"reason", e.what()}});
            std::fprintf(stderr, "skipped %s\n", e.what());
        }
    }
    const std::string out = args.get("--out");
    write_npy(out, emb);
    atomic_write(out + ".json", nlohmann::ordered_json({{"backend", encoder->backend()}, {"precision", encoder->spec().precision},
                                                      {"paths", paths}, {"skipped", skipped}})
                                   .dump(2) + "\n");
    std::printf("wrote %lld x %lld embeddings to %s (backend %s)\n", static_cast<long long>(emb.rows), static_cast<long long>(emb.cols),
                out.c_str(), encoder->backend().c_str());
    return 0;
}

int run_preprocess(const std::vector<std::string>& argv) {
    const Args args("preprocess",
                    {{"--images", false, true, "image files or folders"},
                     {"--out", false, false, "output .npy, (N, 3, H, W) float32 raw 0-255"},
                     {"--model", false, false, "exported model folder (takes H, W and channel order from its spec)"},
                     {"--modality", false, false, "which encoder's spec: ir (default) or rgb"},
                     {"--height", false, false, "input height (instead of --model)"},
                     {"--width", false, false, "input width (instead of --model)"},
                     {"--channel-order", false, false, "RGB (default) or BGR (instead of --model)"}},
                    argv);
    if (args.help()) return std::fputs(args.usage().c_str(), stdout), 0;
    if (!args.has("--images") || !args.has("--out")) throw Error("preprocess needs --images and --out");
    int height = args.get_int("--height", 0), width = args.get_int("--width", 0);
    std::string order = args.get("--channel-order", "RGB");
    if (args.has("--model")) {
        const auto specs = read_model_dir_specs(args.get("--model"));
        const auto it = specs.find(args.get("--modality", "ir"));
        if (it == specs.end()) throw Error(args.get("--model") + ": no encoder for modality " + args.get("--modality", "ir"));
        height = it->second.input_height, width = it->second.input_width, order = it->second.channel_order;
    }
    if (height <= 0 || width <= 0) throw Error("give --model DIR, or --height and --width");
    std::vector<float> batch;
    int64_t n = 0;
    int failures = 0;
    for (const std::string& path : list_images(args.all("--images"))) {
        try {
            const std::vector<float> x = preprocess_image(decode_image(path), height, width, order);
            batch.insert(batch.end(), x.begin(), x.end());
            ++n;
        } catch (const ImageDecodeError& e) {
            std::fprintf(stderr, "skipped %s\n", e.what());
            ++failures;
        }
    }
    write_npy(args.get("--out"), batch, {n, 3, height, width});
    std::printf("wrote %lld x 3 x %d x %d to %s\n", static_cast<long long>(n), height, width, args.get("--out").c_str());
    return failures ? 1 : 0;
}

}  // namespace irreid::cli
