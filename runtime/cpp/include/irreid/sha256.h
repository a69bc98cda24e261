// SHA-256 of files and buffers: OpenSSL's libcrypto when the build found it (IRREID_HAVE_OPENSSL),
// else a small portable implementation. Both are checked against the FIPS 180-2 vectors in ctest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace irreid {

std::string sha256_hex(const void* data, size_t size);
std::string file_sha256_hex(const std::string& path);
// The portable implementation, exposed so the tests can hold it against OpenSSL where both exist.
std::string sha256_hex_portable(const void* data, size_t size);
bool sha256_uses_openssl();

}  // namespace irreid
