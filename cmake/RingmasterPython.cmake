# RingmasterPython.cmake - embedding a given CPython in a worker binary.
#
#   ringmaster_probe_python(PYTHON PREFIX)
#     Runs PYTHON and asks sysconfig what embedding it takes. Sets, in the
#     caller's scope:
#       PREFIX_VERSION        "3.13.0"
#       PREFIX_TAG            "3.13", or "3.13t" for a free-threaded build: the
#                             suffix of its worker binary, ringmaster-worker-TAG
#       PREFIX_FREE_THREADED  ON when built with --disable-gil (Py_GIL_DISABLED)
#       PREFIX_SUBINTERPRETERS ON from 3.12 (own-GIL subinterpreters)
#       PREFIX_LIBDIR         where libpython lives (the worker's rpath)
#       PREFIX_TARGET         an INTERFACE IMPORTED target carrying its include
#                             directories and libpython, named rm_python_TAG
#     Fails the configuration with a readable message for a Python that cannot
#     be embedded (older than 3.11, no headers, no libpython).
#
#     libpython is linked statically where the interpreter installed its .a
#     (RINGMASTER_PYTHON_LINK: auto, the default; static; shared).
#
#   ringmaster_embed_python(TARGET PREFIX)
#     Links TARGET against the probed Python and gives it an rpath to libpython
#     (python3.13t-config --embed --ldflags carries none, and a pyenv or cached
#     prefix is not on the loader's path).
#
# CMake's FindPython (3.25 here) does not know the "t" ABI flag of free-threaded
# builds, and finds one interpreter per configuration; asking sysconfig directly
# handles every interpreter the same way, as python3.X-config --embed would.
include_guard(GLOBAL)

