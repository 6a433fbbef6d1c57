# Embeds every file under a directory into a C table of `struct ec_embedded_file` rows named
# SYMBOL (see src/common/ec_embed.h) at build time; the list of sources lands in <name>_SOURCES.
function(ec_embed name dir symbol)
  file(GLOB_RECURSE files CONFIGURE_DEPENDS ${dir}/*)
  set(out ${CMAKE_BINARY_DIR}/gen/${name}.c)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DDIR=${dir} -DOUT=${out} -DSYMBOL=${symbol}
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    DEPENDS ${files} ${CMAKE_SOURCE_DIR}/cmake/embed_run.cmake
    COMMENT "embedding ${dir} as ${symbol}")
  set(${name}_SOURCES ${out} PARENT_SCOPE)
endfunction()
