# weir_add_plugin(<target> [OUTPUT_NAME <name>] SOURCES <src>...)
# Builds a weir plugin exactly as a third party does: a MODULE library that sees only the SDK
# headers, exports only its entry point, and fails to link if it references an undefined symbol.
#
# Only weir_plugin_entry is exported: hidden visibility covers the plugin's own code, and a linker
# version script also hides the libstdc++ template instantiations the plugin contains (libstdc++
# gives namespace std default visibility, so -fvisibility=hidden alone leaves them exported, where
# they could interpose across plugins).
#
# In weir's tree the library goes to WEIR_PLUGIN_OUTPUT_DIR (build/lib/weir/plugins); out of tree
# (find_package(weir-sdk)) that variable is unset and the library stays in the build directory.
function(weir_add_plugin target)
  cmake_parse_arguments(ARG "" "OUTPUT_NAME" "SOURCES" ${ARGN})
  add_library(${target} MODULE ${ARG_SOURCES})
  target_link_libraries(${target} PRIVATE weir::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON)
  if(ARG_OUTPUT_NAME)
    set_target_properties(${target} PROPERTIES OUTPUT_NAME ${ARG_OUTPUT_NAME})
  endif()
  if(DEFINED WEIR_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${WEIR_PLUGIN_OUTPUT_DIR}")
  endif()
  target_link_options(${target} PRIVATE "LINKER:-z,defs")
  if(NOT APPLE AND NOT WIN32)
    set(map "${CMAKE_CURRENT_BINARY_DIR}/weir-plugin-exports.map")
    file(CONFIGURE OUTPUT "${map}"
         CONTENT "{\n  global: weir_plugin_entry;\n  local: *;\n};\n")
    target_link_options(${target} PRIVATE "LINKER:--version-script=${map}")
    set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${map}")
  endif()
endfunction()
