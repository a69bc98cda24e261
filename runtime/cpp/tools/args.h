// A small argparse-like option reader for irreid-edge-native's subcommands:
// "--name value [value...]" or "--flag"; unknown options are refused listing the valid ones.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "irreid/error.h"

namespace irreid::cli {

struct OptionSpec {
    std::string name;   // "--top-k"
    bool flag = false;  // takes no value
    bool many = false;  // takes one or more values
    std::string help;
};

class Args {
public:
    Args(const std::string& command, std::vector<OptionSpec> specs, const std::vector<std::string>& argv);

    bool has(const std::string& name) const { return values_.count(name) > 0; }
    std::string get(const std::string& name, const std::string& fallback = "") const;
    const std::vector<std::string>& all(const std::string& name) const;
    int get_int(const std::string& name, int fallback) const;
    bool help() const { return help_; }
    std::string usage() const;

private:
    std::string command_;
    std::vector<OptionSpec> specs_;
    std::map<std::string, std::vector<std::string>> values_;
    bool help_ = false;
};

}  // namespace irreid::cli
