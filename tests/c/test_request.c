/*
 * Requests as a host drives them: create from one snapshot, run phases, read the response view,
 * exit and redirect, yields and resumes, freeing at awkward moments, and bad arguments.
 */
#include "le_test.h"

static const char *const ACCESS =
    "local h = ngx.req.get_headers(); if h[\"x-token\"] ~= \"secret\" then return ngx.exit(403) end; "
    "ngx.ctx.user = \"u1\"";
static const char *const CONTENT = "ngx.say(\"hello \", ngx.ctx.user, \" \", ngx.var.uri)";

/* Eight headers, as a browser-ish client sends them; `token` is X-Token's value. */
static void eight_headers(le_header out[8], const char *token) {
  const char *pairs[8][2] = {
      {"Host", "example.com"},   {"User-Agent", "le-test/1.0"}, {"Accept", "*/*"},
      {"Accept-Encoding", "gzip"}, {"X-Token", token},            {"X-Request-Id", "abc123"},
      {"Cookie", "a=b"},         {"Connection", "keep-alive"},
  };
  for (int i = 0; i < 8; i++) {
    out[i].name = le_s(pairs[i][0]);
    out[i].value = le_s(pairs[i][1]);
  }
}

static void access_then_content(void) {
  le_engine *engine = le_test_engine(2);
  le_script *access = le_test_compile(engine, "access", ACCESS);
  le_script *content = le_test_compile(engine, "content", CONTENT);
  le_header headers[8];
  eight_headers(headers, "secret");
  le_request *request = le_test_request(engine, "/t", headers, 8);
  CHECK(le_request_id(request) != 0);
  CHECK(!le_request_is_suspended(request));

  /* Nothing produced yet. */
  le_response_view view = le_test_response(request);
  CHECK_EQ(view.status, 0);
  CHECK(!view.headers_sent);
  CHECK(!view.exited);
  CHECK_EQ(view.n_headers, 0);
  CHECK_EQ(view.body.len, 0);

  RUN(request, LE_PHASE_ACCESS, access, LE_STATUS_OK);
  view = le_test_response(request);
  CHECK_EQ(view.status, 0);
  CHECK(!view.headers_sent);

  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  view = le_test_response(request);
  CHECK_EQ(view.status, 200);
  CHECK(view.headers_sent);
  CHECK(!view.exited);
  CHECK_EQ(view.exit_code, 0);
  CHECK_EQ(view.n_headers, 1); /* the default Content-Type */
  CHECK_STR(le_test_header(&view, "Content-Type"), "text/plain");
  CHECK_STR(view.body, "hello u1 /t\n");

  /* Reading the view again gives the same answer. */
  le_response_view again = le_test_response(request);
  CHECK_EQ(again.status, 200);
  CHECK_STR(again.body, "hello u1 /t\n");

  /* Later phases still run on an answered request. */
  le_script *log = le_test_compile(engine, "log", "local s = ngx.status");
  RUN(request, LE_PHASE_LOG, log, LE_STATUS_OK);
  le_request_free(request);
  le_script_free(log);
  le_script_free(access);
  le_script_free(content);
  le_engine_free(engine);
}

