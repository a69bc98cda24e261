#include "args.h"

namespace irreid::cli {

Args::Args(const std::string& command, std::vector<OptionSpec> specs, const std::vector<std::string>& argv)
    : command_(command), specs_(std::move(specs)) {
    for (size_t i = 0; i < argv.size();) {
        const std::string& a = argv[i];
        if (a == "-h" || a == "--help") {
            help_ = true;
            return;
        }
        const OptionSpec* spec = nullptr;
        for (const auto& s : specs_) spec = s.name == a ? &s : spec;
        if (spec == nullptr) {
            std::string valid;
            for (const auto& s : specs_) valid += (valid.empty() ? "" : ", ") + s.name;
            throw Error("unknown argument '" + a + "'; valid options: " + valid);
        }
        auto& slot = values_[spec->name];
        ++i;
        if (spec->flag) continue;
        const size_t start = i;
        while (i < argv.size() && (argv[i].rfind("--", 0) != 0) && (spec->many || i == start)) slot.push_back(argv[i++]);
        if (slot.empty()) throw Error(spec->name + " needs a value");
    }
}

std::string Args::get(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    return it == values_.end() || it->second.empty() ? fallback : it->second.back();
}

const std::vector<std::string>& Args::all(const std::string& name) const {
    static const std::vector<std::string> empty;
    auto it = values_.find(name);
    return it == values_.end() ? empty : it->second;
}

int Args::get_int(const std::string& name, int fallback) const {
    if (!has(name)) return fallback;
    const std::string v = get(name);
    try {
        size_t used = 0;
        const int x = std::stoi(v, &used);
        if (used == v.size()) return x;
    } catch (const std::exception&) {
    }
    throw Error(name + " takes an integer, got '" + v + "'");
}

std::string Args::usage() const {
    std::string out = "usage: irreid-edge-native " + command_ + " [options]\n\noptions:\n";
    for (const auto& s : specs_) {
        std::string left = "  " + s.name + (s.flag ? "" : (s.many ? " VALUE [VALUE ...]" : " VALUE"));
        if (left.size() < 34) left.append(34 - left.size(), ' ');
        out += left + " " + s.help + "\n";
    }
    return out;
}

}  // namespace irreid::cli
