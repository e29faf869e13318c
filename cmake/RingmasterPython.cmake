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
  # libpython themselves on Linux. RINGMASTER_PYTHON_LINK=shared keeps the .so.
  set(link_options "")
  set(static_lib "${py_LIBPL}/${py_LIBRARY}")
  if(NOT RINGMASTER_PYTHON_LINK STREQUAL "shared" AND py_LIBRARY AND EXISTS "${static_lib}")
    set(lib "${static_lib}")
    separate_arguments(link_options UNIX_COMMAND "${py_LINKFORSHARED}")
    list(APPEND link_options "-no-pie")
    set(py_LIBDIR "") # no rpath: nothing to load at run time
  elseif(RINGMASTER_PYTHON_LINK STREQUAL "static")
    message(FATAL_ERROR "ringmaster: RINGMASTER_PYTHON_LINK=static, but ${PYTHON} installed no "
                        "static libpython (${static_lib})")
  elseif(py_SHARED)
    set(lib "")
    foreach(dir IN ITEMS "${py_LIBDIR}" "${py_LIBPL}")
      if(NOT lib AND EXISTS "${dir}/${py_LDLIBRARY}")
        set(lib "${dir}/${py_LDLIBRARY}")
      endif()
    endforeach()
  else()
    set(lib "${py_LIBPL}/${py_LIBRARY}")
    separate_arguments(link_options UNIX_COMMAND "${py_LINKFORSHARED}")
  endif()
  if(NOT lib OR NOT EXISTS "${lib}")
    message(FATAL_ERROR "ringmaster: no libpython for ${PYTHON} "
                        "(looked for ${py_LDLIBRARY} in ${py_LIBDIR} and ${py_LIBPL})")
  endif()
  # System libraries libpython needs (-ldl -lm ...); its own -L/-rpath flags
  # are dropped: the rpath is set per target.
  # Statically, also what the modules built into libpython.a need (Debian's
  # pyexpat and zlib: -lexpat -lz).
  if(lib STREQUAL static_lib)
    string(APPEND py_LIBS " ${py_MODLIBS}")
  endif()
  separate_arguments(libs UNIX_COMMAND "${py_LIBS}")
  list(FILTER libs INCLUDE REGEX "^-l")
  list(REMOVE_DUPLICATES libs)

  set(target "rm_python_${py_TAG}")
  if(NOT TARGET ${target})
    add_library(${target} INTERFACE IMPORTED GLOBAL)
    set(includes "${py_INCLUDE}")
    if(NOT py_PLATINCLUDE STREQUAL py_INCLUDE)
      list(APPEND includes "${py_PLATINCLUDE}")
    endif()
    set_target_properties(${target} PROPERTIES
      INTERFACE_INCLUDE_DIRECTORIES "${includes}"
      INTERFACE_LINK_LIBRARIES "${lib};${libs}"
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