static void access_denies_with_403(void) {
  le_engine *engine = le_test_engine(1);
  le_script *access = le_test_compile(engine, "access", ACCESS);
  le_header headers[8];
  eight_headers(headers, "wrong");
  le_request *request = le_test_request(engine, "/t", headers, 8);
  RUN(request, LE_PHASE_ACCESS, access, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  CHECK_EQ(view.status, 403);
  CHECK(view.exited);
  CHECK_EQ(view.exit_code, 403);
  CHECK(!view.headers_sent);
  CHECK_EQ(view.body.len, 0);
  le_request_free(request);

  /* No headers at all: the same. */
  request = le_test_request(engine, "/t", NULL, 0);
  RUN(request, LE_PHASE_ACCESS, access, LE_STATUS_DONE);
  CHECK_EQ(le_test_response(request).status, 403);
  le_request_free(request);
  le_script_free(access);
  le_engine_free(engine);
}

static void redirect_sets_location(void) {
  le_engine *engine = le_test_engine(1);
  le_script *temporary = le_test_compile(engine, "rewrite", "return ngx.redirect('/login?next=' .. ngx.var.uri)");
  le_script *permanent = le_test_compile(engine, "content", "ngx.redirect('https://example.com/', 301)");
  le_request *request = le_test_request(engine, "/t", NULL, 0);
  RUN(request, LE_PHASE_REWRITE, temporary, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  CHECK_EQ(view.status, 302);
  CHECK(view.exited);
  CHECK_EQ(view.exit_code, 302);
  CHECK_EQ(view.n_headers, 1);
  CHECK_STR(view.headers[0].name, "Location");
  CHECK_STR(view.headers[0].value, "/login?next=/t");
  le_request_free(request);

  request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, permanent, LE_STATUS_DONE);
  view = le_test_response(request);
  CHECK_EQ(view.status, 301);
  CHECK_STR(le_test_header(&view, "Location"), "https://example.com/");
  le_request_free(request);
  le_script_free(temporary);
  le_script_free(permanent);
  le_engine_free(engine);
}

static void the_snapshot_is_copied_whole(void) {
  le_engine *engine = le_test_engine(1);
  le_script *content = le_test_compile(
      engine, "content",
      "local h = ngx.req.get_headers()\n"
      "ngx.say(ngx.req.get_method(), ' ', ngx.var.uri, ' ', ngx.var.args, ' ', ngx.var.request_uri)\n"
      "ngx.say(ngx.var.scheme, ' ', ngx.var.remote_addr, ' ', ngx.var.server_protocol)\n"
      "ngx.say((ngx.req.get_body_data()))\n"
      "ngx.say(#h['x-bin'], ' ', type(h.cookie), ' ', h.cookie[1], h.cookie[2], ' ', h.x_dash)");

  /* Everything in host buffers that are overwritten right after le_request_new. */
  char method[] = "POST", path[] = "/api/items", query[] = "a=1&b=2", version[] = "HTTP/2.0";
  char scheme[] = "https", addr[] = "10.0.0.7", body[] = "payload";
  char bin[] = {'a', '\0', 'b', '\xff'};
  char cookie1[] = "c=1", cookie2[] = "d=2", dash[] = "dash";
  le_header headers[4] = {
      {le_s("X-Bin"), le_sn(bin, sizeof bin)},
      {le_s("Cookie"), le_s(cookie1)},
      {le_s("cookie"), le_s(cookie2)},
      {le_s("X-Dash"), le_s(dash)},
  };
  le_request_init init = {
      .size = sizeof init,
      .method = le_s(method),
      .path = le_s(path),
      .query = le_s(query),
      .http_version = le_s(version),
      .scheme = le_s(scheme),
      .remote_addr = le_s(addr),
      .body = le_s(body),
      .headers = headers,
      .n_headers = 4,
      .has_body = true,
  };
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  char *buffers[] = {method, path, query, version, scheme, addr, body, cookie1, cookie2, dash};
  for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) memset(buffers[i], '#', strlen(buffers[i]));
  memset(bin, '#', sizeof bin);
  memset(headers, 0, sizeof headers);

  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body,
            "POST /api/items a=1&b=2 /api/items?a=1&b=2\n"
            "https 10.0.0.7 HTTP/2.0\n"
            "payload\n"
            "4 table c=1d=2 dash\n");
  le_request_free(request);

  /* Empty fields take their documented defaults; without has_body there is no body. */
  le_script *defaults = le_test_compile(
      engine, "content",
      "ngx.say(ngx.req.get_method(), ' ', ngx.var.uri, ' ', tostring(ngx.var.args), ' ', ngx.var.scheme, ' ', "
      "ngx.var.server_protocol, ' ', tostring(ngx.req.get_body_data()))");
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.body = le_s("ignored");
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  RUN(request, LE_PHASE_CONTENT, defaults, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "GET / nil http HTTP/1.1 nil\n");
  le_request_free(request);

  le_script_free(defaults);
  le_script_free(content);
  le_engine_free(engine);
}

