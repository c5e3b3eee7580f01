/*
 * Compiling scripts: inline source, syntax errors, refused binary chunks, argument checks, the
 * code cache, file scripts with reload, and `require` through the configured package path.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp, realpath */
#include <limits.h>
#include <unistd.h>

#include "le_test.h"

static char tmpdir[64];

static void remove_tmpdir(void) {
  rmdir(tmpdir); /* empty unless a test failed: then its files are left to look at */
}

/* A scratch directory for this process, made on first use. */
static const char *scratch_dir(void) {
  if (tmpdir[0] == '\0') {
    strcpy(tmpdir, "/tmp/le_test_XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    atexit(remove_tmpdir);
  }
  return tmpdir;
}

/* scratch_dir()/name, in a static buffer per slot. */
static const char *tmp_path(const char *name) {
  static char paths[4][128];
  scratch_dir();
  static int next;
  char *path = paths[next++ % 4];
  snprintf(path, sizeof paths[0], "%s/%s", tmpdir, name);
  return path;
}

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  CHECK(fputs(text, f) >= 0);
  CHECK(fclose(f) == 0);
}

/* Runs `script` in the content phase of a new request and returns a malloc'ed copy of the body. */
static char *serve_body(le_engine *engine, const le_script *script) {
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  char *body = malloc(view.body.len + 1);
  CHECK(body != NULL);
  if (view.body.len) memcpy(body, view.body.ptr, view.body.len);
  body[view.body.len] = '\0';
  le_request_free(request);
  return body;
}

#define CHECK_BODY(engine, script, want)                          \
  do {                                                            \
    char *body_ = serve_body((engine), (script));                 \
    CHECKF(strcmp(body_, (want)) == 0, "body is \"%s\"", body_);  \
    free(body_);                                                  \
  } while (0)

static void compiles_and_runs(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = le_test_compile(engine, "content", "ngx.say('compiled')");
  CHECK_BODY(engine, script, "compiled\n");
  le_script_free(script);

  /* Sources are pointer + length: nothing after `len` is read. */
  const char *longer = "ngx.say('cut')THIS IS NOT LUA";
  CHECK_OK(le_script_compile, engine, le_s("content"), le_sn(longer, strlen("ngx.say('cut')")), &script);
  CHECK_BODY(engine, script, "cut\n");
  le_script_free(script);

  /* An empty source (NULL with length 0 included) is a script that does nothing. */
  CHECK_OK(le_script_compile, engine, le_s("empty"), le_sn(NULL, 0), &script);
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_ACCESS, script, LE_STATUS_OK);
  le_request_free(request);
  le_script_free(script);

  le_script_free(NULL);
  le_engine_free(engine);
}

static void syntax_errors_name_chunk_and_line(void) {
  le_engine *engine = le_test_engine(1);
  le_script *sentinel = (le_script *)engine;
  le_script *script = sentinel;
  const char *source = "local x = 1\n\nif then\n";
  le_error *err = EXPECT_ERROR(LE_ERR_SYNTAX, le_script_compile, engine, le_s("broken"), le_s(source), &script);
  CHECK(script == sentinel);
  CHECK_STR(le_error_chunk(err), "broken");
  CHECK_EQ(le_error_line(err), 3);
  CHECKF(le_str_contains(le_error_message(err), "broken:3:"), "message: %.*s", (int)le_error_message(err).len,
         (const char *)le_error_message(err).ptr);
  le_error_free(err);

  /* A syntax error on the last line of a script still names that line (the engine wraps the
   * source for its own use; the wrapping must not shift or hide line numbers). */
  err = EXPECT_ERROR(LE_ERR_SYNTAX, le_script_compile, engine, le_s("tail"), le_s("ngx.say(1)\nend"), &script);
  CHECK_STR(le_error_chunk(err), "tail");
  CHECK_EQ(le_error_line(err), 2);
  le_error_free(err);

  /* With err NULL only the code comes back. */
  CHECK_EQ(le_script_compile(engine, le_s("broken"), le_s(source), &script, NULL), LE_ERR_SYNTAX);
  CHECK(script == sentinel);
  le_engine_free(engine);
}

static void binary_chunks_are_refused(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = NULL;
  static const char lua_chunk[] = "\x1bLua\x54\x00\x19\x93\r\n\x1a\n";
  static const char luajit_chunk[] = "\x1bLJ\x02\x00";
  le_error *err =
      EXPECT_ERROR(LE_ERR_SYNTAX, le_script_compile, engine, le_s("bin"), le_sn(lua_chunk, sizeof lua_chunk - 1), &script);
  CHECK(script == NULL);
  le_error_free(err);
  CHECK_FAILS(LE_ERR_SYNTAX, le_script_compile, engine, le_s("bin"), le_sn(luajit_chunk, sizeof luajit_chunk - 1),
              &script);
  CHECK(script == NULL);

  /* Nor can a script load one at run time. */
  le_script *loader =
      le_test_compile(engine, "content", "local f, e = load('\\27Lua') ngx.say(f == nil, ' ', e ~= nil)");
  CHECK_BODY(engine, loader, "true true\n");
  le_script_free(loader);
  le_engine_free(engine);
}

