# Compiles tests/sim/ptx_spill_check.cu (the PTX-wrapper test kernels) with nvcc for one
# architecture and fails unless ptxas reports every kernel with 0 bytes of spill stores/loads
# and stack frame. Run as: cmake -DNVCC=... -DSOURCE=... -DROOT=... -DARCH=80 -DOUT=... -P this
execute_process(
  COMMAND ${NVCC} -std=c++17 -arch=sm_${ARCH} -I${ROOT} -Xptxas -v -c ${SOURCE} -o ${OUT}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
message("${log}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "nvcc failed for sm_${ARCH} (exit ${rc})")
endif()
string(REGEX MATCHALL "Used [0-9]+ registers" used "${log}")
list(LENGTH used kernels)
if(kernels EQUAL 0)
  message(FATAL_ERROR "ptxas reported no kernels for sm_${ARCH}")
endif()
string(REGEX MATCHALL "[0-9]+ bytes (stack frame|spill stores|spill loads)" amounts "${log}")
foreach(a IN LISTS amounts)
  if(NOT a MATCHES "^0 bytes")
    message(FATAL_ERROR "sm_${ARCH}: ptxas reports ${a}")
  endif()
endforeach()
message("sm_${ARCH}: ${kernels} kernels, no spills, no stack frame")
