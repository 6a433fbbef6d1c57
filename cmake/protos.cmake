# protoc-c code generation plus an embedded FileDescriptorSet (for reflection and the JSON codec).
set(EC_GEN_DIR ${CMAKE_BINARY_DIR}/gen)
set(EC_GRPC_PROTO_DIR /usr/share/grpc-proto)
function(ec_protobuf_c target)
  set(srcs)
  set(rels)
  foreach(proto ${ARGN})
    if(proto MATCHES "^${CMAKE_SOURCE_DIR}/tests/proto/")
      set(root ${CMAKE_SOURCE_DIR}/tests/proto)
    elseif(proto MATCHES "^${EC_GRPC_PROTO_DIR}/")
      set(root ${EC_GRPC_PROTO_DIR})
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

# A FileDescriptorSet of the given protos and everything they import, embedded as the C symbols
# `<symbol>` and `<symbol>_len` (gRPC server reflection and `edgecoder rpc` serve it).
function(ec_descriptor_set target symbol)
  set(rels)
  set(out_pb ${EC_GEN_DIR}/${target}.pb)
  set(out_c ${EC_GEN_DIR}/${target}.c)
  foreach(proto ${ARGN})
    if(proto MATCHES "^${EC_GRPC_PROTO_DIR}/")
      file(RELATIVE_PATH rel ${EC_GRPC_PROTO_DIR} ${proto})
    else()
      file(RELATIVE_PATH rel ${CMAKE_SOURCE_DIR}/proto ${proto})
    endif()
    list(APPEND rels ${rel})
  endforeach()
  add_custom_command(
    OUTPUT ${out_pb} ${out_c}
    COMMAND ${PROTOC} -I${CMAKE_SOURCE_DIR}/proto -I${EC_GRPC_PROTO_DIR} --include_imports
            --descriptor_set_out=${out_pb} ${rels}
    COMMAND ${CMAKE_COMMAND} -DIN=${out_pb} -DOUT=${out_c} -DSYMBOL=${symbol}
            -P ${CMAKE_SOURCE_DIR}/cmake/bin2c.cmake
    DEPENDS ${ARGN} ${CMAKE_SOURCE_DIR}/cmake/bin2c.cmake
    COMMENT "descriptor set ${target}")
  add_library(${target} STATIC ${out_c})
endfunction()
