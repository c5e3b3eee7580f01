/*
 * Versions, configuration, engine creation and destruction, stats, and result names.
 */
#include "le_test.h"

#ifndef LE_EXPECTED_VERSION
#error "LE_EXPECTED_VERSION (the version in Cargo.toml) must be defined by the build"
#endif
#ifndef LE_EXPECTED_BACKEND
#error "LE_EXPECTED_BACKEND (\"LuaJIT\" or \"Lua 5.4\") must be defined by the build"
#endif

static void versions_agree(void) {
  CHECK_EQ(le_abi_version(), LE_ABI_VERSION);
  CHECK(le_version() != NULL);
  CHECKF(strcmp(le_version(), LE_EXPECTED_VERSION) == 0, "le_version() = \"%s\"", le_version());
  CHECK(le_backend() != NULL);
  CHECKF(strcmp(le_backend(), LE_EXPECTED_BACKEND) == 0, "le_backend() = \"%s\"", le_backend());
  /* Static strings: the same pointer every time. */
  CHECK(le_version() == le_version());
  CHECK(le_backend() == le_backend());
}

static void config_defaults(void) {
  le_config config = le_config_default();
  CHECK_EQ(config.workers, 0);
  CHECK(!config.trusted);
  CHECK(config.package_path == NULL);
  CHECK_EQ(config.n_package_path, 0);
  CHECK(config.log == NULL);
  CHECK(config.log_user_data == NULL);
  CHECK_EQ(config.log_level, LE_LOG_DEBUG);
  CHECK_EQ(config.instruction_budget, 0);
  /* Safe by default: a runaway or a bomb cannot take the host down. */
  CHECK_EQ(config.time_budget_ms, 5000);
  CHECK_EQ(config.memory_limit, 512u << 20);
  CHECK(config.coroutine_pool > 0);
  CHECK(config.file_check_interval_ms > 0);
}

static void engine_with_null_config_uses_defaults(void) {
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, NULL, &engine);
  CHECK(engine != NULL);
  /* Default: one worker per CPU. */
  CHECK(le_engine_worker_count(engine) >= 1);
  le_stats stats = {.size = sizeof stats};
  CHECK_EQ(le_engine_stats(engine, &stats), LE_OK);
  CHECK_EQ(stats.workers, le_engine_worker_count(engine));
  le_engine_free(engine);
}

static void engine_with_config(void) {
  le_config config = le_config_default();
  config.workers = 3;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  CHECK_EQ(le_engine_worker_count(engine), 3);
  le_engine_free(engine);
}

static void engine_new_rejects_bad_arguments(void) {
  le_config config = le_config_default();
  le_engine *sentinel = (le_engine *)&config; /* any non-NULL pointer: it must stay untouched */
  le_engine *engine = sentinel;

  /* NULL out: an error object with a message. */
  le_error *err = EXPECT_ERROR(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, NULL);
  CHECK(le_error_message(err).len > 0);
  CHECK_EQ(le_error_line(err), 0);
  CHECK_EQ(le_error_chunk(err).len, 0);
  CHECK_EQ(le_error_traceback(err).len, 0);
  le_error_free(err);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, NULL, NULL);

  /* NULL err is allowed: only the code comes back. */
  CHECK_EQ(le_engine_new(&config, NULL, NULL), LE_ERR_INVALID_ARGUMENT);

  /* A log level that does not exist. */
  config.log_level = LE_LOG_DEBUG + 1;
  err = EXPECT_ERROR(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  CHECKF(le_str_contains(le_error_message(err), "log_level"), "%.*s", (int)le_error_message(err).len,
         (const char *)le_error_message(err).ptr);
  le_error_free(err);
  CHECK(engine == sentinel); /* outputs are written only on success */
  config.log_level = 1000;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  CHECK_EQ(le_engine_new(&config, &engine, NULL), LE_ERR_INVALID_ARGUMENT);
  CHECK(engine == sentinel);
  config = le_config_default();

  /* package_path NULL with a count, and an entry that is not UTF-8. */
  config.n_package_path = 2;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  le_str bad_path[1] = {le_s("/srv/\xff\xfe/?.lua")};
  config.package_path = bad_path;
  config.n_package_path = 1;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  le_str null_path[1] = {{NULL, 4}};
  config.package_path = null_path;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  config = le_config_default();

  /* An absurd worker count is a configuration mistake, not an attempt to create it. */
  config.workers = 100000;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_new, &config, &engine);
  CHECK(engine == sentinel);
}

