/*
 * One engine shared by host threads: scripts compiled on one thread run on others, requests are
 * created, run and freed concurrently, and a suspended request is resumed on another thread.
 */
#include <pthread.h>

#include "le_test.h"

#define THREADS 4
#define REQUESTS_PER_THREAD 100

typedef struct {
  le_engine *engine;
  le_script *access;
  le_script *content;
  int index;
} worker_args;

static void *serve_many(void *arg) {
  worker_args *w = arg;
  char token[32], path[32], want[64];
  for (int i = 0; i < REQUESTS_PER_THREAD; i++) {
    snprintf(path, sizeof path, "/t%d/%d", w->index, i);
    snprintf(token, sizeof token, "%s", (i % 5 == 0) ? "nope" : "secret");
    le_header headers[2] = {{le_s("X-Token"), le_s(token)}, {le_s("Host"), le_s("example.com")}};
    /* Odd threads pin their requests to a worker, even ones take any. */
    uint32_t hint = (w->index % 2) ? (uint32_t)w->index : LE_WORKER_ANY;
    le_request_init init;
    memset(&init, 0, sizeof init);
    init.size = sizeof init;
    init.path = le_s(path);
    init.headers = headers;
    init.n_headers = 2;
    le_request *request = NULL;
    CHECK_OK(le_request_new, w->engine, &init, hint, &request);
    if (i % 5 == 0) {
      RUN(request, LE_PHASE_ACCESS, w->access, LE_STATUS_DONE);
      CHECK_EQ(le_test_response(request).status, 403);
    } else {
      RUN(request, LE_PHASE_ACCESS, w->access, LE_STATUS_OK);
      RUN(request, LE_PHASE_CONTENT, w->content, LE_STATUS_DONE);
      snprintf(want, sizeof want, "hello u1 %s\n", path);
      CHECK_STR(le_test_response(request).body, want);
    }
    le_request_free(request);
  }
  return NULL;
}

static void concurrent_requests(void) {
  le_engine *engine = le_test_engine(2);
  le_script *access = le_test_compile(
      engine, "access",
      "local h = ngx.req.get_headers(); if h[\"x-token\"] ~= \"secret\" then return ngx.exit(403) end; "
      "ngx.ctx.user = \"u1\"");
  le_script *content = le_test_compile(engine, "content", "ngx.say(\"hello \", ngx.ctx.user, \" \", ngx.var.uri)");
  pthread_t threads[THREADS];
  worker_args args[THREADS];
  for (int i = 0; i < THREADS; i++) {
    args[i] = (worker_args){engine, access, content, i};
    CHECK(pthread_create(&threads[i], NULL, serve_many, &args[i]) == 0);
  }
  for (int i = 0; i < THREADS; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  le_stats stats = {.size = sizeof stats};
  CHECK_EQ(le_engine_stats(engine, &stats), LE_OK);
  CHECK_EQ(stats.errors, 0);
  /* Per thread: 20 denied (one phase), 80 allowed (two phases). */
  CHECK_EQ(stats.phases_run, THREADS * (20 + 80 * 2));
  le_script_free(access);
  le_script_free(content);
  le_engine_free(engine);
}

typedef struct {
  le_request *request;
} resume_args;

static void *resume_elsewhere(void *arg) {
  resume_args *r = arg;
  RESUME(r->request, LE_STATUS_DONE);
  return NULL;
}

static void resume_on_another_thread(void) {
  le_engine *engine = le_test_engine(1);
  le_script *script = le_test_compile(engine, "content", "ngx.ctx.a = 'x' coroutine.yield() ngx.say(ngx.ctx.a, 'y')");
  for (int i = 0; i < 10; i++) {
    le_request *request = le_test_request(engine, "/", NULL, 0);
    RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
    resume_args args = {request};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, resume_elsewhere, &args) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK_STR(le_test_response(request).body, "xy\n");
    le_request_free(request);
  }
  le_script_free(script);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(concurrent_requests),
    TEST_CASE(resume_on_another_thread))
