# Installs the build into a scratch prefix and uses it as a consumer would, by CONSUMER:
#   find_package: find_package(luaengine) from a separate CMake project (c-examples/hello on its
#                 own), once with luaengine::luaengine (the shared library) and once with
#                 luaengine::static;
#   pkg_config:   pkg-config --cflags --libs luaengine with plain compiler calls, linking the
#                 shared library: hello.c, and a C++ program on luaengine.hpp.
# Run by ctest (install_and_consume.*); the variables come from tests/c/CMakeLists.txt.
cmake_minimum_required(VERSION 3.20) # policies of this century in script mode (CMP0054)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT result EQUAL 0)
    string(REPLACE ";" " " command "${ARGN}")
    message(FATAL_ERROR "failed (${result}): ${command}\n${out}\n${err}")
  endif()
  set(out "${out}" PARENT_SCOPE)
endfunction()

set(prefix "${WORK_DIR}/prefix")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}")
foreach(file
    "${LIBDIR}/libluaengine.a" "${LIBDIR}/libluaengine.so" "${LIBDIR}/${SONAME}" "${INCLUDEDIR}/luaengine.h"
    "${INCLUDEDIR}/luaengine.hpp"
    "${LIBDIR}/pkgconfig/luaengine.pc" "${LIBDIR}/cmake/luaengine/luaengineConfig.cmake"
    "${LIBDIR}/cmake/luaengine/luaengineConfigVersion.cmake")
  if(NOT EXISTS "${prefix}/${file}")
    message(FATAL_ERROR "cmake --install did not install ${file}")
  endif()
endforeach()
if(NOT IS_SYMLINK "${prefix}/${LIBDIR}/libluaengine.so" OR IS_SYMLINK "${prefix}/${LIBDIR}/${SONAME}")
  message(FATAL_ERROR "expected ${SONAME} as the file and libluaengine.so as a symlink to it")
endif()
message(STATUS "installed into ${prefix}")

if(CONSUMER STREQUAL "find_package")
  foreach(kind IN ITEMS luaengine static)
    run("${CMAKE_COMMAND}" -S "${HELLO_DIR}" -B "${WORK_DIR}/hello-${kind}" -G "${GENERATOR}"
        "-DCMAKE_PREFIX_PATH=${prefix}" "-DCMAKE_C_COMPILER=${C_COMPILER}" -DCMAKE_BUILD_TYPE=Release
        "-DHELLO_LUAENGINE=luaengine::${kind}")
    run("${CMAKE_COMMAND}" --build "${WORK_DIR}/hello-${kind}")
    run("${WORK_DIR}/hello-${kind}/hello")
    if(NOT out MATCHES "body: hello u1 /t")
      message(FATAL_ERROR "hello built with find_package(luaengine) and luaengine::${kind} printed:\n${out}")
    endif()
    message(STATUS "find_package(luaengine) + luaengine::${kind}: hello runs")
  endforeach()
  return()
elseif(NOT CONSUMER STREQUAL "pkg_config")
  message(FATAL_ERROR "CONSUMER must be find_package or pkg_config, not '${CONSUMER}'")
endif()

if(NOT PKG_CONFIG OR PKG_CONFIG MATCHES "NOTFOUND$")
  message(FATAL_ERROR "pkg-config was not found; it is needed to check luaengine.pc")
endif()
set(pc_env "${CMAKE_COMMAND}" -E env "PKG_CONFIG_PATH=${prefix}/${LIBDIR}/pkgconfig")
run(${pc_env} "${PKG_CONFIG}" --modversion luaengine)
string(STRIP "${out}" version)
if(NOT version STREQUAL VERSION)
  message(FATAL_ERROR "pkg-config --modversion luaengine says '${version}', expected '${VERSION}'")
endif()
run(${pc_env} "${PKG_CONFIG}" --cflags --libs luaengine)
separate_arguments(flags UNIX_COMMAND "${out}")
run("${C_COMPILER}" -std=c11 "${HELLO_DIR}/hello.c" ${flags} -o "${WORK_DIR}/hello-pkgconfig")
run("${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${prefix}/${LIBDIR}" "${WORK_DIR}/hello-pkgconfig")
if(NOT out MATCHES "body: hello u1 /t")
  message(FATAL_ERROR "hello built with pkg-config printed:\n${out}")
endif()
message(STATUS "pkg-config luaengine + libluaengine.so: hello runs")

run("${CXX_COMPILER}" -std=c++17 "${CXX_CONSUMER}" ${flags} -o "${WORK_DIR}/consumer-hpp")
run("${CMAKE_COMMAND}" -E env "LD_LIBRARY_PATH=${prefix}/${LIBDIR}" "${WORK_DIR}/consumer-hpp")
if(NOT out STREQUAL "hello from /consumer\n")
  message(FATAL_ERROR "the luaengine.hpp consumer built with pkg-config printed:\n${out}")
endif()
message(STATUS "pkg-config luaengine + luaengine.hpp: the C++ consumer runs")