/* Functions documented to return one value return exactly one, as in OpenResty: so
 * `ngx.say(ngx.req.get_body_data())` prints the body, not the body followed by "nil". */
static void readers_return_one_value(void) {
  le_engine *engine = le_test_engine(1);
  le_script *content = le_test_compile(
      engine, "content",
      "ngx.say(select('#', ngx.req.get_method()), ' ', select('#', ngx.req.get_body_data()), ' ', "
      "select('#', ngx.req.get_headers()))\n"
      "ngx.say(ngx.req.get_body_data())");
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.body = le_s("payload");
  init.has_body = true;
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "1 1 1\npayload\n");
  le_request_free(request);
  le_script_free(content);
  le_engine_free(engine);
}

static void ctx_and_globals_belong_to_one_request(void) {
  le_engine *engine = le_test_engine(1);
  le_script *set = le_test_compile(engine, "rewrite", "ngx.ctx.n = (ngx.ctx.n or 0) + 1; counter = (counter or 0) + 1");
  le_script *show = le_test_compile(engine, "content", "ngx.say(ngx.ctx.n, ' ', counter)");
  for (int i = 0; i < 3; i++) {
    le_request *request = le_test_request(engine, "/", NULL, 0);
    RUN(request, LE_PHASE_REWRITE, set, LE_STATUS_OK);
    RUN(request, LE_PHASE_REWRITE, set, LE_STATUS_OK);
    RUN(request, LE_PHASE_CONTENT, show, LE_STATUS_DONE);
    CHECK_STR(le_test_response(request).body, "2 2\n");
    le_request_free(request);
  }
  le_script_free(set);
  le_script_free(show);
  le_engine_free(engine);
}

static void ids_are_unique(void) {
  le_engine *engine = le_test_engine(2);
  le_request *a = le_test_request(engine, "/", NULL, 0);
  le_request *b = le_test_request(engine, "/", NULL, 0);
  CHECK(le_request_id(a) != 0);
  CHECK(le_request_id(b) != 0);
  CHECK(le_request_id(a) != le_request_id(b));
  le_request_free(a);
  le_request_free(b);
  le_engine_free(engine);
}

static void unknown_and_non_request_phases(void) {
  le_engine *engine = le_test_engine(1);
  le_script *content = le_test_compile(engine, "content", "ngx.say('ok')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  const le_phase bad[] = {9, 99, UINT32_MAX, LE_PHASE_INIT, LE_PHASE_INIT_WORKER, LE_PHASE_TIMER};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    le_error *err = RUN_FAILS(request, bad[i], content, LE_ERR_INVALID_ARGUMENT);
    CHECK(le_error_message(err).len > 0);
    le_error_free(err);
    CHECK_EQ(le_request_run(request, bad[i], content, NULL), LE_STATUS_ERROR);
  }
  /* The request is unharmed. */
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "ok\n");
  le_request_free(request);

  /* Every request phase accepts a script. */
  le_script *noop = le_test_compile(engine, "noop", "local x = 1");
  const le_phase phases[] = {LE_PHASE_REWRITE, LE_PHASE_ACCESS, LE_PHASE_HEADER_FILTER, LE_PHASE_BODY_FILTER,
                             LE_PHASE_LOG};
  request = le_test_request(engine, "/", NULL, 0);
  for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) RUN(request, phases[i], noop, LE_STATUS_OK);
  RUN(request, LE_PHASE_CONTENT, noop, LE_STATUS_DONE);
  le_request_free(request);
  le_script_free(noop);
  le_script_free(content);
  le_engine_free(engine);
}

