// Built when TensorRT is absent: `build` says what is missing.
#include "irreid/build.h"
#include "irreid/error.h"

namespace irreid {

std::string build_engine(const BuildOptions&) {
    throw Error("this irreid-edge-native was built without TensorRT, so it cannot build engines; on the device, install "
                "TensorRT (JetPack: `sudo apt install nvidia-jetpack`) and rebuild with -DIRREID_WITH_TENSORRT=ON");
}

}  // namespace irreid
