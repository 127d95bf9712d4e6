# cmake -DOUT=<file.c> -DNAME=<symbol> -DFILES=<a;b;...> -P EmbedFiles.cmake
# Writes a C file defining `const embedded_file NAME[]` (name, NUL-terminated contents and size
# of each file, in the given order: text or binary) and `const size_t NAME_count`, so a binary carries its SQL
# migrations with it (a Kubernetes Job runs the image, not the source tree) and the API's
# descriptor set for server reflection.
set(body "#include \"embedded.h\"\n\n")
set(entries "")
set(i 0)
foreach(f ${FILES})
  file(READ ${f} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  get_filename_component(base ${f} NAME)
  string(APPEND body "static const char data_${i}[] = { ${hex} 0x00 };\n")
  string(APPEND entries "    { \"${base}\", data_${i}, sizeof(data_${i}) - 1 },\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\nconst embedded_file ${NAME}[] = {\n${entries}};\n")
string(APPEND body "const size_t ${NAME}_count = ${i};\n")
file(WRITE ${OUT} "${body}")
