# The ABI headers must not drift silently: any change to them must come with a deliberate update
# of sdk/abi.sha256, and a reviewer must then check that the change is additive (a minor bump)
# or bump the major (docs/plugin-abi.md says which).
#   cmake -DSDK_DIR=<sdk> -P check_abi_hash.cmake            check
#   cmake -DSDK_DIR=<sdk> -DUPDATE=ON -P check_abi_hash.cmake rewrite sdk/abi.sha256
set(headers abi.h lb.h discovery.h health.h filter.h certs.h)
set(actual "")
foreach(h ${headers})
  file(SHA256 "${SDK_DIR}/include/weir/${h}" sum)
  string(APPEND actual "${sum}  include/weir/${h}\n")
endforeach()
if(UPDATE)
  file(WRITE "${SDK_DIR}/abi.sha256" "${actual}")
  message(STATUS "wrote ${SDK_DIR}/abi.sha256")
  return()
endif()
file(READ "${SDK_DIR}/abi.sha256" expected)
if(NOT actual STREQUAL expected)
  message(FATAL_ERROR "The ABI headers changed.\nexpected:\n${expected}actual:\n${actual}"
    "If the change is intended, bump WEIR_ABI_MINOR (additive) or WEIR_ABI_MAJOR (breaking) "
    "as docs/plugin-abi.md says, then run: cmake -DSDK_DIR=sdk -DUPDATE=ON -P "
    "tests/sdk/check_abi_hash.cmake")
endif()
message(STATUS "ABI headers match sdk/abi.sha256")
