// Built when TensorRT is absent: the native runtime still decodes, preprocesses and ranks.
#include "irreid/encoder.h"
#include "irreid/error.h"

namespace irreid {

bool have_tensorrt() { return false; }

std::optional<DeviceFacts> device_facts() { return std::nullopt; }

std::unique_ptr<Encoder> make_encoder(const std::string&, const std::string&, const std::string&) {
    throw Error("this irreid-edge-native was built without TensorRT, so it cannot run a network; rebuild with TensorRT "
                "(-DIRREID_WITH_TENSORRT=ON, -DTensorRT_ROOT=... for a tar install) or pass precomputed embeddings (--probe-embedding FILE.npy)");
}

}  // namespace irreid
