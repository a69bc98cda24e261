// SHA-256 of files and buffers, by OpenSSL's libcrypto (EVP digest API); lowercase hex, as Python's
// hashlib.sha256(...).hexdigest() prints it (the tests hold both to the FIPS 180-2 vectors).
#pragma once

#include <cstddef>
#include <string>

namespace irreid {

std::string sha256_hex(const void* data, size_t size);
std::string file_sha256_hex(const std::string& path);

}  // namespace irreid