static void null_handles(void) {
  le_engine *engine = le_test_engine(1);
  le_script *content = le_test_compile(engine, "content", "ngx.say('ok')");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  le_request *out = NULL;

  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, NULL, &init, LE_WORKER_ANY, &out);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, NULL, LE_WORKER_ANY, &out);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, NULL);
  CHECK_EQ(le_request_new(engine, NULL, 0, &out, NULL), LE_ERR_INVALID_ARGUMENT);
  /* NULL arrays and strings with lengths. */
  init.n_headers = 2;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &out);
  le_header bad_header[1] = {{{NULL, 3}, {(const uint8_t *)"v", 1}}};
  init.headers = bad_header;
  init.n_headers = 1;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &out);
  bad_header[0].name = le_s("x");
  bad_header[0].value = le_sn(NULL, 1);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &out);
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.path = le_sn(NULL, 1);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &out);
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.has_body = true;
  init.body = le_sn(NULL, 5);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_new, engine, &init, LE_WORKER_ANY, &out);
  CHECK(out == NULL);

  le_error *err = RUN_FAILS(NULL, LE_PHASE_CONTENT, content, LE_ERR_INVALID_ARGUMENT);
  le_error_free(err);
  err = RUN_FAILS(request, LE_PHASE_CONTENT, NULL, LE_ERR_INVALID_ARGUMENT);
  le_error_free(err);
  CHECK_EQ(le_request_run(NULL, LE_PHASE_CONTENT, NULL, NULL), LE_STATUS_ERROR);

  err = NULL;
  CHECK_EQ(le_request_resume(NULL, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_ARGUMENT);
  le_error_free(err);
  CHECK_EQ(le_request_resume(NULL, NULL), LE_STATUS_ERROR);

  le_response_view view = {.size = sizeof view};
  CHECK_EQ(le_request_response(NULL, &view), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_request_response(request, NULL), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_request_id(NULL), 0);
  CHECK(!le_request_is_suspended(NULL));
  le_request_free(NULL);

  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  le_request_free(request);
  le_script_free(content);
  le_engine_free(engine);
}

static void yield_and_resume(void) {
  le_engine *engine = le_test_engine(1);
  le_script *waits = le_test_compile(engine, "content",
                                     "ngx.ctx.n = 1\n"
                                     "coroutine.yield()\n"
                                     "ngx.ctx.n = ngx.ctx.n + 1\n"
                                     "coroutine.yield()\n"
                                     "ngx.say('resumed ', ngx.ctx.n)");
  le_script *other = le_test_compile(engine, "log", "local x = 1");
  le_request *request = le_test_request(engine, "/", NULL, 0);

  /* Resuming a request that does not wait is a state error. */
  le_error *err = NULL;
  CHECK_EQ(le_request_resume(request, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_STATE);
  le_error_free(err);

  RUN(request, LE_PHASE_CONTENT, waits, LE_STATUS_YIELD);
  CHECK(le_request_is_suspended(request));
  /* Another phase cannot start while one waits; the waiting one is unaffected. */
  err = RUN_FAILS(request, LE_PHASE_LOG, other, LE_ERR_INVALID_STATE);
  le_error_free(err);
  CHECK(le_request_is_suspended(request));
  le_response_view view = le_test_response(request);
  CHECK(!view.headers_sent);

  /* Other requests run on the same worker meanwhile. */
  le_request *meanwhile = le_test_request(engine, "/", NULL, 0);
  RUN(meanwhile, LE_PHASE_LOG, other, LE_STATUS_OK);
  le_request_free(meanwhile);

  RESUME(request, LE_STATUS_YIELD);
  CHECK(le_request_is_suspended(request));
  RESUME(request, LE_STATUS_DONE);
  CHECK(!le_request_is_suspended(request));
  CHECK_STR(le_test_response(request).body, "resumed 2\n");

  err = NULL;
  CHECK_EQ(le_request_resume(request, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_STATE);
  le_error_free(err);
  /* After the wait, phases run again. */
  RUN(request, LE_PHASE_LOG, other, LE_STATUS_OK);
  le_request_free(request);
  le_script_free(waits);
  le_script_free(other);
  le_engine_free(engine);
}

static void free_while_suspended(void) {
  le_engine *engine = le_test_engine(1);
  le_script *waits = le_test_compile(engine, "access", "ngx.ctx.big = string.rep('x', 100000) coroutine.yield()");
  le_script *content = le_test_compile(engine, "content", CONTENT);
  le_script *access = le_test_compile(engine, "access", ACCESS);
  for (int i = 0; i < 50; i++) {
    le_request *request = le_test_request(engine, "/t", NULL, 0);
    RUN(request, LE_PHASE_ACCESS, waits, LE_STATUS_YIELD);
    CHECK(le_request_is_suspended(request));
    le_request_free(request); /* cancels the wait */
  }
  /* The worker serves the next request normally. */
  le_header headers[8];
  eight_headers(headers, "secret");
  le_request *request = le_test_request(engine, "/t", headers, 8);
  RUN(request, LE_PHASE_ACCESS, access, LE_STATUS_OK);
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "hello u1 /t\n");
  le_request_free(request);

  /* Scripts freed while a request waits in them: the request keeps what it runs. */
  le_script *temporary = le_test_compile(engine, "content", "coroutine.yield() ngx.say('kept')");
  request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, temporary, LE_STATUS_YIELD);
  le_script_free(temporary);
  RESUME(request, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "kept\n");
  le_request_free(request);

  le_script_free(waits);
  le_script_free(content);
  le_script_free(access);
  le_engine_free(engine);
}

