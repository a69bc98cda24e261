# FindTensorRT: headers and libnvinfer from JetPack (Debian multiarch paths) or a tar install.
#
#   TensorRT_FOUND, TensorRT_VERSION, imported target TensorRT::nvinfer
#
# Hints: TENSORRT_ROOT (CMake or environment variable) = the folder holding include/ and lib/.
set(_trt_hints ${TENSORRT_ROOT} $ENV{TENSORRT_ROOT})
find_path(TensorRT_INCLUDE_DIR NvInfer.h
  HINTS ${_trt_hints}
  PATH_SUFFIXES include
  PATHS /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/local/TensorRT/include /usr/include)
find_library(TensorRT_LIBRARY NAMES nvinfer nvinfer_10
  HINTS ${_trt_hints}
  PATH_SUFFIXES lib lib64
  PATHS /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/TensorRT/lib)

if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  file(READ "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_version_h)
  # TensorRT <= 10.10 defines NV_TENSORRT_MAJOR; later releases TRT_MAJOR_ENTERPRISE (and keep the alias).
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "#define (NV_TENSORRT|TRT)_${_part}(_ENTERPRISE)? +([0-9]+)" _m "${_trt_version_h}")
    set(_trt_${_part} "${CMAKE_MATCH_3}")
  endforeach()
  set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(TensorRT
  REQUIRED_VARS TensorRT_LIBRARY TensorRT_INCLUDE_DIR
  VERSION_VAR TensorRT_VERSION)

if(TensorRT_FOUND AND NOT TARGET TensorRT::nvinfer)
  add_library(TensorRT::nvinfer UNKNOWN IMPORTED)
  set_target_properties(TensorRT::nvinfer PROPERTIES
    IMPORTED_LOCATION "${TensorRT_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_INCLUDE_DIR}")
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY)
