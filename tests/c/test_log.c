/*
 * The log callback: what a record carries, level filtering, records from failures and from the
 * engine itself, and freeing a request from inside the callback while its phase runs.
 */
#define _XOPEN_SOURCE 700 /* mkdtemp */
#include <unistd.h>

#include "le_test.h"

#define MAX_RECORDS 16

typedef struct {
  le_log_level level;
  int32_t phase;
  char location[128];
  char message[1024];
  uint64_t request_id;
} record_copy;

/* What the callback's user_data points at. */
typedef struct {
  record_copy records[MAX_RECORDS];
  int count;
  le_request *free_on_message; /* freed when a record says "free me" */
  int freed;
} capture;

static void copy_str(char *dst, size_t size, le_str s) {
  size_t n = s.len < size - 1 ? s.len : size - 1;
  if (n) memcpy(dst, s.ptr, n);
  dst[n] = '\0';
}

static void on_log(void *user_data, const le_log_record *record) {
  capture *cap = user_data;
  CHECK(record != NULL);
  if (cap->count < MAX_RECORDS) {
    record_copy *copy = &cap->records[cap->count];
    copy->level = record->level;
    copy->phase = record->phase;
    copy_str(copy->location, sizeof copy->location, record->location);
    copy_str(copy->message, sizeof copy->message, record->message);
    copy->request_id = record->request_id;
  }
  cap->count++;
  if (cap->free_on_message != NULL && le_str_eq(record->message, "free me")) {
    le_request_free(cap->free_on_message); /* takes effect when the phase returns */
    cap->free_on_message = NULL;
    cap->freed++;
  }
}

static le_engine *logging_engine(capture *cap, le_log_level level, uint32_t file_check_interval_ms) {
  memset(cap, 0, sizeof *cap);
  le_config config = le_config_default();
  config.workers = 1;
  config.log = on_log;
  config.log_user_data = cap;
  config.log_level = level;
  config.file_check_interval_ms = file_check_interval_ms;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  return engine;
}

static void records_carry_level_phase_location_and_request(void) {
  capture cap;
  le_engine *engine = logging_engine(&cap, LE_LOG_DEBUG, 1000);
  le_script *script = le_test_compile(engine, "content",
                                      "ngx.log(ngx.ERR, 'first')\n"
                                      "ngx.log(ngx.WARN, 'x=', 1, ' ', nil, ' ', true)\n"
                                      "print('from print')\n");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  uint64_t id = le_request_id(request);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  CHECK_EQ(cap.count, 3);

  CHECK_EQ(cap.records[0].level, LE_LOG_ERR);
  CHECK_EQ(cap.records[0].phase, LE_PHASE_CONTENT);
  CHECKF(strcmp(cap.records[0].location, "content:1") == 0, "location %s", cap.records[0].location);
  CHECKF(strcmp(cap.records[0].message, "first") == 0, "message %s", cap.records[0].message);
  CHECK_EQ(cap.records[0].request_id, id);

  CHECK_EQ(cap.records[1].level, LE_LOG_WARN);
  CHECKF(strcmp(cap.records[1].location, "content:2") == 0, "location %s", cap.records[1].location);
  CHECKF(strcmp(cap.records[1].message, "x=1 nil true") == 0, "message %s", cap.records[1].message);

  CHECK_EQ(cap.records[2].level, LE_LOG_NOTICE);
  CHECKF(strcmp(cap.records[2].location, "content:3") == 0, "location %s", cap.records[2].location);
  CHECKF(strcmp(cap.records[2].message, "from print") == 0, "message %s", cap.records[2].message);
  le_request_free(request);

  /* Other phases say so. */
  le_script *access = le_test_compile(engine, "access", "ngx.log(ngx.INFO, 'in access')");
  request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_ACCESS, access, LE_STATUS_OK);
  CHECK_EQ(cap.count, 4);
  CHECK_EQ(cap.records[3].phase, LE_PHASE_ACCESS);
  CHECK_EQ(cap.records[3].level, LE_LOG_INFO);
  CHECK_EQ(cap.records[3].request_id, le_request_id(request));
  le_request_free(request);

  le_script_free(access);
  le_script_free(script);
  le_engine_free(engine);
}

static void records_above_the_level_are_dropped(void) {
  capture cap;
  le_engine *engine = logging_engine(&cap, LE_LOG_WARN, 1000);
  le_script *script = le_test_compile(engine, "content",
                                      "ngx.log(ngx.DEBUG, 'd') ngx.log(ngx.INFO, 'i') print('n')\n"
                                      "ngx.log(ngx.WARN, 'w') ngx.log(ngx.ERR, 'e') ngx.log(ngx.STDERR, 's')\n");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  CHECK_EQ(cap.count, 3);
  CHECK(strcmp(cap.records[0].message, "w") == 0);
  CHECK(strcmp(cap.records[1].message, "e") == 0);
  CHECK(strcmp(cap.records[2].message, "s") == 0);
  CHECK_EQ(cap.records[2].level, LE_LOG_STDERR);
  le_request_free(request);

  /* A level ngx.log does not know is the script's error. */
  le_script *bad = le_test_compile(engine, "content", "ngx.log(42, 'x')");
  request = le_test_request(engine, "/", NULL, 0);
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, bad, LE_ERR_RUNTIME);
  CHECK(le_str_contains(le_error_message(err), "bad argument #1 to 'log'"));
  le_error_free(err);
  le_request_free(request);
  le_script_free(bad);
  le_script_free(script);
  le_engine_free(engine);
}

