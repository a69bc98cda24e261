#include "irreid/npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <regex>
#include <unistd.h>

#include "irreid/error.h"
#include "irreid/half.h"

namespace irreid {
namespace {

std::string header_value(const std::string& header, const std::string& key, const std::string& path) {
    const std::regex re("'" + key + "'\\s*:\\s*('[^']*'|True|False|\\([^)]*\\))");
    std::smatch m;
    if (!std::regex_search(header, m, re)) throw Error(path + ": .npy header has no '" + key + "'; write it with numpy.save");
    return m[1].str();
}

std::vector<int64_t> parse_shape(const std::string& tuple) {
    std::vector<int64_t> dims;
    const std::regex num("\\d+");
    for (auto it = std::sregex_iterator(tuple.begin(), tuple.end(), num); it != std::sregex_iterator(); ++it)
        dims.push_back(std::stoll(it->str()));
    return dims;
}

}  // namespace

Matrix read_npy(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open; check the path");
    char magic[8];
    f.read(magic, 8);
    if (!f || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw Error(path + ": not a .npy file; save the embedding with numpy.save");
    uint32_t hlen = 0;
    if (magic[6] == 1) {
        uint8_t b[2];
        f.read(reinterpret_cast<char*>(b), 2);
        hlen = b[0] | (b[1] << 8);
    } else {
        uint8_t b[4];
        f.read(reinterpret_cast<char*>(b), 4);
        hlen = b[0] | (b[1] << 8) | (b[2] << 16) | (uint32_t(b[3]) << 24);
    }
    std::string header(hlen, '\0');
    f.read(header.data(), hlen);
    const std::string descr = header_value(header, "descr", path);
    if (header_value(header, "fortran_order", path) != "False") throw Error(path + ": Fortran-ordered .npy; save a C-ordered array");
    const std::vector<int64_t> shape = parse_shape(header_value(header, "shape", path));
    if (shape.empty() || shape.size() > 2) throw Error(path + ": expected a 1-D (D,) or 2-D (N, D) embedding array");
    Matrix m;
    m.rows = shape.size() == 1 ? 1 : shape[0];
    m.cols = shape.back();
    const size_t n = static_cast<size_t>(m.rows * m.cols);
    m.data.resize(n);
    auto read_all = [&](void* dst, size_t bytes) {
        f.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes));
        if (static_cast<size_t>(f.gcount()) != bytes) throw Error(path + ": truncated .npy data; re-save it");
    };
    if (descr == "'<f4'") {
        read_all(m.data.data(), n * 4);
    } else if (descr == "'<f2'") {
        std::vector<uint16_t> h(n);
        read_all(h.data(), n * 2);
        for (size_t i = 0; i < n; ++i) m.data[i] = half_to_float(h[i]);
    } else if (descr == "'<f8'") {
        std::vector<double> d(n);
        read_all(d.data(), n * 8);
        for (size_t i = 0; i < n; ++i) m.data[i] = static_cast<float>(d[i]);
    } else {
        throw Error(path + ": dtype " + descr + " is not supported; save float32 (numpy.float32)");
    }
    return m;
}

void atomic_write(const std::string& path, const std::string& bytes) {
    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        if (!f) throw Error(path + ": cannot write (check the folder exists and is writable)");
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        f.flush();
        if (!f) {
            std::remove(tmp.c_str());
            throw Error(path + ": write failed (disk full?); nothing was replaced");
        }
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(path + ": cannot replace the file; check permissions");
    }
}

void write_npy(const std::string& path, const std::vector<float>& data, const std::vector<int64_t>& shape) {
    std::string dims;
    int64_t n = 1;
    for (int64_t d : shape) dims += std::to_string(d) + ", ", n *= d;
    if (n != static_cast<int64_t>(data.size())) throw Error(path + ": write_npy: data size does not match the shape");
    if (!shape.empty()) dims.resize(dims.size() - (shape.size() > 1 ? 2 : 1));  // "(3, 4)" but "(3,)"
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    const size_t unpadded = 10 + header.size() + 1;  // magic(6) + version(2) + len(2) + header + '\n'
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    std::string out("\x93NUMPY\x01\x00", 8);
    out += static_cast<char>(header.size() & 0xFF);
    out += static_cast<char>(header.size() >> 8);
    out += header;
    out.append(reinterpret_cast<const char*>(data.data()), data.size() * sizeof(float));
    atomic_write(path, out);
}

void write_npy(const std::string& path, const Matrix& m) { write_npy(path, m.data, {m.rows, m.cols}); }

}  // namespace irreid
