/*
 * The ABI can grow (see "Versions" in luaengine.h): structs the library reads or writes whole
 * carry their size, and the library touches no byte past it; a size smaller than any version
 * is refused with a clear error; the version macros are the library's.
 */
#include "le_test.h"

/* Room for a struct, as a newer header's bigger version of it would need, and then some. */
#define ROOM(type)            \
  union {                     \
    type value;               \
    unsigned char bytes[sizeof(type) + 32]; \
  }

/* Fills a ROOM with 0xAB, then sets the struct's size to `n`. */
#define PREPARE(room, n) (memset((room).bytes, 0xAB, sizeof(room).bytes), (room).value.size = (n))

/* Where `field`, a struct's last, ends: the smallest size the library takes for it. */
#define END_OF(type, field) (offsetof(type, field) + sizeof(((type *)0)->field))

/* Bytes [from, to) of `bytes` all equal `want`. */
static bool all_bytes(const unsigned char *bytes, size_t from, size_t to, unsigned char want) {
  for (size_t i = from; i < to; i++)
    if (bytes[i] != want) return false;
  return true;
}

static void the_version_macros_are_the_librarys(void) {
  char macros[64];
  snprintf(macros, sizeof macros, "%d.%d.%d", LE_VERSION_MAJOR, LE_VERSION_MINOR, LE_VERSION_PATCH);
  CHECK(strcmp(macros, le_version()) == 0);
  CHECK(strcmp(macros, LE_EXPECTED_VERSION) == 0); /* Cargo.toml's, through CMake */
  CHECK_EQ(LE_ABI_VERSION, le_abi_version());
  CHECK_EQ(LE_ABI_VERSION, 2);
#if !defined(LE_VERSION_MAJOR) || !defined(LE_VERSION_MINOR) || !defined(LE_VERSION_PATCH)
#error "the header lacks LE_VERSION_MAJOR/MINOR/PATCH"
#endif
}

/* A host whose struct ends where the struct's last field does (an older version's size, as far
 * as this library goes) gets that far written, and not one byte more. */
static void a_smaller_size_gets_only_the_fields_it_covers(void) {
  le_engine *engine = le_test_engine(1);
  le_script *content = le_test_compile(engine, "content", "ngx.say('hi')");
  le_script *filter = le_test_compile(engine, "body_filter", "ngx.arg[1] = ngx.arg[1]:upper()");
  le_request *request = le_test_request(engine, "/p", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);

  ROOM(le_request_view) view;
  size_t view_size = END_OF(le_request_view, body_changed);
  CHECK(view_size < sizeof view.value); /* the tail padding this test watches */
  PREPARE(view, view_size);
  CHECK_EQ(le_request_inspect(request, &view.value), LE_OK);
  CHECK_EQ(view.value.size, view_size);
  CHECK_STR(view.value.path, "/p");
  CHECK_STR(view.value.body, "");
  CHECK(!view.value.body_changed);
  CHECK(all_bytes(view.bytes, view_size, sizeof view.bytes, 0xAB));

  ROOM(le_body_chunk) chunk;
  size_t chunk_size = END_OF(le_body_chunk, eof);
  CHECK(chunk_size < sizeof chunk.value);
  PREPARE(chunk, chunk_size);
  le_error *err = NULL;
  CHECK_EQ(le_request_body_filter(request, filter, le_s("abc"), true, &chunk.value, &err), LE_STATUS_OK);
  CHECK_STR(chunk.value.data, "ABC");
  CHECK(chunk.value.eof);
  CHECK(all_bytes(chunk.bytes, chunk_size, sizeof chunk.bytes, 0xAB));

  ROOM(le_stats) stats;
  size_t stats_size = END_OF(le_stats, workers);
  CHECK(stats_size < sizeof stats.value);
  PREPARE(stats, stats_size);
  CHECK_EQ(le_engine_stats(engine, &stats.value), LE_OK);
  CHECK_EQ(stats.value.workers, 1);
  CHECK(all_bytes(stats.bytes, stats_size, sizeof stats.bytes, 0xAB));

  le_request_free(request);
  le_script_free(filter);
  le_script_free(content);
  le_engine_free(engine);
}

/* A host built against a newer header, whose structs have fields this library lacks: those
 * read as zero, the bytes past its size stay as they were, and what it passes in is accepted. */