static void bad_arguments(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = NULL;
  /* A name that is not UTF-8. */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, engine, le_s("bad\xff\xfe"), le_s("return"), &script);
  /* NULL pointers with a non-zero length. */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, engine, le_sn(NULL, 4), le_s("return"), &script);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, engine, le_s("content"), le_sn(NULL, 10), &script);
  /* A script needs a name. */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, engine, le_s(""), le_s("return"), &script);
  /* NULL engine and NULL out. */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, NULL, le_s("content"), le_s("return"), &script);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile, engine, le_s("content"), le_s("return"), NULL);
  CHECK(script == NULL);

  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile_file, NULL, le_s("/tmp/x.lua"), &script);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile_file, engine, le_s("/tmp/x.lua"), NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile_file, engine, le_sn(NULL, 3), &script);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_script_compile_file, engine, le_s("/tmp/\xff.lua"), &script);
  CHECK(script == NULL);
  le_engine_free(engine);
}

static void cache_hits_need_same_name_and_source(void) {
  le_engine *engine = le_test_engine(1);
  le_stats before = {.size = sizeof before}, after = {.size = sizeof after};
  CHECK_EQ(le_engine_stats(engine, &before), LE_OK);
  le_script *a = le_test_compile(engine, "n", "return 1");
  le_script *b = le_test_compile(engine, "n", "return 1"); /* hit */
  le_script *c = le_test_compile(engine, "n", "return 2"); /* other source: miss */
  le_script *d = le_test_compile(engine, "m", "return 1"); /* other name: miss */
  CHECK_EQ(le_engine_stats(engine, &after), LE_OK);
  CHECK_EQ(after.cache_hits - before.cache_hits, 1);
  CHECK_EQ(after.cache_misses - before.cache_misses, 3);
  CHECK_EQ(after.scripts_compiled - before.scripts_compiled, 3);
  le_script_free(a);
  le_script_free(b);
  le_script_free(c);
  le_script_free(d);

  /* The bytecode is kept after its handles are freed: compiling it again does not parse. */
  le_script *e = le_test_compile(engine, "n", "return 1");
  CHECK_EQ(le_engine_stats(engine, &after), LE_OK);
  CHECK_EQ(after.cache_hits - before.cache_hits, 2);
  CHECK_EQ(after.scripts_compiled - before.scripts_compiled, 3);
  le_script_free(e);
  le_engine_free(engine);
}

static void file_scripts_follow_their_file(void) {
  le_config config = le_config_default();
  config.workers = 1;
  config.log_level = LE_LOG_CRIT;
  config.file_check_interval_ms = 3600 * 1000; /* only le_engine_reload checks */
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);

  const char *path = tmp_path("content.lua");
  char real[PATH_MAX];
  write_file(path, "ngx.say('v1')\n");
  CHECK(realpath(path, real) != NULL);
  le_script *script = NULL;
  CHECK_OK(le_script_compile_file, engine, le_s(path), &script);
  CHECK_BODY(engine, script, "v1\n");

  /* A request that started before the change finishes on the version it started with. */
  write_file(tmp_path("slow.lua"), "coroutine.yield() ngx.say('old')\n");
  le_script *slow = NULL;
  CHECK_OK(le_script_compile_file, engine, le_s(tmp_path("slow.lua")), &slow);
  le_request *in_flight = le_test_request(engine, "/", NULL, 0);
  RUN(in_flight, LE_PHASE_CONTENT, slow, LE_STATUS_YIELD);

  /* Rewritten (another size, so the change shows even with coarse mtimes): not yet seen. */
  write_file(path, "ngx.say('version 2')\n");
  write_file(tmp_path("slow.lua"), "ngx.say('new')\n");
  CHECK_BODY(engine, script, "v1\n");

  size_t reloaded = 0;
  CHECK_OK(le_engine_reload, engine, &reloaded);
  CHECK_EQ(reloaded, 2);
  CHECK_BODY(engine, script, "version 2\n");
  RESUME(in_flight, LE_STATUS_DONE);
  CHECK_STR(le_test_response(in_flight).body, "old\n");
  le_request_free(in_flight);
  CHECK_BODY(engine, slow, "new\n");
  CHECK_OK(le_engine_reload, engine, &reloaded);
  CHECK_EQ(reloaded, 0);

  /* Compiling the same path again returns the live script (a cache hit). */
  le_stats before = {.size = sizeof before}, after = {.size = sizeof after};
  CHECK_EQ(le_engine_stats(engine, &before), LE_OK);
  le_script *again = NULL;
  CHECK_OK(le_script_compile_file, engine, le_s(path), &again);
  CHECK_EQ(le_engine_stats(engine, &after), LE_OK);
  CHECK_EQ(after.cache_hits - before.cache_hits, 1);
  CHECK_BODY(engine, again, "version 2\n");
  le_script_free(again);

  /* A file that stops compiling keeps its last good version, and reload says why. */
  write_file(path, "ngx.say('x')\nlocal = 1\n");
  le_error *err = EXPECT_ERROR(LE_ERR_SYNTAX, le_engine_reload, engine, &reloaded);
  CHECK_STR(le_error_chunk(err), real);
  CHECK_EQ(le_error_line(err), 2);
  le_error_free(err);
  CHECK_BODY(engine, script, "version 2\n");

  /* A file that disappears: an I/O error, the script still runs its last version. */
  CHECK(unlink(path) == 0);
  CHECK_FAILS(LE_ERR_IO, le_engine_reload, engine, &reloaded);
  CHECK_BODY(engine, script, "version 2\n");

  le_script_free(script);
  le_script_free(slow);
  unlink(tmp_path("slow.lua"));
  le_engine_free(engine);
}

