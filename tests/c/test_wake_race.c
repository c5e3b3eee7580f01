/*
 * Wakes racing the calls that return. Host threads run requests whose sleeps complete while
 * le_request_run is still returning (the first wake is held back until the run has released
 * the request), and the wake callback, on the clock thread, resumes the request and frees it
 * there, or frees it at once. Nothing may touch a request once the call using it has released
 * it: ctest runs this under valgrind, and natively with MALLOC_PERTURB_ so that a read of a
 * freed request follows garbage pointers. Bounded by a few seconds (of valgrind's time too).
 * The window such a bug leaves is a few instructions wide, so a run finds it only now and then;
 * widened by a 50 us sleep, it made every run fail.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "le_test.h"

/* In flight at once: well under what a worker can keep suspended (a few thousand). */
enum { HOST_THREADS = 6, MAX_REQUESTS_PER_THREAD = 3000, MAX_IN_FLIGHT = 48 };
static const double CREATE_SECONDS = 2.0; /* then the threads stop starting requests */

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static atomic_int started, finished, failures;

static void sleep_100us(void) {
  struct timespec t = {0, 100000L};
  nanosleep(&t, NULL);
}

/* Resumes the request until its phase is done, then frees it: all on the clock thread. */
static void resume_then_free(le_request *request, void *user_data) {
  (void)user_data;
  le_error *err = NULL;
  le_status status = le_request_resume(request, &err);
  if (status == LE_STATUS_YIELD) return; /* more sleeps to come */
  if (status != LE_STATUS_DONE || !le_str_eq(le_test_response(request).body, "ok\n")) {
    le_str m = le_error_message(err);
    fprintf(stderr, "resume returned %d: %.*s\n", (int)status, (int)m.len, m.ptr ? (const char *)m.ptr : "");
    atomic_fetch_add(&failures, 1);
  }
  le_error_free(err);
  le_request_free(request);
  atomic_fetch_add(&finished, 1);
}

/* Frees the request at its first wake, its other sleeps still running. */
static void free_at_once(le_request *request, void *user_data) {
  (void)user_data;
  le_request_free(request);
  atomic_fetch_add(&finished, 1);
}

typedef struct {
  le_engine *engine;
  le_script *scripts[2];
  int index;
} host;

static void *run_requests(void *arg) {
  host *h = arg;
  double deadline = now_seconds() + CREATE_SECONDS;
  for (int i = 0; i < MAX_REQUESTS_PER_THREAD && now_seconds() < deadline; i++) {
    while (atomic_load(&started) - atomic_load(&finished) >= MAX_IN_FLIGHT) sleep_100us();
    le_request *request = le_test_request(h->engine, "/", NULL, 0);
    CHECK_OK(le_request_set_waker, request, (i + h->index) % 3 ? resume_then_free : free_at_once, NULL);
    atomic_fetch_add(&started, 1);
    /* From here on the wake callback owns the request: this thread never touches it again. */
    RUN(request, LE_PHASE_CONTENT, h->scripts[i % 2], LE_STATUS_YIELD);
  }
  return NULL;
}

static void wakes_while_calls_return_never_touch_a_freed_request(void) {
  le_engine *engine = le_test_engine(2);
  /* Several zero sleeps per yield: the first completes while the run is still returning, the
   * next ones right as it releases the request, to a callback that may free it. */
  le_script *scripts[2] = {
      le_test_compile(engine, "content",
                      "local function nap() ngx.sleep(0) end\n"
                      "ngx.thread.spawn(nap) ngx.thread.spawn(nap) ngx.sleep(0) ngx.say('ok')"),
      le_test_compile(engine, "content",
                      "local function nap() ngx.sleep(0) end\n"
                      "ngx.thread.spawn(nap) coroutine.yield() ngx.sleep(0) ngx.say('ok')"),
  };
  atomic_init(&started, 0);
  atomic_init(&finished, 0);
  atomic_init(&failures, 0);
  host hosts[HOST_THREADS];
  pthread_t threads[HOST_THREADS];
  for (int i = 0; i < HOST_THREADS; i++) {
    hosts[i] = (host){engine, {scripts[0], scripts[1]}, i};
    CHECK(pthread_create(&threads[i], NULL, run_requests, &hosts[i]) == 0);
  }
  for (int i = 0; i < HOST_THREADS; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  double deadline = now_seconds() + 60;
  while (atomic_load(&finished) < atomic_load(&started) && now_seconds() < deadline) sleep_100us();
  fprintf(stderr, "%d requests, %d freed by their wake callback\n", atomic_load(&started), atomic_load(&finished));
  CHECK_EQ(atomic_load(&finished), atomic_load(&started));
  CHECK_EQ(atomic_load(&failures), 0);
  le_script_free(scripts[0]);
  le_script_free(scripts[1]);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(wakes_while_calls_return_never_touch_a_freed_request))
