# FindTensorRT: NvInfer.h and libnvinfer (+ NvOnnxParser.h and libnvonnxparser for building engines)
# from JetPack (Debian multiarch paths /usr/include/<arch>-linux-gnu, /usr/lib/<arch>-linux-gnu) or a
# tar install. No CUDA compiler is involved (issue 16 item 8).
#
#   TensorRT_FOUND, TensorRT_VERSION, TensorRT_INCLUDE_DIR,
#   imported targets TensorRT::nvinfer and (when found) TensorRT::nvonnxparser, TensorRT_nvonnxparser_FOUND
#
# Hints: TensorRT_ROOT (CMake or environment variable; find_package searches <PackageName>_ROOT by
# policy CMP0074, https://cmake.org/cmake/help/v3.16/policy/CMP0074.html), or the older TENSORRT_ROOT,
# = the folder holding include/ and lib/.
set(_trt_hints ${TensorRT_ROOT} $ENV{TensorRT_ROOT} ${TENSORRT_ROOT} $ENV{TENSORRT_ROOT})
set(_trt_include_paths /usr/include/aarch64-linux-gnu /usr/include/x86_64-linux-gnu /usr/local/TensorRT/include /usr/include)
set(_trt_lib_paths /usr/lib/aarch64-linux-gnu /usr/lib/x86_64-linux-gnu /usr/local/TensorRT/lib)
find_path(TensorRT_INCLUDE_DIR NvInfer.h HINTS ${_trt_hints} PATH_SUFFIXES include PATHS ${_trt_include_paths})
# TensorRT 10 on Windows names it nvinfer_10; Linux keeps libnvinfer.so.
find_library(TensorRT_LIBRARY NAMES nvinfer nvinfer_10 HINTS ${_trt_hints} PATH_SUFFIXES lib lib64 PATHS ${_trt_lib_paths})
find_path(TensorRT_ONNXPARSER_INCLUDE_DIR NvOnnxParser.h HINTS ${_trt_hints} PATH_SUFFIXES include PATHS ${_trt_include_paths})
find_library(TensorRT_ONNXPARSER_LIBRARY NAMES nvonnxparser nvonnxparser_10 HINTS ${_trt_hints} PATH_SUFFIXES lib lib64 PATHS ${_trt_lib_paths})

if(TensorRT_INCLUDE_DIR AND EXISTS "${TensorRT_INCLUDE_DIR}/NvInferVersion.h")
  file(READ "${TensorRT_INCLUDE_DIR}/NvInferVersion.h" _trt_version_h)
  # TensorRT <= 10.10 defines NV_TENSORRT_MAJOR; later releases TRT_MAJOR_ENTERPRISE (and keep the alias).
  foreach(_part MAJOR MINOR PATCH)
    string(REGEX MATCH "#define (NV_TENSORRT|TRT)_${_part}(_ENTERPRISE)? +([0-9]+)" _m "${_trt_version_h}")
    set(_trt_${_part} "${CMAKE_MATCH_3}")
  endforeach()
  if(NOT _trt_MAJOR STREQUAL "")
    set(TensorRT_VERSION "${_trt_MAJOR}.${_trt_MINOR}.${_trt_PATCH}")
  endif()
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
set(TensorRT_nvonnxparser_FOUND FALSE)
if(TensorRT_FOUND AND TensorRT_ONNXPARSER_INCLUDE_DIR AND TensorRT_ONNXPARSER_LIBRARY)
  set(TensorRT_nvonnxparser_FOUND TRUE)
  if(NOT TARGET TensorRT::nvonnxparser)
    add_library(TensorRT::nvonnxparser UNKNOWN IMPORTED)
    set_target_properties(TensorRT::nvonnxparser PROPERTIES
      IMPORTED_LOCATION "${TensorRT_ONNXPARSER_LIBRARY}"
      INTERFACE_INCLUDE_DIRECTORIES "${TensorRT_ONNXPARSER_INCLUDE_DIR}"
      INTERFACE_LINK_LIBRARIES TensorRT::nvinfer)
  endif()
endif()
mark_as_advanced(TensorRT_INCLUDE_DIR TensorRT_LIBRARY TensorRT_ONNXPARSER_INCLUDE_DIR TensorRT_ONNXPARSER_LIBRARY)