static void failures_are_logged(void) {
  capture cap;
  le_engine *engine = logging_engine(&cap, LE_LOG_ERR, 1000);
  le_script *script = le_test_compile(engine, "content", "local a = 1\nerror('oops')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, script, LE_ERR_RUNTIME);
  le_error_free(err);
  CHECK_EQ(cap.count, 1);
  CHECK_EQ(cap.records[0].level, LE_LOG_ERR);
  CHECK_EQ(cap.records[0].phase, LE_PHASE_CONTENT);
  CHECK_EQ(cap.records[0].request_id, le_request_id(request));
  CHECKF(strcmp(cap.records[0].location, "content:2") == 0, "location %s", cap.records[0].location);
  CHECKF(strstr(cap.records[0].message, "content:2: oops") != NULL, "message %s", cap.records[0].message);
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
}

static void engine_records_have_no_phase_or_request(void) {
  char dir[] = "/tmp/le_test_XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[64];
  snprintf(path, sizeof path, "%s/c.lua", dir);
  FILE *f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("ngx.say('good')\n", f);
  CHECK(fclose(f) == 0);

  capture cap;
  le_engine *engine = logging_engine(&cap, LE_LOG_DEBUG, 0); /* check the file on every run */
  le_script *script = NULL;
  CHECK_OK(le_script_compile_file, engine, le_s(path), &script);
  f = fopen(path, "w");
  CHECK(f != NULL);
  fputs("ngx.say('broken'\n", f);
  CHECK(fclose(f) == 0);

  /* The run uses the last good version; once the change settled (a check later), the engine
   * tries the new one and logs why it keeps the old. */
  le_request *settling = le_test_request(engine, "/", NULL, 0);
  RUN(settling, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  le_request_free(settling);
  CHECK_EQ(cap.count, 0);
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "good\n");
  CHECK(cap.count >= 1);
  CHECK_EQ(cap.records[0].level, LE_LOG_ERR);
  CHECK_EQ(cap.records[0].phase, -1);
  CHECK_EQ(cap.records[0].request_id, 0);
  CHECKF(strstr(cap.records[0].message, "c.lua") != NULL, "message %s", cap.records[0].message);
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
  CHECK(unlink(path) == 0);
  CHECK(rmdir(dir) == 0);
}

static void free_from_inside_the_callback(void) {
  capture cap;
  le_engine *engine = logging_engine(&cap, LE_LOG_DEBUG, 1000);
  le_script *frees = le_test_compile(engine, "content",
                                     "ngx.ctx.big = string.rep('y', 50000)\n"
                                     "ngx.log(ngx.ERR, 'free me')\n"
                                     "ngx.say('after the free')\n"
                                     "ngx.log(ngx.ERR, 'still running')\n");
  for (int i = 0; i < 20; i++) {
    int before = cap.count;
    le_request *request = le_test_request(engine, "/", NULL, 0);
    uint64_t id = le_request_id(request);
    cap.free_on_message = request;
    /* The phase finishes normally; the request is released when it returns. Not touched after. */
    RUN(request, LE_PHASE_CONTENT, frees, LE_STATUS_DONE);
    CHECK_EQ(cap.freed, i + 1);
    CHECK_EQ(cap.count, before + 2);
    if (before + 1 < MAX_RECORDS) {
      CHECK_EQ(cap.records[before].request_id, id);
      CHECK_EQ(cap.records[before].phase, LE_PHASE_CONTENT);
      CHECKF(strcmp(cap.records[before].location, "content:2") == 0, "location %s", cap.records[before].location);
      CHECK(strcmp(cap.records[before + 1].message, "still running") == 0);
    }
    if (cap.count > MAX_RECORDS - 4) cap.count = 0;
  }

  /* Freed in the callback, then the phase waits: the wait is cancelled when run returns. */
  le_script *waits = le_test_compile(engine, "access", "ngx.log(ngx.ERR, 'free me') coroutine.yield() ngx.say('never')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  cap.free_on_message = request;
  RUN(request, LE_PHASE_ACCESS, waits, LE_STATUS_YIELD);
  CHECK_EQ(cap.freed, 21);

  /* Freed in the callback of a phase that then fails. */
  le_script *fails = le_test_compile(engine, "content", "ngx.log(ngx.ERR, 'free me') error('after free')");
  request = le_test_request(engine, "/", NULL, 0);
  cap.free_on_message = request;
  le_error *err = RUN_FAILS(request, LE_PHASE_CONTENT, fails, LE_ERR_RUNTIME);
  CHECK(le_str_contains(le_error_message(err), "after free"));
  le_error_free(err);
  CHECK_EQ(cap.freed, 22);

  /* Freed in the callback during ngx.exit's phase. */
  le_script *exits = le_test_compile(engine, "access", "ngx.log(ngx.ERR, 'free me') ngx.exit(403)");
  request = le_test_request(engine, "/", NULL, 0);
  cap.free_on_message = request;
  RUN(request, LE_PHASE_ACCESS, exits, LE_STATUS_DONE);
  CHECK_EQ(cap.freed, 23);

  /* The engine serves the next request normally. */
  le_script *content = le_test_compile(engine, "content", "ngx.say('next')");
  request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "next\n");
  le_request_free(request);

  le_script_free(frees);
  le_script_free(waits);
  le_script_free(fails);
  le_script_free(exits);
  le_script_free(content);
  le_engine_free(engine);
}

/* Inside a callback the host may look at the request that logged: its id is the record's. */
typedef struct {
  le_request *request;
  le_engine *engine;
  le_script *script;
  int calls;
  uint64_t id_seen;
  uint64_t record_id;
  bool suspended_seen;
  le_result response_result;
  le_status same_run, other_run;
  le_result same_code, other_code;
} reentry;

static void on_log_reenter(void *user_data, const le_log_record *record) {
  reentry *r = user_data;
  if (r->request == NULL) return;
  r->calls++;
  r->record_id = record->request_id;
  r->id_seen = le_request_id(r->request);
  r->suspended_seen = le_request_is_suspended(r->request);
  /* Calls that need the request or the worker while the phase runs are refused, not deadlocked. */
  le_response_view view = {.size = sizeof view};
  r->response_result = le_request_response(r->request, &view);
  le_error *err = NULL;
  r->same_run = le_request_run(r->request, LE_PHASE_LOG, r->script, &err);
  r->same_code = le_error_code(err);
  le_error_free(err);
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  le_request *other = NULL;
  CHECK_OK(le_request_new, r->engine, &init, 0, &other); /* the same (only) worker */
  err = NULL;
  r->other_run = le_request_run(other, LE_PHASE_LOG, r->script, &err);
  r->other_code = le_error_code(err);
  le_error_free(err);
  le_request_free(other);
}

static le_engine *reentry_engine(reentry *r) {
  memset(r, 0, sizeof *r);
  le_config config = le_config_default();
  config.workers = 1;
  config.log = on_log_reenter;
  config.log_user_data = r;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  r->engine = engine;
  r->script = le_test_compile(engine, "log", "local x = 1");
  return engine;
}

static void callbacks_see_the_running_request(void) {
  reentry r;
  le_engine *engine = reentry_engine(&r);
  le_script *content = le_test_compile(engine, "content", "ngx.log(ngx.ERR, 'look at me') ngx.say('ok')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  uint64_t id = le_request_id(request);
  r.request = request;
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  r.request = NULL;
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(r.record_id, id);
  CHECK(!r.suspended_seen);
  CHECKF(r.id_seen == id, "le_request_id() inside the request's own log callback is %llu, not %llu",
         (unsigned long long)r.id_seen, (unsigned long long)id);
  le_request_free(request);
  le_script_free(content);
  le_script_free(r.script);
  le_engine_free(engine);
}

static void reentering_the_engine_from_a_callback_is_refused(void) {
  reentry r;
  le_engine *engine = reentry_engine(&r);
  le_script *content = le_test_compile(engine, "content", "ngx.log(ngx.ERR, 'reenter') ngx.say('ok')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  r.request = request;
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  r.request = NULL;
  CHECK_EQ(r.calls, 1);
  CHECK_EQ(r.response_result, LE_ERR_INVALID_STATE);
  CHECK_EQ(r.same_run, LE_STATUS_ERROR);
  CHECK_EQ(r.same_code, LE_ERR_INVALID_STATE);
  CHECK_EQ(r.other_run, LE_STATUS_ERROR);
  CHECK_EQ(r.other_code, LE_ERR_INVALID_STATE);
  /* The phase finished normally and the worker is fine. */
  CHECK_STR(le_test_response(request).body, "ok\n");
  RUN(request, LE_PHASE_LOG, r.script, LE_STATUS_OK);
  le_request_free(request);
  le_script_free(content);
  le_script_free(r.script);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(records_carry_level_phase_location_and_request),
    TEST_CASE(records_above_the_level_are_dropped),
    TEST_CASE(failures_are_logged),
    TEST_CASE(engine_records_have_no_phase_or_request),
    TEST_CASE(free_from_inside_the_callback),
    TEST_CASE(callbacks_see_the_running_request),
    TEST_CASE(reentering_the_engine_from_a_callback_is_refused))