static void exit_codes_by_phase(void) {
  le_engine *engine = le_test_engine(1);
  /* ngx.exit(ngx.OK) in access only ends the phase. */
  le_script *ok = le_test_compile(engine, "access", "ngx.exit(ngx.OK) error('not reached')");
  /* ngx.exit(ngx.ERROR) aborts the request. */
  le_script *abort = le_test_compile(engine, "access", "ngx.exit(ngx.ERROR)");
  /* ngx.status + ngx.exit(ngx.HTTP_OK) in content. */
  le_script *status = le_test_compile(engine, "content", "ngx.status = 201 ngx.print('made') ngx.exit(ngx.HTTP_OK)");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_ACCESS, ok, LE_STATUS_OK);
  le_error *err = RUN_FAILS(request, LE_PHASE_ACCESS, abort, LE_ERR_ABORTED);
  le_error_free(err);
  le_request_free(request);

  request = le_test_request(engine, "/", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, status, LE_STATUS_DONE);
  le_response_view view = le_test_response(request);
  CHECK_EQ(view.status, 201);
  CHECK(view.exited);
  CHECK_EQ(view.exit_code, 200);
  CHECK_STR(view.body, "made");
  le_request_free(request);
  le_script_free(ok);
  le_script_free(abort);
  le_script_free(status);
  le_engine_free(engine);
}

static void worker_hint_binds_the_worker(void) {
  le_engine *engine = le_test_engine(3);
  le_script *script = le_test_compile(engine, "content", "ngx.say('w')");
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  /* Hint 5 on three workers is worker 2. */
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, 5, &request);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  le_request_free(request);
  for (uint32_t w = 0; w < 3; w++) {
    le_worker_stats stats = {.size = sizeof stats};
    CHECK_EQ(le_engine_worker_stats(engine, w, &stats), LE_OK);
    CHECK_EQ(stats.functions_loaded, w == 2 ? 1 : 0);
  }
  le_script_free(script);
  le_engine_free(engine);
}