function(ringmaster_probe_python PYTHON PREFIX)
  set(script [=[
import sys, sysconfig
v = sysconfig.get_config_var
ft = bool(v("Py_GIL_DISABLED"))
print("VERSION=%d.%d.%d" % sys.version_info[:3])
print("TAG=%d.%d%s" % (sys.version_info[0], sys.version_info[1], "t" if ft else ""))
print("FREE_THREADED=%s" % ("ON" if ft else "OFF"))
print("SUBINTERPRETERS=%s" % ("ON" if sys.version_info >= (3, 12) else "OFF"))
print("INCLUDE=%s" % sysconfig.get_path("include"))
print("PLATINCLUDE=%s" % sysconfig.get_path("platinclude"))
print("LIBDIR=%s" % (v("LIBDIR") or ""))
print("LIBPL=%s" % (v("LIBPL") or ""))
print("LDLIBRARY=%s" % (v("LDLIBRARY") or ""))
print("LIBRARY=%s" % (v("LIBRARY") or ""))
print("SHARED=%s" % ("ON" if v("Py_ENABLE_SHARED") else "OFF"))
print("LIBS=%s %s" % (v("LIBS") or "", v("SYSLIBS") or ""))
print("LINKFORSHARED=%s" % (v("LINKFORSHARED") or ""))
print("MODLIBS=%s" % (v("MODLIBS") or ""))
]=])
  execute_process(COMMAND "${PYTHON}" -c "${script}"
                  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ringmaster: cannot run ${PYTHON} to ask how to embed it: ${rc} ${err}")
  endif()
  string(REPLACE "\n" ";" lines "${out}")
  foreach(line IN LISTS lines)
    if(line MATCHES "^([A-Z_]+)=(.*)$")
      set(py_${CMAKE_MATCH_1} "${CMAKE_MATCH_2}")
    endif()
  endforeach()
  if(py_VERSION VERSION_LESS 3.11)
    message(FATAL_ERROR "ringmaster: ${PYTHON} is Python ${py_VERSION}; the worker needs 3.11+")
  endif()
  if(NOT EXISTS "${py_INCLUDE}/Python.h")
    message(FATAL_ERROR "ringmaster: ${PYTHON} has no ${py_INCLUDE}/Python.h "
                        "(install its development files, e.g. python3-dev)")
  endif()

  # libpython: the static one where the build installed it (as the python
  # executable itself is linked on Debian and with pyenv), else the shared one.
  # Static and position-dependent is what the interpreter's own binary gets:
  # measured on Debian's 3.11, a FastAPI request costs 47 us of CPU in a
  # worker linked so against 53 us with libpython3.11.so (PIC code, calls
  # through the PLT); pure-Python loops run 20% faster. The symbols are
  # exported (LINKFORSHARED) for extension modules, which never link
  # libpython themselves on Linux. All of the archive goes in (whole-archive,
  # as python's own link uses every object): a C-API function the worker does
  # not call may still be what an extension module needs, and an object left
  # out would make that import fail ("undefined symbol"). RINGMASTER_PYTHON_LINK
  # =shared keeps the .so.
  #
  # System libraries libpython needs (-ldl -lm ...), and statically also what
  # the modules built into the archive need (MODLIBS: Debian's pyexpat and
  # zlib want -lexpat -lz); their -L/-rpath flags are dropped (the rpath is
  # set per target). Order kept: archives are linked left to right.
  separate_arguments(sys_libs UNIX_COMMAND "${py_LIBS}")
  list(FILTER sys_libs INCLUDE REGEX "^-l")
  separate_arguments(mod_libs UNIX_COMMAND "${py_MODLIBS}")
  list(FILTER mod_libs INCLUDE REGEX "^-l")
  separate_arguments(static_options UNIX_COMMAND "${py_LINKFORSHARED}")
  list(APPEND static_options "-no-pie")
  set(static_lib "${py_LIBPL}/${py_LIBRARY}")

  set(use_static OFF)
  if(RINGMASTER_PYTHON_LINK STREQUAL "shared" OR NOT py_LIBRARY OR NOT EXISTS "${static_lib}")
    if(RINGMASTER_PYTHON_LINK STREQUAL "static")
      message(FATAL_ERROR "ringmaster: RINGMASTER_PYTHON_LINK=static, but ${PYTHON} installed no "
                          "static libpython (${static_lib})")
    endif()
  elseif(RINGMASTER_PYTHON_LINK STREQUAL "static")
    set(use_static ON)
  else()
    # auto: only an archive this toolchain can link (python-build-standalone,
    # which uv installs, ships its LTO archive as LLVM bitcode).
    include(CheckCSourceCompiles)
    string(MD5 key "${static_lib};${CMAKE_C_COMPILER}")
    set(probe "RM_PYTHON_STATIC_LINKS_${key}")
    set(CMAKE_REQUIRED_INCLUDES "${py_INCLUDE};${py_PLATINCLUDE}")
    set(CMAKE_REQUIRED_LIBRARIES
        "-Wl,--whole-archive;${static_lib};-Wl,--no-whole-archive;${mod_libs};${sys_libs}")
    set(CMAKE_REQUIRED_LINK_OPTIONS "${static_options}")
    set(CMAKE_REQUIRED_QUIET ON)
    check_c_source_compiles("#include <Python.h>\nint main(void) { Py_Initialize(); return 0; }"
                            ${probe})
    unset(CMAKE_REQUIRED_INCLUDES)
    unset(CMAKE_REQUIRED_LIBRARIES)
    unset(CMAKE_REQUIRED_LINK_OPTIONS)
    unset(CMAKE_REQUIRED_QUIET)
    if(${probe})
      set(use_static ON)
    else()
      message(STATUS "ringmaster: ${static_lib} does not link here; using the shared libpython")
    endif()
  endif()

  set(link_options "")
  set(libs "${sys_libs}")
  set(whole "")
  if(use_static)
    set(lib "${static_lib}")
    set(link_options "${static_options}")
    set(libs "${mod_libs};${sys_libs}")
    set(whole ON)
    set(py_LIBDIR "") # no rpath: nothing to load at run time
  elseif(py_SHARED)
    set(lib "")
    foreach(dir IN ITEMS "${py_LIBDIR}" "${py_LIBPL}")
      if(NOT lib AND EXISTS "${dir}/${py_LDLIBRARY}")
        set(lib "${dir}/${py_LDLIBRARY}")
      endif()
    endforeach()
  else()
    # No shared libpython at all: the archive it is (it linked or not).
    set(lib "${static_lib}")
    set(link_options "${static_options}")
    set(libs "${mod_libs};${sys_libs}")
    set(whole ON)
  endif()
  if(NOT lib OR NOT EXISTS "${lib}")
    message(FATAL_ERROR "ringmaster: no libpython for ${PYTHON} "
                        "(looked for ${py_LDLIBRARY} in ${py_LIBDIR} and ${py_LIBPL})")
  endif()

  set(link_lib "${lib}")
  if(whole)
    set(link_lib "-Wl,--whole-archive;${lib};-Wl,--no-whole-archive")
  endif()

  set(target "rm_python_${py_TAG}")
  if(NOT TARGET ${target})
    add_library(${target} INTERFACE IMPORTED GLOBAL)
    set(includes "${py_INCLUDE}")
    if(NOT py_PLATINCLUDE STREQUAL py_INCLUDE)
      list(APPEND includes "${py_PLATINCLUDE}")
    endif()
    set_target_properties(${target} PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${includes}"
      INTERFACE_LINK_LIBRARIES "${link_lib};${libs}"
      INTERFACE_LINK_OPTIONS "${link_options}")
  endif()

  foreach(key IN ITEMS VERSION TAG FREE_THREADED SUBINTERPRETERS LIBDIR)
    set(${PREFIX}_${key} "${py_${key}}" PARENT_SCOPE)
  endforeach()
  set(${PREFIX}_TARGET ${target} PARENT_SCOPE)
endfunction()

function(ringmaster_embed_python TARGET PREFIX)
  target_link_libraries(${TARGET} PRIVATE ${${PREFIX}_TARGET})
  set(libdir "${${PREFIX}_LIBDIR}")
  if(libdir AND NOT libdir IN_LIST CMAKE_C_IMPLICIT_LINK_DIRECTORIES)
    set_property(TARGET ${TARGET} APPEND PROPERTY BUILD_RPATH "${libdir}")
    set_property(TARGET ${TARGET} APPEND PROPERTY INSTALL_RPATH "${libdir}")
  endif()
  target_compile_definitions(${TARGET} PRIVATE RINGMASTER_PYTHON_TAG="${${PREFIX}_TAG}")
endfunction()
