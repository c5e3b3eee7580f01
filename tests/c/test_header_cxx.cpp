// The generated header used from C++: it compiles with strict warnings, its declarations have
// C linkage (this links against the Rust library), and its types behave as plain C structs.
#include "luaengine.h"

#include <cstdio>
#include <cstring>
#include <type_traits>

static_assert(std::is_standard_layout<le_str>::value, "le_str is a C struct");
static_assert(std::is_trivially_copyable<le_config>::value, "le_config is a C struct");
static_assert(sizeof(le_result) == sizeof(int), "le_result is a C enum");

int main() {
  if (le_abi_version() != LE_ABI_VERSION) return 1;
  le_config config = le_config_default();
  config.workers = 1;
  config.log_level = LE_LOG_CRIT;
  le_engine *engine = nullptr;
  le_error *err = nullptr;
  if (le_engine_new(&config, &engine, &err) != LE_OK) return 1;
  const char *source = "ngx.say('from C++')";
  le_script *script = nullptr;
  le_str name = {reinterpret_cast<const uint8_t *>("content"), 7};
  le_str text = {reinterpret_cast<const uint8_t *>(source), std::strlen(source)};
  if (le_script_compile(engine, name, text, &script, &err) != LE_OK) return 1;
  le_request_init init{};
  init.size = sizeof init;
  le_request *request = nullptr;
  if (le_request_new(engine, &init, LE_WORKER_ANY, &request, &err) != LE_OK) return 1;
  if (le_request_run(request, LE_PHASE_CONTENT, script, &err) != LE_STATUS_DONE) return 1;
  le_response_view view{};
  view.size = sizeof view;
  if (le_request_response(request, &view) != LE_OK) return 1;
  bool ok = view.body.len == 9 && std::memcmp(view.body.ptr, "from C++\n", 9) == 0;
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
  std::printf("test_header_cxx: %s\n", ok ? "passed" : "FAILED");
  return ok ? 0 : 1;
}