/* A changed file is taken once a check finds it unchanged since the last: with no interval, at
 * the second run that sees the change (a file half written is never served). */
static void file_check_interval_zero_checks_every_run(void) {
  le_config config = le_config_default();
  config.workers = 1;
  config.file_check_interval_ms = 0;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  const char *path = tmp_path("auto.lua");
  write_file(path, "ngx.say('a')\n");
  le_script *script = NULL;
  CHECK_OK(le_script_compile_file, engine, le_s(path), &script);
  CHECK_BODY(engine, script, "a\n");
  write_file(path, "ngx.say('bb')\n");
  CHECK_BODY(engine, script, "a\n");
  CHECK_BODY(engine, script, "bb\n");
  le_script_free(script);
  le_engine_free(engine);
  unlink(path);
}

static void missing_and_broken_files(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = NULL;
  le_error *err =
      EXPECT_ERROR(LE_ERR_IO, le_script_compile_file, engine, le_s(tmp_path("does-not-exist.lua")), &script);
  CHECK(script == NULL);
  CHECK(le_str_contains(le_error_message(err), "does-not-exist.lua"));
  le_error_free(err);
  CHECK_FAILS(LE_ERR_IO, le_script_compile_file, engine, le_s(scratch_dir()), &script); /* a directory */

  const char *path = tmp_path("broken.lua");
  char real[PATH_MAX];
  write_file(path, "local a = 1\nlocal b = = 2\n");
  CHECK(realpath(path, real) != NULL);
  err = EXPECT_ERROR(LE_ERR_SYNTAX, le_script_compile_file, engine, le_s(path), &script);
  CHECK(script == NULL);
  CHECK_STR(le_error_chunk(err), real);
  CHECK_EQ(le_error_line(err), 2);
  le_error_free(err);
  unlink(path);

  /* Files are refused as binary chunks too. */
  path = tmp_path("binary.lua");
  write_file(path, "\x1bLJ\x02junk");
  CHECK_FAILS(LE_ERR_SYNTAX, le_script_compile_file, engine, le_s(path), &script);
  unlink(path);
  le_engine_free(engine);
}

static void require_uses_the_package_path(void) {
  write_file(tmp_path("mymod.lua"), "local M = {}\nfunction M.hi() return 'hi from mymod' end\nreturn M\n");
  /* The path array and its strings are the host's: le_engine_new copies them. */
  char *template = malloc(128);
  CHECK(template != NULL);
  snprintf(template, 128, "%s/?.lua", tmpdir);
  le_str *paths = malloc(2 * sizeof *paths);
  CHECK(paths != NULL);
  paths[0] = le_s("/nonexistent/?.lua");
  paths[1] = le_s(template);

  le_config config = le_config_default();
  config.workers = 1;
  config.package_path = paths;
  config.n_package_path = 2;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  memset(template, 'x', 127);
  free(template);
  free(paths);

  le_script *script = le_test_compile(engine, "content", "ngx.say(require('mymod').hi())");
  CHECK_BODY(engine, script, "hi from mymod\n");
  le_script *missing = le_test_compile(engine, "content", "require('no_such_module')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, missing, LE_ERR_RUNTIME);
  CHECK(le_str_contains(le_error_message(err), "no_such_module"));
  le_error_free(err);
  le_request_free(request);
  le_script_free(missing);
  le_script_free(script);
  le_engine_free(engine);
  unlink(tmp_path("mymod.lua"));
}

TEST_MAIN(
    TEST_CASE(compiles_and_runs),
    TEST_CASE(syntax_errors_name_chunk_and_line),
    TEST_CASE(binary_chunks_are_refused),
    TEST_CASE(bad_arguments),
    TEST_CASE(cache_hits_need_same_name_and_source),
    TEST_CASE(file_scripts_follow_their_file),
    TEST_CASE(file_check_interval_zero_checks_every_run),
    TEST_CASE(missing_and_broken_files),
    TEST_CASE(require_uses_the_package_path))
