// irreid-edge-native subcommands; each returns the process exit code (0 ok, 2 user error).
#pragma once

#include <string>
#include <vector>

namespace irreid::cli {

int run_match(const std::vector<std::string>& argv);
int run_embed(const std::vector<std::string>& argv);
int run_bench(const std::vector<std::string>& argv);
int run_preprocess(const std::vector<std::string>& argv);

// Image files directly in a folder or given one by one, sorted, with runtime.preprocess.IMAGE_SUFFIXES.
std::vector<std::string> list_images(const std::vector<std::string>& paths_or_dirs);

}  // namespace irreid::cli
