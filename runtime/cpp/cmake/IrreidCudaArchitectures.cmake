# Default CUDA architectures: the build machine's GPU (issue 16 item 8: the old fixed "87 90" fails
# on CUDA 11.4, JetPack 5's, and gives "no kernel image" on any other GPU).
#
# CMake 3.24 has CMAKE_CUDA_ARCHITECTURES=native (https://cmake.org/cmake/help/v3.24/prop_tgt/CUDA_ARCHITECTURES.html;
# https://gitlab.kitware.com/cmake/cmake/-/merge_requests/7050), but JetPack 5's CMake is 3.16. So the
# GPU is asked directly, on every CMake (the same answer `native` gives where it exists): a small
# program against the CUDA runtime (no CUDA compiler needed) prints device 0's compute capability.
# A Jetson always has its GPU, so this finds 72 (Xavier), 87 (Orin), 110 (Thor, CUDA 13).
# Without a visible GPU the choice is left to nvcc's default architecture, which embeds PTX that the
# driver compiles for newer GPUs at first launch; set -DCMAKE_CUDA_ARCHITECTURES=87 (or CUDAARCHS)
# to build for a device other than this machine.
#
# irreid_detect_cuda_arch(<out-var>): "87", or "" when no GPU answered. Cached in IRREID_DETECTED_CUDA_ARCH.
function(irreid_detect_cuda_arch out)
  if(DEFINED IRREID_DETECTED_CUDA_ARCH)
    set(${out} "${IRREID_DETECTED_CUDA_ARCH}" PARENT_SCOPE)
    return()
  endif()
  set(arch "")
  if(CUDAToolkit_FOUND AND IRREID_CUDART_LIBRARY AND NOT CMAKE_CROSSCOMPILING)
    set(src "${CMAKE_BINARY_DIR}/irreid_detect_cuda_arch.cpp")
    file(WRITE "${src}" [=[
#include <cstdio>
#include <cuda_runtime_api.h>
int main() {
    int n = 0;
    cudaDeviceProp p;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n < 1 || cudaGetDeviceProperties(&p, 0) != cudaSuccess) return 1;
    std::printf("%d%d", p.major, p.minor);
    return 0;
}
]=])
    try_run(run_result compile_result "${CMAKE_BINARY_DIR}/irreid_detect_cuda_arch" "${src}"
      CMAKE_FLAGS "-DINCLUDE_DIRECTORIES=${CUDAToolkit_INCLUDE_DIRS}"
      LINK_LIBRARIES "${IRREID_CUDART_LIBRARY}"
      RUN_OUTPUT_VARIABLE run_out)
    if(compile_result AND run_result EQUAL 0 AND run_out MATCHES "^[0-9]+$")
      set(arch "${run_out}")
    endif()
  endif()
  set(IRREID_DETECTED_CUDA_ARCH "${arch}" CACHE INTERNAL "compute capability of this machine's GPU 0, empty without one")
  set(${out} "${arch}" PARENT_SCOPE)
endfunction()
