# protoc-c code generation plus an embedded FileDescriptorSet (for reflection and the JSON codec).
set(EC_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
function(ec_protobuf_c target)
  set(srcs)
  set(rels)
  foreach(proto ${ARGN})
    if(proto MATCHES "^${CMAKE_SOURCE_DIR}/tests/proto/")
      set(root ${CMAKE_SOURCE_DIR}/tests/proto)
    else()
      set(root ${CMAKE_SOURCE_DIR}/proto)
    endif()
    file(RELATIVE_PATH rel ${root} ${proto})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    list(APPEND rels ${rel})
    add_custom_command(
      OUTPUT ${EC_GEN_DIR}/${stem}.pb-c.c ${EC_GEN_DIR}/${stem}.pb-c.h
      COMMAND ${CMAKE_COMMAND} -E make_directory ${EC_GEN_DIR}
      COMMAND ${PROTOC_C} -I${CMAKE_SOURCE_DIR}/proto -I${CMAKE_SOURCE_DIR}/tests/proto
              -I/usr/share/grpc-proto --c_out=${EC_GEN_DIR} ${rel}
      WORKING_DIRECTORY ${root}
      DEPENDS ${proto}
      COMMENT "protoc-c ${rel}")
    list(APPEND srcs ${EC_GEN_DIR}/${stem}.pb-c.c)
  endforeach()
  add_library(${target} STATIC ${srcs})
  target_include_directories(${target} PUBLIC ${EC_GEN_DIR})
  target_compile_options(${target} PRIVATE -w)
  target_link_libraries(${target} PUBLIC PkgConfig::DEPS)
endfunction()
