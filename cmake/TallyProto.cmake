# tally_protobuf_c(TARGET <name> PROTOS <file.proto>... ROOT <dir> [IMPORTS <dir>...])
# Generates protobuf-c sources at build time (never committed) and builds them as a static
# library <name>. PROTOS are paths relative to ROOT, which is also the import root, so that
# "tally/v1/types.proto" generates build/.../tally/v1/types.pb-c.h, included as
# "tally/v1/types.pb-c.h".
find_program(PROTOC_C protoc-c REQUIRED)

function(tally_protobuf_c)
  cmake_parse_arguments(P "" "TARGET;ROOT" "PROTOS;IMPORTS" ${ARGN})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/gen)
  set(srcs)
  set(import_flags -I${P_ROOT})
  foreach(dir ${P_IMPORTS})
    list(APPEND import_flags -I${dir})
  endforeach()
  foreach(proto ${P_PROTOS})
    string(REGEX REPLACE "\\.proto$" "" stem ${proto})
    set(c ${out}/${stem}.pb-c.c)
    set(h ${out}/${stem}.pb-c.h)
    add_custom_command(
      OUTPUT ${c} ${h}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out}
      COMMAND ${PROTOC_C} ${import_flags} --c_out=${out} ${proto}
      DEPENDS ${P_ROOT}/${proto}
      WORKING_DIRECTORY ${P_ROOT}
      COMMENT "protoc-c ${proto}"
      VERBATIM)
    list(APPEND srcs ${c})
  endforeach()
  add_library(${P_TARGET} STATIC ${srcs})
  target_include_directories(${P_TARGET} PUBLIC ${out})
  target_link_libraries(${P_TARGET} PUBLIC PkgConfig::PROTOBUFC)
  set_target_properties(${P_TARGET} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()