/* The host reads back what rewrite did to the request: uri, args, headers, method, variables. */
static void mutations_are_read_back(void) {
  le_engine *engine = le_test_engine(1);
  le_script *rewrite = le_test_compile(engine, "rewrite",
                                       "ngx.req.set_uri('/v2/users') ngx.req.set_uri_args({page = 3}) "
                                       "ngx.req.set_header('X-User', 'u1') ngx.req.clear_header('Cookie') "
                                       "ngx.req.set_method(ngx.HTTP_POST) ngx.var.backend = 'b1'");
  le_header headers[8];
  eight_headers(headers, "secret");
  le_request *request = le_test_request(engine, "/users", headers, 8);
  le_request_view view = {.size = sizeof view};
  CHECK_EQ(le_request_inspect(request, &view), LE_OK);
  CHECK_STR(view.path, "/users");
  CHECK_EQ(view.n_headers, 8);
  CHECK_EQ(view.n_variables, 0);

  RUN(request, LE_PHASE_REWRITE, rewrite, LE_STATUS_OK);
  CHECK_EQ(le_request_inspect(request, &view), LE_OK);
  CHECK_STR(view.method, "POST");
  CHECK_STR(view.path, "/v2/users");
  CHECK_STR(view.query, "page=3");
  CHECK(!view.location_jump);
  CHECK_EQ(view.n_headers, 8); /* Cookie gone, X-User added */
  bool user = false, cookie = false;
  for (size_t i = 0; i < view.n_headers; i++) {
    if (le_str_eq(view.headers[i].name, "X-User")) user = le_str_eq(view.headers[i].value, "u1");
    if (le_str_eq(view.headers[i].name, "Cookie")) cookie = true;
  }
  CHECK(user && !cookie);
  CHECK_EQ(view.n_variables, 1);
  CHECK_STR(view.variables[0].name, "backend");
  CHECK_STR(view.variables[0].value, "b1");

  CHECK_EQ(le_request_inspect(request, NULL), LE_ERR_INVALID_ARGUMENT);
  CHECK_EQ(le_request_inspect(NULL, &view), LE_ERR_INVALID_ARGUMENT);
  le_request_free(request);
  le_script_free(rewrite);
  le_engine_free(engine);
}

/* The body as scripts left it: the host's untouched (not flagged), or a script's with its
 * Content-Length. */
static void body_changes_are_read_back(void) {
  le_engine *engine = le_test_engine(1);
  le_script *read = le_test_compile(engine, "access", "ngx.req.read_body() ngx.req.set_header('X-Read', '1')");
  le_script *set = le_test_compile(engine, "access", "ngx.req.read_body() ngx.req.set_body_data('changed')");
  le_script *build = le_test_compile(engine, "access",
                                     "ngx.req.init_body() ngx.req.append_body('new') ngx.req.append_body(' body') "
                                     "ngx.req.finish_body()");
  le_header length = {le_s("Content-Length"), le_s("8")};
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.method = le_s("POST");
  init.headers = &length;
  init.n_headers = 1;
  init.body = le_s("original");
  init.has_body = true;

  le_script *scripts[3] = {read, set, build};
  const char *bodies[3] = {"original", "changed", "new body"};
  const char *lengths[3] = {"8", "7", "8"};
  for (int i = 0; i < 3; i++) {
    le_request *request = NULL;
    CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
    RUN(request, LE_PHASE_ACCESS, scripts[i], LE_STATUS_OK);
    le_request_view view = {.size = sizeof view};
    CHECK_EQ(le_request_inspect(request, &view), LE_OK);
    CHECK_STR(view.body, bodies[i]);
    CHECK_EQ(view.body_changed, i > 0);
    CHECK_STR(view.headers[0].name, "Content-Length");
    CHECK_STR(view.headers[0].value, lengths[i]);
    le_request_free(request);
  }

  /* No body from the host and no script: empty, unchanged. */
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_request_view view = {.size = sizeof view};
  CHECK_EQ(le_request_inspect(request, &view), LE_OK);
  CHECK_EQ(view.body.len, 0);
  CHECK(!view.body_changed);
  le_request_free(request);
  le_script_free(read);
  le_script_free(set);
  le_script_free(build);
  le_engine_free(engine);
}

/* Answers $server_name and $upstream_addr; counts lookups. */
static void resolve_variable(void *user_data, const le_variable_lookup *lookup, le_variable_answer *answer) {
  int *lookups = user_data;
  (*lookups)++;
  CHECK(lookup->request_id != 0);
  CHECK_EQ(lookup->phase, LE_PHASE_CONTENT);
  if (le_str_eq(lookup->name, "server_name")) CHECK_OK(le_variable_answer_set, answer, le_s("example.org"));
  if (le_str_eq(lookup->name, "upstream_addr")) CHECK_OK(le_variable_answer_set, answer, le_sn("10.0.0.1\0x", 10));
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_variable_answer_set, NULL, le_s("x"));
}