static void a_bigger_size_gets_the_fields_this_library_lacks_zeroed(void) {
  ROOM(le_config) config;
  size_t bigger = sizeof config.value + 16;
  memset(config.bytes, 0xAB, sizeof config.bytes);
  CHECK_EQ(le_config_init(&config.value, bigger), LE_OK);
  CHECK_EQ(config.value.size, bigger);
  CHECK_EQ(config.value.log_level, LE_LOG_DEBUG);
  CHECK(all_bytes(config.bytes, sizeof config.value, bigger, 0));
  CHECK(all_bytes(config.bytes, bigger, sizeof config.bytes, 0xAB));
  config.value.workers = 1;
  config.value.log_level = LE_LOG_CRIT;
  memset(config.bytes + sizeof config.value, 0x5A, 16); /* the newer fields, set: not read */
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config.value, &engine);
  CHECK_EQ(le_engine_worker_count(engine), 1);

  ROOM(le_request_init) init;
  memset(init.bytes, 0x5A, sizeof init.bytes);
  memset(&init.value, 0, sizeof init.value);
  init.value.size = sizeof init.value + 16;
  init.value.path = le_s("/newer");
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init.value, LE_WORKER_ANY, &request);
  le_script *content = le_test_compile(engine, "content", "ngx.say(ngx.var.uri)");
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);

  ROOM(le_response_view) view;
  PREPARE(view, sizeof view.value + 16);
  CHECK_EQ(le_request_response(request, &view.value), LE_OK);
  CHECK_EQ(view.value.size, sizeof view.value + 16);
  CHECK_STR(view.value.body, "/newer\n");
  CHECK(all_bytes(view.bytes, sizeof view.value, sizeof view.value + 16, 0));
  CHECK(all_bytes(view.bytes, sizeof view.value + 16, sizeof view.bytes, 0xAB));

  ROOM(le_worker_stats) stats;
  PREPARE(stats, sizeof stats.value + 16);
  CHECK_EQ(le_engine_worker_stats(engine, 0, &stats.value), LE_OK);
  CHECK(all_bytes(stats.bytes, sizeof stats.value, sizeof stats.value + 16, 0));
  CHECK(all_bytes(stats.bytes, sizeof stats.value + 16, sizeof stats.bytes, 0xAB));

  le_request_free(request);
  le_script_free(content);
  le_engine_free(engine);
}

/* A size too small for any version (an unset one, typically) is refused, nothing written. */
static void a_size_smaller_than_any_version_is_refused(void) {
  le_config config = le_config_default();
  config.size = offsetof(le_config, timer_op_user_data);
  le_engine *engine = NULL;
  le_error *err = EXPECT_ERROR(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  CHECKF(le_str_contains(le_error_message(err), "le_config.size is") &&
             le_str_contains(le_error_message(err), "sizeof(le_config)"),
         "%.*s", (int)le_error_message(err).len, (const char *)le_error_message(err).ptr);
  le_error_free(err);
  CHECK(engine == NULL);

  ROOM(le_config) raw;
  memset(raw.bytes, 0xAB, sizeof raw.bytes);
  CHECK_EQ(le_config_init(&raw.value, sizeof(size_t)), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_config_init(NULL, sizeof raw.value), LE_ERR_INVALID_ARGUMENT);
  CHECK(all_bytes(raw.bytes, 0, sizeof raw.bytes, 0xAB));

  engine = le_test_engine(1);
  le_request_init init;
  memset(&init, 0, sizeof init); /* the size left 0 */
  le_request *request = NULL;
  err = EXPECT_ERROR(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &request);
  CHECK(le_str_contains(le_error_message(err), "le_request_init.size is 0"));
  le_error_free(err);
  CHECK(request == NULL);

  le_script *filter = le_test_compile(engine, "body_filter", "ngx.arg[1] = 'ran'");
  request = le_test_request(engine, "/", NULL, 0);
  le_response_view view;
  memset(&view, 0xAB, sizeof view);
  view.size = 0;
  CHECK_EQ(le_request_response(request, &view), LE_ERR_INVALID_ARGUMENT);
  CHECK(all_bytes((const unsigned char *)&view, sizeof view.size, sizeof view, 0xAB));
  le_request_view request_view = {.size = offsetof(le_request_view, body_changed)};
  CHECK_EQ(le_request_inspect(request, &request_view), LE_ERR_INVALID_ARGUMENT);
  le_stats stats = {.size = 4};
  CHECK_EQ(le_engine_stats(engine, &stats), LE_ERR_INVALID_ARGUMENT);
  le_worker_stats worker_stats = {.size = 0};
  CHECK_EQ(le_engine_worker_stats(engine, 0, &worker_stats), LE_ERR_INVALID_ARGUMENT);
  /* The filter does not run for an answer it could not write. */
  le_body_chunk chunk = {.size = 0};
  err = NULL;
  CHECK_EQ(le_request_body_filter(request, filter, le_s("x"), true, &chunk, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_ARGUMENT);
  CHECK(le_str_contains(le_error_message(err), "le_body_chunk.size is 0"));
  le_error_free(err);
  chunk.size = sizeof chunk;
  CHECK_EQ(le_request_body_filter(request, filter, le_s("x"), true, &chunk, &err), LE_STATUS_OK);
  CHECK_STR(chunk.data, "ran");

  le_request_free(request);
  le_script_free(filter);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(the_version_macros_are_the_librarys),
    TEST_CASE(a_smaller_size_gets_only_the_fields_it_covers),
    TEST_CASE(a_bigger_size_gets_the_fields_this_library_lacks_zeroed),
    TEST_CASE(a_size_smaller_than_any_version_is_refused))
