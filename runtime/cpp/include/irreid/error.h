// One exception type for everything a user can fix; what() is one line naming the file and the fix.
#pragma once

#include <stdexcept>
#include <string>

namespace irreid {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// An image cannot be used (missing, truncated, unsupported, too large). Callers skip it and go on.
class ImageDecodeError : public Error {
public:
    explicit ImageDecodeError(const std::string& message) : Error(message) {}
};

}  // namespace irreid