static void unknown_variables_ask_the_host(void) {
  int lookups = 0;
  le_config config = le_config_default();
  config.workers = 1;
  config.variable = resolve_variable;
  config.variable_user_data = &lookups;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  le_script *content = le_test_compile(engine, "content",
                                       "ngx.say(ngx.var.server_name, ' ', #ngx.var.upstream_addr, ' ', "
                                       "tostring(ngx.var.nope), ' ', ngx.var.uri)");
  le_request *request = le_test_request(engine, "/t", NULL, 0);
  RUN(request, LE_PHASE_CONTENT, content, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "example.org 10 nil /t\n");
  CHECK_EQ(lookups, 3); /* built-in $uri never reaches the host */
  le_request_free(request);
  le_script_free(content);
  le_engine_free(engine);
}

/* The host's own response through header_filter and body_filter, chunk by chunk. */
static void filters_on_the_hosts_response(void) {
  le_engine *engine = le_test_engine(1);
  le_script *header_filter = le_test_compile(engine, "header_filter",
                                             "ngx.header.content_length = nil ngx.header['X-Seen'] = ngx.status");
  le_script *body_filter = le_test_compile(engine, "body_filter",
                                           "ngx.arg[1] = string.upper(ngx.arg[1]) "
                                           "if ngx.arg[2] then ngx.arg[1] = ngx.arg[1] .. '.' end");
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_header upstream[2] = {{le_s("Content-Length"), le_s("11")}, {le_s("Content-Type"), le_s("text/html")}};
  CHECK_OK(le_request_set_response, request, 202, upstream, 2);
  RUN(request, LE_PHASE_HEADER_FILTER, header_filter, LE_STATUS_OK);
  le_response_view view = le_test_response(request);
  CHECK_EQ(view.status, 202);
  CHECK_EQ(view.n_headers, 2);
  CHECK_STR(le_test_header(&view, "Content-Type"), "text/html");
  CHECK_STR(le_test_header(&view, "X-Seen"), "202");

  const char *chunks[2] = {"hello ", "world"};
  char body[32] = "";
  for (int i = 0; i < 2; i++) {
    le_body_chunk out = {.size = sizeof out};
    le_error *err = NULL;
    le_status status = le_request_body_filter(request, body_filter, le_s(chunks[i]), i == 1, &out, &err);
    le_test_status("le_request_body_filter", status, err, LE_STATUS_OK, __FILE__, __LINE__);
    CHECK_EQ(out.eof, i == 1);
    strncat(body, (const char *)out.data.ptr, out.data.len);
  }
  CHECK(strcmp(body, "HELLO WORLD.") == 0);

  le_body_chunk out = {.size = sizeof out};
  le_error *err = NULL;
  CHECK_EQ(le_request_body_filter(request, body_filter, le_s("x"), true, NULL, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_ARGUMENT);
  le_error_free(err);
  err = NULL;
  CHECK_EQ(le_request_body_filter(request, NULL, le_s("x"), true, &out, &err), LE_STATUS_ERROR);
  le_error_free(err);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_set_response, request, 200, NULL, 1);
  le_request_free(request);
  le_script_free(header_filter);
  le_script_free(body_filter);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(filters_on_the_hosts_response),
    TEST_CASE(mutations_are_read_back),
    TEST_CASE(body_changes_are_read_back),
    TEST_CASE(unknown_variables_ask_the_host),
    TEST_CASE(access_then_content),
    TEST_CASE(access_denies_with_403),
    TEST_CASE(redirect_sets_location),
    TEST_CASE(the_snapshot_is_copied_whole),
    TEST_CASE(readers_return_one_value),
    TEST_CASE(ctx_and_globals_belong_to_one_request),
    TEST_CASE(ids_are_unique),
    TEST_CASE(unknown_and_non_request_phases),
    TEST_CASE(null_handles),
    TEST_CASE(yield_and_resume),
    TEST_CASE(free_while_suspended),
    TEST_CASE(exit_codes_by_phase),
    TEST_CASE(worker_hint_binds_the_worker))
