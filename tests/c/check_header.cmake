# Regenerates the C header with cbindgen and fails if it differs from the checked-in one.
#   cmake -DCBINDGEN=... -DSOURCE_DIR=... -DGENERATED=<tmp file> -P check_header.cmake
cmake_minimum_required(VERSION 3.20) # policies of this century in script mode (CMP0054)
if(NOT CBINDGEN OR CBINDGEN MATCHES "NOTFOUND$")
  message(FATAL_ERROR
    "cbindgen was not found (looked in PATH and ~/.cargo/bin), so include/luaengine.h cannot be "
    "checked. Install the pinned version with scripts/install-deps.sh, then re-run cmake.")
endif()

execute_process(COMMAND "${CBINDGEN}" --version OUTPUT_VARIABLE version OUTPUT_STRIP_TRAILING_WHITESPACE)
message(STATUS "using ${version} (${CBINDGEN})")

file(REMOVE "${GENERATED}")
execute_process(
  COMMAND "${CBINDGEN}" --quiet --config "${SOURCE_DIR}/cbindgen.toml" --crate luaengine --output "${GENERATED}"
  WORKING_DIRECTORY "${SOURCE_DIR}"
  RESULT_VARIABLE result)
if(NOT result EQUAL 0 OR NOT EXISTS "${GENERATED}")
  message(FATAL_ERROR "cbindgen failed (${result})")
endif()

execute_process(
  COMMAND "${CMAKE_COMMAND}" -E compare_files "${SOURCE_DIR}/include/luaengine.h" "${GENERATED}"
  RESULT_VARIABLE differs)
if(differs)
  find_program(DIFF diff)
  if(DIFF)
    execute_process(COMMAND "${DIFF}" -u "${SOURCE_DIR}/include/luaengine.h" "${GENERATED}")
  endif()
  message(FATAL_ERROR
    "include/luaengine.h is not what cbindgen generates from src/ffi/ (generated: ${GENERATED}). "
    "Run scripts/gen-header.sh and commit the header.")
endif()

# cbindgen exports every `pub` constant of the crate: only the ABI's own (LE_) may be macros.
file(STRINGS "${SOURCE_DIR}/include/luaengine.h" defines REGEX "^#define ")
foreach(define IN LISTS defines)
  if(NOT define MATCHES "^#define (LE_[A-Z0-9_]+|LUAENGINE_H[A-Z_]*)( |$)")
    message(FATAL_ERROR "include/luaengine.h defines an unprefixed macro: ${define} "
      "(exclude it in cbindgen.toml, or name it LE_...)")
  endif()
endforeach()
message(STATUS "include/luaengine.h is up to date")