static void null_handles_are_harmless(void) {
  le_engine_free(NULL);
  CHECK_EQ(le_engine_worker_count(NULL), 0);
  le_stats stats = {.size = sizeof stats};
  le_worker_stats wstats = {.size = sizeof wstats};
  CHECK_EQ(le_engine_stats(NULL, &stats), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_engine_worker_stats(NULL, 0, &wstats), LE_ERR_INVALID_ARGUMENT);
  size_t reloaded = 77;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_reload, NULL, &reloaded);
  CHECK_EQ(reloaded, 77);
  CHECK_EQ(le_engine_reload(NULL, NULL, NULL), LE_ERR_INVALID_ARGUMENT);

  le_engine *engine = le_test_engine(1);
  CHECK_EQ(le_engine_stats(engine, NULL), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_engine_worker_stats(engine, 0, NULL), LE_ERR_INVALID_ARGUMENT);
  le_engine_free(engine);
}

static void stats_count_compiles_and_phases(void) {
  le_engine *engine = le_test_engine(2);
  le_stats s0 = {.size = sizeof s0}, s1 = {.size = sizeof s1};
  CHECK_EQ(le_engine_stats(engine, &s0), LE_OK);
  CHECK_EQ(s0.workers, 2);
  CHECK_EQ(s0.scripts_compiled, 0);
  CHECK_EQ(s0.cache_hits, 0);
  CHECK_EQ(s0.cache_misses, 0);
  CHECK_EQ(s0.phases_run, 0);
  CHECK_EQ(s0.errors, 0);

  /* The same name and source twice: one parse, one hit. */
  le_script *a = le_test_compile(engine, "content", "ngx.say('a')");
  le_script *b = le_test_compile(engine, "content", "ngx.say('a')");
  CHECK(a != b); /* two handles, each freed on its own */
  CHECK_EQ(le_engine_stats(engine, &s1), LE_OK);
  CHECK_EQ(s1.scripts_compiled, 1);
  CHECK_EQ(s1.cache_misses, 1);
  CHECK_EQ(s1.cache_hits, 1);
  /* Another name is another chunk: a miss. */
  le_script *c = le_test_compile(engine, "other", "ngx.say('a')");
  CHECK_EQ(le_engine_stats(engine, &s1), LE_OK);
  CHECK_EQ(s1.scripts_compiled, 2);
  CHECK_EQ(s1.cache_misses, 2);
  CHECK_EQ(s1.cache_hits, 1);

  /* Phases and errors, per worker. */
  le_worker_stats w0 = {.size = sizeof w0}, w1 = {.size = sizeof w1};
  CHECK_EQ(le_engine_worker_stats(engine, 0, &w0), LE_OK);
  CHECK_EQ(le_engine_worker_stats(engine, 1, &w1), LE_OK);
  CHECK(w0.lua_memory > 0);
  CHECK_EQ(w0.functions_loaded, 0);
  CHECK_EQ(w1.functions_loaded, 0);

  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  le_request *r = NULL;
  CHECK_OK(le_request_new, engine, &init, 0, &r); /* worker 0 */
  RUN(r, LE_PHASE_CONTENT, a, LE_STATUS_DONE);
  le_request_free(r);
  CHECK_OK(le_request_new, engine, &init, 3, &r); /* 3 % 2 = worker 1 */
  RUN(r, LE_PHASE_CONTENT, b, LE_STATUS_DONE);
  le_script *boom = le_test_compile(engine, "boom", "error('boom')");
  le_error *err = RUN_FAILS(r, LE_PHASE_LOG, boom, LE_ERR_RUNTIME);
  le_error_free(err);
  le_request_free(r);

  CHECK_EQ(le_engine_stats(engine, &s1), LE_OK);
  CHECK_EQ(s1.phases_run, 3);
  CHECK_EQ(s1.errors, 1);
  CHECK_EQ(le_engine_worker_stats(engine, 0, &w0), LE_OK);
  CHECK_EQ(le_engine_worker_stats(engine, 1, &w1), LE_OK);
  CHECK_EQ(w0.functions_loaded, 1);
  CHECK_EQ(w1.functions_loaded, 2);
  CHECK(w0.pooled_coroutines >= 1); /* its only run finished: the coroutine is kept */
  CHECK(w1.lua_memory > 0);

  /* Worker index out of range. */
  le_worker_stats untouched;
  memset(&untouched, 0x5A, sizeof untouched);
  untouched.size = sizeof untouched;
  CHECK_EQ(le_engine_worker_stats(engine, 2, &untouched), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_engine_worker_stats(engine, UINT32_MAX, &untouched), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(untouched.functions_loaded, 0x5A5A5A5A5A5A5A5AULL);

  le_script_free(a);
  le_script_free(b);
  le_script_free(c);
  le_script_free(boom);
  le_engine_free(engine);
}

static void reload_without_file_scripts(void) {
  le_engine *engine = le_test_engine(1);
  size_t reloaded = 99;
  CHECK_OK(le_engine_reload, engine, &reloaded);
  CHECK_EQ(reloaded, 0);
  CHECK_EQ(le_engine_reload(engine, NULL, NULL), LE_OK);
  le_engine_free(engine);
}

static void scripts_and_requests_outlive_the_engine(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = le_test_compile(engine, "content", "ngx.say('still here')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_engine_free(engine);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  CHECK_STR(view.body, "still here\n");
  le_request_free(request);
  le_script_free(script);
}

static void trusted_engines_see_the_standard_library(void) {
  le_config config = le_config_default();
  config.workers = 1;
  le_engine *sandboxed = NULL, *trusted = NULL;
  CHECK_OK(le_engine_new, &config, &sandboxed);
  config.trusted = true;
  CHECK_OK(le_engine_new, &config, &trusted);
  const char *source = "ngx.say(type(io), ' ', type(os.execute), ' ', type(string.format))";
  le_script *s1 = le_test_compile(sandboxed, "content", source);
  le_script *s2 = le_test_compile(trusted, "content", source);

  le_request *r = le_test_request(sandboxed, "/", NULL, 0);
  RUN(r, LE_PHASE_CONTENT, s1, LE_STATUS_DONE);
  CHECK_STR(le_test_response(r).body, "nil nil function\n");
  le_request_free(r);

  r = le_test_request(trusted, "/", NULL, 0);
  RUN(r, LE_PHASE_CONTENT, s2, LE_STATUS_DONE);
  CHECK_STR(le_test_response(r).body, "table function function\n");
  le_request_free(r);

  le_script_free(s1);
  le_script_free(s2);
  le_engine_free(sandboxed);
  le_engine_free(trusted);
}

static void result_names(void) {
  static const char *const names[] = {
      "LE_OK",          "LE_ERR_INVALID_ARGUMENT", "LE_ERR_INVALID_STATE", "LE_ERR_SYNTAX", "LE_ERR_RUNTIME",
      "LE_ERR_BUDGET",  "LE_ERR_MEMORY",           "LE_ERR_IO",            "LE_ERR_ABORTED", "LE_ERR_INTERNAL",
  };
  const le_result codes[] = {LE_OK,          LE_ERR_INVALID_ARGUMENT, LE_ERR_INVALID_STATE, LE_ERR_SYNTAX,
                             LE_ERR_RUNTIME, LE_ERR_BUDGET,           LE_ERR_MEMORY,        LE_ERR_IO,
                             LE_ERR_ABORTED, LE_ERR_INTERNAL};
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    CHECK_EQ(codes[i], i);
    CHECKF(strcmp(le_result_name((uint32_t)codes[i]), names[i]) == 0, "le_result_name(%zu) = %s", i,
           le_result_name((uint32_t)codes[i]));
  }
  CHECK(strcmp(le_result_name(10), "LE_UNKNOWN") == 0);
  CHECK(strcmp(le_result_name(UINT32_MAX), "LE_UNKNOWN") == 0);
}

TEST_MAIN(
    TEST_CASE(versions_agree),
    TEST_CASE(config_defaults),
    TEST_CASE(engine_with_null_config_uses_defaults),
    TEST_CASE(engine_with_config),
    TEST_CASE(engine_new_rejects_bad_arguments),
    TEST_CASE(null_handles_are_harmless),
    TEST_CASE(stats_count_compiles_and_phases),
    TEST_CASE(reload_without_file_scripts),
    TEST_CASE(scripts_and_requests_outlive_the_engine),
    TEST_CASE(trusted_engines_see_the_standard_library),
    TEST_CASE(result_names))
