// SHA-256 through OpenSSL's EVP digest interface (EVP_MD_CTX_new / EVP_DigestInit_ex / Update / Final_ex,
// OpenSSL >= 1.1: https://docs.openssl.org/3.0/man3/EVP_DigestInit/), which JetPack 5 (Ubuntu 20.04,
// OpenSSL 1.1.1) and Debian 12 (OpenSSL 3.0) both ship. Issue 19 item 12 replaced the hand-written one.
#include "irreid/sha256.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <vector>

#include <openssl/evp.h>

#include "irreid/error.h"

namespace irreid {
namespace {

struct EvpCtxDeleter {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

class Hasher {
public:
    Hasher() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1) throw Error("OpenSSL: cannot start a SHA-256 digest");
    }
    void update(const void* p, size_t n) {
        if (n > 0 && EVP_DigestUpdate(ctx_.get(), p, n) != 1) throw Error("OpenSSL: SHA-256 update failed");
    }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        if (EVP_DigestFinal_ex(ctx_.get(), md, &len) != 1 || len != 32) throw Error("OpenSSL: SHA-256 final failed");
        char out[65];
        for (unsigned int i = 0; i < len; ++i) std::snprintf(out + 2 * i, 3, "%02x", md[i]);
        return std::string(out, 64);
    }

private:
    std::unique_ptr<EVP_MD_CTX, EvpCtxDeleter> ctx_;
};

}  // namespace

std::string sha256_hex(const void* data, size_t size) {
    Hasher h;
    h.update(data, size);
    return h.hex();
}

std::string file_sha256_hex(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error(path + ": cannot open for hashing; check the path and permissions");
    Hasher h;
    std::vector<char> buf(1 << 20);
    while (f) {
        f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
        h.update(buf.data(), static_cast<size_t>(f.gcount()));
    }
    if (f.bad()) throw Error(path + ": read error while hashing");
    return h.hex();
}

}  // namespace irreid
