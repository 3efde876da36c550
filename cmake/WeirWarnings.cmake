# Warning flags for weir's own targets (never global).
add_library(weir_warnings INTERFACE)
target_compile_options(weir_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wcast-align
  -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Wold-style-cast -Woverloaded-virtual>)
if(WEIR_WERROR)
  target_compile_options(weir_warnings INTERFACE -Werror)
endif()

add_library(weir_sanitize INTERFACE)
if(WEIR_SANITIZE)
  target_compile_options(weir_sanitize INTERFACE -fsanitize=address,undefined -fno-omit-frame-pointer
                                                 -fno-sanitize-recover=undefined)
  target_link_options(weir_sanitize INTERFACE -fsanitize=address,undefined)
endif()
