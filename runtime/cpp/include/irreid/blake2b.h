// BLAKE2b (RFC 7693), unkeyed, for the index's path_hash section: the same bytes as Python's
// hashlib.blake2b(data, digest_size=n).digest(). Small and dependency-free (OpenSSL 1.1 offers only
// the 64-byte BLAKE2b-512, and a shorter digest is not a prefix of it: the length is a parameter).
#pragma once

#include <cstddef>
#include <cstdint>

namespace irreid {

// out receives outlen bytes (1..64).
void blake2b(const void* data, size_t size, uint8_t* out, size_t outlen);

// blake2b(data, digest_size=8) read as a little-endian uint64: the index's path_hash value.
uint64_t blake2b_64(const void* data, size_t size);

}  // namespace irreid
