# civetweb 1.15 built from Debian's source package as a static library with TLS on OpenSSL 3.
# Debian's binary libcivetweb dlopen()s libssl and looks up OpenSSL 1.1 symbols, so HTTPS fails.
if(NOT EXISTS ${EDGECODER_CIVETWEB_DIR}/src/civetweb.c)
  message(FATAL_ERROR "civetweb source not found in ${EDGECODER_CIVETWEB_DIR}; run tools/setup first")
endif()
add_library(civetweb_static STATIC ${EDGECODER_CIVETWEB_DIR}/src/civetweb.c)
target_include_directories(civetweb_static SYSTEM PUBLIC ${EDGECODER_CIVETWEB_DIR}/include)
target_compile_definitions(civetweb_static PRIVATE OPENSSL_API_3_0 NO_SSL_DL USE_IPV6 USE_WEBSOCKET
                           NO_CGI SOCKET_TIMEOUT_QUANTUM=200) # stop polls every 200 ms, not 2 s
# Not our code: no warnings, and no sanitizer noise from its deliberate tricks.
target_compile_options(civetweb_static PRIVATE -w -fno-sanitize=all -O2)
target_link_libraries(civetweb_static PUBLIC OpenSSL::SSL OpenSSL::Crypto Threads::Threads ${CMAKE_DL_LIBS})
