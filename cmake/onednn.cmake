# Optional oneDNN (Debian: libdnnl-dev) for the cpu backend's bf16 GEMM
# (kernels/cpu/gemm_onednn.cpp, docs/mixed_precision.md). AUTO uses it when found, ON
# requires it, OFF never uses it; without it bf16 GEMMs widen to f32 and run sgemm.
# Found by header and library rather than find_package(dnnl): Debian's dnnl-config.cmake
# requires the OpenCL development files (its GPU runtime), which petal does not need.
set(PETAL_ONEDNN AUTO CACHE STRING "oneDNN bf16 GEMM on the CPU (AUTO, ON, OFF)")
set_property(CACHE PETAL_ONEDNN PROPERTY STRINGS AUTO ON OFF)
set(PETAL_WITH_ONEDNN OFF)
if(NOT PETAL_ONEDNN STREQUAL "OFF")
  find_path(DNNL_INCLUDE_DIR oneapi/dnnl/dnnl.hpp)
  find_library(DNNL_LIBRARY dnnl)
  if(DNNL_INCLUDE_DIR AND DNNL_LIBRARY)
    set(PETAL_WITH_ONEDNN ON)
    target_include_directories(petal PRIVATE ${DNNL_INCLUDE_DIR})
    target_link_libraries(petal PRIVATE ${DNNL_LIBRARY})
    target_compile_definitions(petal PRIVATE PETAL_WITH_ONEDNN=1)
  elseif(PETAL_ONEDNN STREQUAL "ON")
    message(FATAL_ERROR "PETAL_ONEDNN=ON but oneDNN was not found: run scripts/install-deps.sh (Debian package libdnnl-dev)")
  endif()
endif()
message(STATUS "petal: oneDNN bf16 GEMM ${PETAL_WITH_ONEDNN} ${DNNL_LIBRARY}")
