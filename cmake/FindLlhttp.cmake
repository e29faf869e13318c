# Builds llhttp from the C sources Debian's node-llhttp package installs.
# The sources are never copied into this repository.
find_path(LLHTTP_INCLUDE_DIR llhttp.h
  PATHS /usr/share/include/llhttp /usr/include/llhttp /usr/include)
find_path(LLHTTP_SOURCE_DIR llhttp.c
  PATHS /usr/share/llhttp /usr/share/nodejs/llhttp/src /usr/src/llhttp)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(Llhttp REQUIRED_VARS LLHTTP_INCLUDE_DIR LLHTTP_SOURCE_DIR)
if(Llhttp_FOUND AND NOT TARGET Llhttp::llhttp)
  add_library(rm_llhttp STATIC
    ${LLHTTP_SOURCE_DIR}/llhttp.c ${LLHTTP_SOURCE_DIR}/api.c ${LLHTTP_SOURCE_DIR}/http.c)
  target_include_directories(rm_llhttp SYSTEM PUBLIC ${LLHTTP_INCLUDE_DIR})
  # Third-party generated code: our warning flags are not its contract.
  target_compile_options(rm_llhttp PRIVATE -w)
  set_target_properties(rm_llhttp PROPERTIES POSITION_INDEPENDENT_CODE ON)
  add_library(Llhttp::llhttp ALIAS rm_llhttp)
endif()
