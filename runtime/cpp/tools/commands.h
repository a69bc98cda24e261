// irreid-edge-native subcommands; each returns the process exit code (0 ok, 2 user error).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "irreid/encoder.h"

namespace irreid::cli {

int run_match(const std::vector<std::string>& argv);
int run_embed(const std::vector<std::string>& argv);
int run_bench(const std::vector<std::string>& argv);
int run_preprocess(const std::vector<std::string>& argv);
int run_build(const std::vector<std::string>& argv);

// Image files directly in a folder or given one by one, sorted, with runtime.preprocess.IMAGE_SUFFIXES.
std::vector<std::string> list_images(const std::vector<std::string>& paths_or_dirs);

// --precision's help line, shared by every command that runs a network.
extern const char* const kPrecisionHelp;

// The encoder for --precision (auto|fp32|fp16|int8, irreid::choose_run_precision) with the choice
// printed on stderr ("ir encoder: int8 engine (auto: ...)"); throws Error without TensorRT.
std::unique_ptr<Encoder> open_encoder(const std::string& model_dir, const std::string& modality, const std::string& precision);

}  // namespace irreid::cli
