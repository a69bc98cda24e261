# The CUDA runtime (headers + libcudart) as the imported target CUDA::cudart, found WITHOUT nvcc on
# PATH (a JetPack shell has none; issue 16 item 8). Installed with the package so that consumers of
# the exported irreid::irreid_rt find the same target.
#
# CMake >= 3.17: FindCUDAToolkit, which "does not require the CUDA language be enabled" and searches
# CUDAToolkit_ROOT, CUDA_PATH, nvcc on PATH, then the /usr/local/cuda symlink JetPack installs
# (https://cmake.org/cmake/help/v3.17/module/FindCUDAToolkit.html, "Search Behavior").
# CMake 3.16 (JetPack 5 / Ubuntu 20.04) has no FindCUDAToolkit: the same roots are searched here
# for cuda_runtime_api.h and libcudart, and CUDA::cudart is made the same way.
#
# Sets CUDAToolkit_FOUND, CUDAToolkit_INCLUDE_DIRS, IRREID_CUDART_LIBRARY.
if(TARGET CUDA::cudart)
  set(CUDAToolkit_FOUND TRUE)
elseif(NOT CMAKE_VERSION VERSION_LESS 3.17)
  find_package(CUDAToolkit QUIET)
else()
  set(_irreid_cuda_roots ${CUDAToolkit_ROOT} $ENV{CUDAToolkit_ROOT} $ENV{CUDA_PATH} /usr/local/cuda)
  find_path(CUDAToolkit_INCLUDE_DIR cuda_runtime_api.h
    HINTS ${_irreid_cuda_roots}
    PATH_SUFFIXES include targets/aarch64-linux/include targets/x86_64-linux/include)
  find_library(CUDA_cudart_LIBRARY cudart
    HINTS ${_irreid_cuda_roots}
    PATH_SUFFIXES lib64 lib targets/aarch64-linux/lib targets/x86_64-linux/lib)
  mark_as_advanced(CUDAToolkit_INCLUDE_DIR CUDA_cudart_LIBRARY)
  if(CUDAToolkit_INCLUDE_DIR AND CUDA_cudart_LIBRARY)
    set(CUDAToolkit_FOUND TRUE)
    set(CUDAToolkit_INCLUDE_DIRS "${CUDAToolkit_INCLUDE_DIR}")
    add_library(CUDA::cudart UNKNOWN IMPORTED)
    set_target_properties(CUDA::cudart PROPERTIES
      IMPORTED_LOCATION "${CUDA_cudart_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${CUDAToolkit_INCLUDE_DIR}")
  else()
    set(CUDAToolkit_FOUND FALSE)
  endif()
endif()

if(CUDAToolkit_FOUND)
  if(CUDA_cudart_LIBRARY)
    set(IRREID_CUDART_LIBRARY "${CUDA_cudart_LIBRARY}")
  else()
    get_target_property(IRREID_CUDART_LIBRARY CUDA::cudart IMPORTED_LOCATION)
  endif()
endif()
