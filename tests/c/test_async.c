/*
 * Waits as a C host drives them (DESIGN.md §5): wake callbacks from the engine's clock thread
 * feed host event loops that resume requests on their own threads, async host functions are
 * completed by the host (here or on another thread), freed requests are never woken, and a
 * resume before the wake runs nothing. The load tests keep their full size under valgrind
 * (seconds there), which runs them with its own thread scheduling.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep, clock_gettime */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "le_test.h"

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* ---- a thread-safe queue: what a host's event loop receives --------------------------------- */

typedef struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  void **items;
  size_t head, count, capacity;
} queue;

static void queue_init(queue *q, size_t capacity) {
  CHECK(pthread_mutex_init(&q->lock, NULL) == 0);
  CHECK(pthread_cond_init(&q->changed, NULL) == 0);
  q->items = calloc(capacity, sizeof *q->items);
  CHECK(q->items != NULL);
  q->head = q->count = 0;
  q->capacity = capacity;
}

static void queue_destroy(queue *q) {
  pthread_cond_destroy(&q->changed);
  pthread_mutex_destroy(&q->lock);
  free(q->items);
}

static void queue_push(queue *q, void *item) {
  pthread_mutex_lock(&q->lock);
  CHECKF(q->count < q->capacity, "queue full (%zu items)", q->count);
  q->items[(q->head + q->count++) % q->capacity] = item;
  pthread_cond_signal(&q->changed);
  pthread_mutex_unlock(&q->lock);
}

/* The oldest item; fails the test when nothing arrives for a minute (a lost wake-up). */
static void *queue_pop(queue *q) {
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += 60;
  pthread_mutex_lock(&q->lock);
  while (q->count == 0) CHECKF(pthread_cond_timedwait(&q->changed, &q->lock, &deadline) == 0, "no wake-up in 60 s");
  void *item = q->items[q->head];
  q->head = (q->head + 1) % q->capacity;
  q->count--;
  pthread_mutex_unlock(&q->lock);
  return item;
}

/* ---- engines and requests ------------------------------------------------------------------ */

static le_engine *async_engine(uint32_t workers) {
  le_str async_functions[] = {le_s("fetch")};
  le_dict_config dicts[] = {{le_s("d"), 1024 * 1024}};
  le_config cfg = le_config_default();
  cfg.workers = workers;
  cfg.log_level = LE_LOG_CRIT;
  cfg.async_functions = async_functions;
  cfg.n_async_functions = 1;
  cfg.shared_dicts = dicts;
  cfg.n_shared_dicts = 1;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &cfg, &engine);
  return engine;
}

static le_request *request_on(le_engine *engine, const char *path, uint32_t worker_hint) {
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.method = le_s("GET");
  init.path = le_s(path);
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, worker_hint, &request);
  return request;
}

/* The one pending operation of a suspended request. */
static le_pending one_pending(le_request *request) {
  const le_pending *ops = NULL;
  size_t n = 99;
  CHECK_EQ(le_request_pending(request, &ops, &n), LE_OK);
  CHECK_EQ(n, 1);
  return ops[0];
}

static void complete_with_string(le_request *request, uint64_t id, const char *text) {
  le_value value;
  memset(&value, 0, sizeof value);
  value.type_ = LE_VALUE_STRING;
  value.string = le_s(text);
  CHECK_OK(le_request_complete, request, id, &value, 1);
}

/* ---- 1,000 sleeping requests resumed by an event-loop thread --------------------------------- */

/* A request the main thread runs and the loop thread resumes. The wake can arrive while
 * le_request_run is still returning on the main thread (the clock gets the sleep before the
 * request is released), and a request is used by one thread at a time: the end of the run and
 * the wake each count one, and whichever comes second hands the request to the loop. */
typedef struct {
  le_request *request;
  queue *loop;
  atomic_int handoff;
  int index;
} sleeper;

static void hand_off(sleeper *s) {
  if (atomic_fetch_add(&s->handoff, 1) == 1) queue_push(s->loop, s);
}

static void wake_sleeper(le_request *request, void *user_data) {
  (void)request;
  hand_off(user_data);
}

typedef struct {
  queue *loop;
  int n;
} loop_args;

static void *resume_loop(void *arg) {
  loop_args *a = arg;
  char want[32];
  for (int done = 0; done < a->n; done++) {
    sleeper *s = queue_pop(a->loop);
    RESUME(s->request, LE_STATUS_DONE);
    snprintf(want, sizeof want, "/s/%d\n", s->index);
    CHECK_STR(le_test_response(s->request).body, want);
  }
  return NULL;
}

static void sleeps_overlap_on_an_event_loop_thread(void) {
  const int n = 1000;
  le_engine *engine = async_engine(2);
  le_script *script = le_test_compile(engine, "content", "ngx.sleep(0.05) ngx.say(ngx.var.uri)");
  sleeper *sleepers = calloc((size_t)n, sizeof *sleepers);
  queue loop;
  queue_init(&loop, (size_t)n);
  loop_args args = {&loop, n};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, resume_loop, &args) == 0);
  double started = now_seconds();
  char path[32];
  for (int i = 0; i < n; i++) {
    snprintf(path, sizeof path, "/s/%d", i);
    sleepers[i] = (sleeper){request_on(engine, path, LE_WORKER_ANY), &loop, 0, i};
    CHECK_OK(le_request_set_waker, sleepers[i].request, wake_sleeper, &sleepers[i]);
    RUN(sleepers[i].request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
    hand_off(&sleepers[i]);
  }
  CHECK(pthread_join(thread, NULL) == 0);
  double wall = now_seconds() - started;
  fprintf(stderr, "%d requests sleeping 0.05 s each on 2 workers: %.3f s of wall time (%s)\n", n, wall, le_backend());
  CHECK(wall >= 0.05);
  CHECKF(wall < 10, "%.3f s: the sleeps did not overlap", wall);
  for (int i = 0; i < n; i++) le_request_free(sleepers[i].request);
  queue_destroy(&loop);
  free(sleepers);
  le_script_free(script);
  le_engine_free(engine);
}

/* ---- stress: 4 host threads, each its own event loop ------------------------------------------ */

#define HOST_THREADS 4
#define IN_FLIGHT 32

typedef struct host_thread host_thread;

typedef struct {
  le_request *request;
  host_thread *owner;
  int index;
  uint64_t op; /* the fetch handed to the backend thread */
  char arg[32];
} job;

struct host_thread {
  pthread_t thread;
  uint32_t worker_hint;
  int first, n;
  le_engine *engine;
  le_script *script;
  queue inbox; /* wakes and completed fetches of this thread's requests */
  queue *backend;
  job jobs[IN_FLIGHT];
};

/* The wake callback only posts to the owner's inbox: the owner thread resumes, after whatever
 * call it is in has returned. */
static void wake_job(le_request *request, void *user_data) {
  (void)request;
  job *j = user_data;
  queue_push(&j->owner->inbox, j);
}

/* Another thread that answers some fetches, then hands the request back to its owner. */
static void *backend_loop(void *arg) {
  queue *backend = arg;
  char answer[64];
  for (job *j; (j = queue_pop(backend)) != NULL;) {
    snprintf(answer, sizeof answer, "answer:%s", j->arg);
    complete_with_string(j->request, j->op, answer);
    queue_push(&j->owner->inbox, j);
  }
  return NULL;
}

/* Drives one job after a run or resume returned `status`; returns whether the request is done. */
static bool advance(host_thread *t, job *j, le_status status, le_error *err) {
  for (;;) {
    if (status == LE_STATUS_DONE) {
      char want[64];
      snprintf(want, sizeof want, "answer:/r/%d\n", j->index);
      CHECK_STR(le_test_response(j->request).body, want);
      le_request_free(j->request);
      j->request = NULL;
      return true;
    }
    le_test_status("run or resume", status, err, LE_STATUS_YIELD, __FILE__, __LINE__);
    const le_pending *ops = NULL;
    size_t n = 0;
    CHECK_EQ(le_request_pending(j->request, &ops, &n), LE_OK);
    if (n == 0) return false; /* asleep: the wake callback will post it */
    CHECK_EQ(n, 1);
    CHECK_STR(ops[0].name, "fetch");
    CHECK_EQ(ops[0].n_args, 1);
    CHECK_EQ(ops[0].args[0].type_, LE_VALUE_STRING);
    if (j->index % 2) {
      /* Hand it to the backend thread, which owns the request until it posts it back. */
      snprintf(j->arg, sizeof j->arg, "%.*s", (int)ops[0].args[0].string.len, (const char *)ops[0].args[0].string.ptr);
      j->op = ops[0].id;
      queue_push(t->backend, j);
      return false;
    }
    char answer[64];
    snprintf(answer, sizeof answer, "answer:%.*s", (int)ops[0].args[0].string.len,
             (const char *)ops[0].args[0].string.ptr);
    complete_with_string(j->request, ops[0].id, answer);
    err = NULL;
    status = le_request_resume(j->request, &err);
  }
}

/* Starts this thread's next requests in `j` until one waits; returns how many finished at once. */
static int start(host_thread *t, job *j, int *started) {
  char path[32];
  int finished = 0;
  while (*started < t->n) {
    j->index = t->first + (*started)++;
    j->owner = t;
    snprintf(path, sizeof path, "/r/%d", j->index);
    j->request = request_on(t->engine, path, t->worker_hint);
    CHECK_OK(le_request_set_waker, j->request, wake_job, j);
    le_error *err = NULL;
    le_status status = le_request_run(j->request, LE_PHASE_CONTENT, t->script, &err);
    if (!advance(t, j, status, err)) break;
    finished++;
  }
  return finished;
}

static void *host_loop(void *arg) {
  host_thread *t = arg;
  int started = 0, finished = 0;
  for (int i = 0; i < IN_FLIGHT; i++) finished += start(t, &t->jobs[i], &started);
  while (finished < t->n) {
    job *j = queue_pop(&t->inbox);
    le_error *err = NULL;
    le_status status = le_request_resume(j->request, &err);
    if (advance(t, j, status, err)) finished += 1 + start(t, j, &started);
  }
  return NULL;
}

static void ten_thousand_requests_on_four_host_threads(void) {
  const int total = 10000;
  le_engine *engine = async_engine(4);
  le_script *script = le_test_compile(engine, "content",
                                      "ngx.sleep(0)\n"
                                      "local answer = require('host').fetch(ngx.var.uri)\n"
                                      "local n, err = ngx.shared.d:incr('n', 1, 0)\n"
                                      "assert(n >= 1, err)\n"
                                      "ngx.say(answer)");
  queue backend;
  queue_init(&backend, HOST_THREADS * IN_FLIGHT + 1);
  pthread_t backend_thread;
  CHECK(pthread_create(&backend_thread, NULL, backend_loop, &backend) == 0);
  static host_thread threads[HOST_THREADS];
  double started = now_seconds();
  for (int i = 0; i < HOST_THREADS; i++) {
    host_thread *t = &threads[i];
    memset(t, 0, sizeof *t);
    t->worker_hint = (uint32_t)i;
    t->first = i * (total / HOST_THREADS);
    t->n = total / HOST_THREADS;
    t->engine = engine;
    t->script = script;
    t->backend = &backend;
    queue_init(&t->inbox, IN_FLIGHT);
    CHECK(pthread_create(&t->thread, NULL, host_loop, t) == 0);
  }
  for (int i = 0; i < HOST_THREADS; i++) CHECK(pthread_join(threads[i].thread, NULL) == 0);
  double wall = now_seconds() - started;
  queue_push(&backend, NULL);
  CHECK(pthread_join(backend_thread, NULL) == 0);
  fprintf(stderr, "%d requests (sleep + async fetch + incr) on %d host threads: %.3f s (%s)\n", total, HOST_THREADS,
          wall, le_backend());
  le_dict *d = NULL;
  CHECK_OK(le_engine_dict, engine, le_s("d"), &d);
  le_value counter;
  CHECK_OK(le_dict_get, d, le_s("n"), &counter, NULL);
  CHECK_EQ(counter.type_, LE_VALUE_NUMBER);
  CHECK_EQ(counter.number, total);
  le_stats stats = {.size = sizeof stats};
  CHECK_EQ(le_engine_stats(engine, &stats), LE_OK);
  CHECK_EQ(stats.errors, 0);
  le_dict_free(d);
  for (int i = 0; i < HOST_THREADS; i++) queue_destroy(&threads[i].inbox);
  queue_destroy(&backend);
  le_script_free(script);
  le_engine_free(engine);
}

/* ---- freeing waiting requests ------------------------------------------------------------------ */

/* Counts wake calls, and fails on one that starts after le_request_free returned. */
typedef struct {
  atomic_int calls;
  atomic_bool freed;
} watch;

static void wake_watch(le_request *request, void *user_data) {
  (void)request;
  watch *w = user_data;
  CHECKF(!atomic_load(&w->freed), "a wake callback after le_request_free returned");
  atomic_fetch_add(&w->calls, 1);
}

/* A request on `engine` watched by `w` (reset), after `script` ran into its first wait. */
static le_request *watched_wait(le_engine *engine, le_script *script, watch *w) {
  atomic_init(&w->calls, 0);
  atomic_init(&w->freed, false);
  le_request *request = request_on(engine, "/", LE_WORKER_ANY);
  CHECK_OK(le_request_set_waker, request, wake_watch, w);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
  return request;
}

static void freed_requests_are_never_woken(void) {
  le_engine *engine = async_engine(2);
  /* Short sleeps race the free with the wake; long ones are freed well before it. */
  le_script *short_sleep = le_test_compile(engine, "content", "ngx.sleep(0) ngx.sleep(0)");
  le_script *long_sleep = le_test_compile(engine, "content", "ngx.sleep(0.2)");
  enum { N = 100 };
  static watch watches[N];
  for (int i = 0; i < N; i++) {
    le_request *request = watched_wait(engine, i % 2 ? short_sleep : long_sleep, &watches[i]);
    if (i % 4 == 1) sleep_ms(1); /* let some short sleeps wake first */
    le_request_free(request);
    atomic_store(&watches[i].freed, true);
  }
  sleep_ms(300); /* past every sleep */
  for (int i = 0; i < N; i += 2) CHECK_EQ(atomic_load(&watches[i].calls), 0);
  for (int i = 1; i < N; i += 2) CHECK(atomic_load(&watches[i].calls) <= 1); /* never resumed: one wake at most */
  le_script_free(short_sleep);
  le_script_free(long_sleep);
  le_engine_free(engine);
}

static void free_in_wake(le_request *request, void *user_data) {
  atomic_fetch_add((atomic_int *)user_data, 1);
  le_request_free(request);
}

static void a_request_freed_in_its_wake_callback(void) {
  le_engine *engine = async_engine(2);
  /* The second sleep never starts: the request is freed when the first one wakes. */
  le_script *scripts[] = {le_test_compile(engine, "content", "ngx.sleep(0) ngx.sleep(0)"),
                          le_test_compile(engine, "content", "ngx.sleep(0.01) ngx.sleep(0.01)")};
  enum { N = 40 };
  static atomic_int calls;
  atomic_init(&calls, 0);
  for (int i = 0; i < N; i++) {
    le_request *request = request_on(engine, "/", LE_WORKER_ANY);
    CHECK_OK(le_request_set_waker, request, free_in_wake, &calls);
    /* The request may be freed from here on: the main thread does not touch it again. */
    RUN(request, LE_PHASE_CONTENT, scripts[i % 2], LE_STATUS_YIELD);
  }
  sleep_ms(200);
  CHECK_EQ(atomic_load(&calls), N);
  le_script_free(scripts[0]);
  le_script_free(scripts[1]);
  le_engine_free(engine);
}

static void the_last_request_freed_in_its_wake_after_the_engine(void) {
  le_engine *engine = async_engine(1);
  le_script *script = le_test_compile(engine, "content", "ngx.sleep(0.02)");
  static atomic_int calls;
  atomic_init(&calls, 0);
  le_request *request = request_on(engine, "/", LE_WORKER_ANY);
  CHECK_OK(le_request_set_waker, request, free_in_wake, &calls);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
  le_script_free(script);
  /* The request keeps the engine's clock alive; freeing it on the clock thread ends it. */
  le_engine_free(engine);
  for (int i = 0; i < 500 && atomic_load(&calls) == 0; i++) sleep_ms(10);
  CHECK_EQ(atomic_load(&calls), 1);
  sleep_ms(50); /* the clock thread winds down */
}

static void requests_freed_with_pending_operations(void) {
  le_engine *engine = async_engine(1);
  le_script *fetch = le_test_compile(engine, "content", "ngx.say(require('host').fetch('x', 1, {a = 1}))");
  le_script *read_body = le_test_compile(engine, "content", "ngx.req.read_body()");
  for (int i = 0; i < 10; i++) {
    le_request *request = request_on(engine, "/", LE_WORKER_ANY);
    RUN(request, LE_PHASE_CONTENT, i % 2 ? fetch : read_body, LE_STATUS_YIELD);
    CHECK_STR(one_pending(request).name, i % 2 ? "fetch" : "ngx.req.read_body");
    le_request_free(request); /* never completed: nothing leaks (valgrind) */
  }
  /* The worker serves on. */
  CONTENT_SAYS(engine, "ngx.say('next')", "next\n");
  le_script_free(fetch);
  le_script_free(read_body);
  le_engine_free(engine);
}

/* ---- host-driven waits: async host functions and the body ---------------------------------- */

static void async_results_and_errors_reach_lua(void) {
  le_engine *engine = async_engine(1);
  le_script *script = le_test_compile(engine, "content",
                                      "local a, b = require('host').fetch('/users', 2)\n"
                                      "ngx.say(a, ' ', b)\n"
                                      "local ok, err = pcall(function() local r = require('host').fetch() return r end)\n"
                                      "ngx.say(ok, ' ', err)\n"
                                      "require('host').fetch('again')");
  le_request *request = request_on(engine, "/", LE_WORKER_ANY);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
  CHECK(le_request_is_suspended(request));
  le_pending op = one_pending(request);
  CHECK_STR(op.name, "fetch");
  CHECK_EQ(op.n_args, 2);
  CHECK_STR(op.args[0].string, "/users");
  CHECK_EQ(op.args[1].type_, LE_VALUE_INTEGER);
  CHECK_EQ(op.args[1].integer, 2);
  uint64_t id = op.id;
  le_value results[2];
  memset(results, 0, sizeof results);
  results[0].type_ = LE_VALUE_STRING;
  results[0].string = le_s("alice");
  results[1].type_ = LE_VALUE_BOOLEAN;
  results[1].boolean = true;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete, request, id + 100, results, 2);
  CHECK_OK(le_request_complete, request, id, results, 2);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete, request, id, results, 2); /* completed already */
  /* The pcall'd call fails with the host's message, prefixed with the script's chunk:line. */
  RESUME(request, LE_STATUS_YIELD);
  id = one_pending(request).id;
  CHECK_EQ(one_pending(request).n_args, 0);
  CHECK_OK(le_request_complete_error, request, id, le_s("upstream timed out"));
  /* Uncaught, the failure ends the phase with a runtime error. */
  RESUME(request, LE_STATUS_YIELD);
  id = one_pending(request).id;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete_error, request, id, le_sn(NULL, 4));
  CHECK_OK(le_request_complete_error, request, id, le_s("backend gone"));
  le_error *err = NULL;
  CHECK_EQ(le_request_resume(request, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_RUNTIME);
  CHECK_STR(le_error_message(err), "content:5: backend gone");
  le_error_free(err);
  CHECK(!le_request_is_suspended(request));
  CHECK_STR(le_test_response(request).body, "alice true\nfalse content:3: upstream timed out\n");
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
}

static void read_body_is_completed_with_the_body(void) {
  le_engine *engine = async_engine(1);
  le_script *script = le_test_compile(engine, "content",
                                      "ngx.req.read_body()\n"
                                      "ngx.say(ngx.req.get_body_data())\n"
                                      "ngx.say(ngx.req.get_post_args().b)");
  le_header form = {le_s("Content-Type"), le_s("application/x-www-form-urlencoded")};
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.method = le_s("POST");
  init.path = le_s("/form");
  init.headers = &form;
  init.n_headers = 1;
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
  le_pending op = one_pending(request);
  CHECK_STR(op.name, "ngx.req.read_body");
  CHECK_EQ(op.n_args, 0);
  le_value number;
  memset(&number, 0, sizeof number);
  number.type_ = LE_VALUE_INTEGER;
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete, request, op.id, &number, 1); /* a body is a string */
  complete_with_string(request, op.id, "a=1&b=two");
  RESUME(request, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "a=1&b=two\ntwo\n");
  /* The host's body, not a script's: nothing for the host to hand on. */
  le_request_view view = {.size = sizeof view};
  CHECK_EQ(le_request_inspect(request, &view), LE_OK);
  CHECK_STR(view.body, "a=1&b=two");
  CHECK(!view.body_changed);
  le_request_free(request);
  /* With the body given up front, read_body does not wait. */
  init.body = le_s("b=now");
  init.has_body = true;
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "b=now\nnow\n");
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
}

/* ---- resumes that come too early ---------------------------------------------------------------- */

static void a_resume_before_the_wake_runs_nothing(void) {
  le_engine *engine = async_engine(1);
  le_script *sleeps = le_test_compile(engine, "content", "ngx.say('a') ngx.sleep(0.2) ngx.say('b')");
  static watch w;
  le_request *request = watched_wait(engine, sleeps, &w);
  for (int i = 0; i < 3; i++) RESUME(request, LE_STATUS_YIELD);
  CHECK_STR(le_test_response(request).body, "a\n");
  CHECK(le_request_is_suspended(request));
  const le_pending *ops = NULL;
  size_t n = 99;
  CHECK_EQ(le_request_pending(request, &ops, &n), LE_OK);
  CHECK_EQ(n, 0); /* an engine-driven wait: nothing for the host to do */
  CHECK(ops == NULL);
  /* Another phase cannot start while this one waits. */
  le_error_free(RUN_FAILS(request, LE_PHASE_CONTENT, sleeps, LE_ERR_INVALID_STATE));
  while (atomic_load(&w.calls) == 0) sleep_ms(5);
  RESUME(request, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "a\nb\n");
  CHECK_EQ(atomic_load(&w.calls), 1);
  /* Resuming a request that does not wait is a state error. */
  le_error *err = NULL;
  CHECK_EQ(le_request_resume(request, &err), LE_STATUS_ERROR);
  CHECK_EQ(le_error_code(err), LE_ERR_INVALID_STATE);
  le_error_free(err);
  le_request_free(request);

  /* An async call not completed yet: resuming runs nothing either. */
  le_script *fetches = le_test_compile(engine, "content", "ngx.say('a', require('host').fetch())");
  request = request_on(engine, "/", LE_WORKER_ANY);
  RUN(request, LE_PHASE_CONTENT, fetches, LE_STATUS_YIELD);
  uint64_t id = one_pending(request).id;
  RESUME(request, LE_STATUS_YIELD);
  CHECK_EQ(one_pending(request).id, id);
  CHECK_EQ(le_test_response(request).body.len, 0);
  complete_with_string(request, id, "b");
  RESUME(request, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "ab\n");
  le_request_free(request);

  /* Without a waker the host polls: resume answers YIELD until the sleep is over. */
  request = request_on(engine, "/", LE_WORKER_ANY);
  CHECK_OK(le_request_set_waker, request, wake_watch, &w);
  CHECK_OK(le_request_set_waker, request, NULL, NULL);
  le_script *short_sleep = le_test_compile(engine, "content", "ngx.sleep(0.02) ngx.say('polled')");
  RUN(request, LE_PHASE_CONTENT, short_sleep, LE_STATUS_YIELD);
  le_status status;
  do {
    sleep_ms(5);
    err = NULL;
    status = le_request_resume(request, &err);
    CHECK(err == NULL);
  } while (status == LE_STATUS_YIELD);
  CHECK_EQ(status, LE_STATUS_DONE);
  CHECK_STR(le_test_response(request).body, "polled\n");
  CHECK_EQ(atomic_load(&w.calls), 1); /* the removed waker was not called */
  le_request_free(request);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_set_waker, NULL, wake_watch, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete, NULL, 1, NULL, 0);
  CHECK_EQ(le_request_pending(NULL, &ops, &n), LE_ERR_INVALID_ARGUMENT);
  le_script_free(sleeps);
  le_script_free(fetches);
  le_script_free(short_sleep);
  le_engine_free(engine);
}

/* ---- plain yields and cancelled phases ------------------------------------------------------ */

/* A plain coroutine.yield() in the entry thread is resumed from the event loop, as nginx does:
 * the engine calls the wake callback once per yield; a host that polls resumes it at once. */
static void plain_yields_are_woken_every_time(void) {
  le_engine *engine = async_engine(1);
  le_script *script = le_test_compile(engine, "content", "for i = 1, 3 do coroutine.yield() end ngx.say('ok')");
  static watch w;
  le_request *request = watched_wait(engine, script, &w);
  for (int yields = 1; yields <= 3; yields++) {
    double deadline = now_seconds() + 30;
    while (atomic_load(&w.calls) < yields) {
      CHECKF(now_seconds() < deadline, "yield %d was not woken", yields);
      sleep_ms(1);
    }
    RESUME(request, yields < 3 ? LE_STATUS_YIELD : LE_STATUS_DONE);
  }
  CHECK_STR(le_test_response(request).body, "ok\n");
  sleep_ms(50);
  CHECK_EQ(atomic_load(&w.calls), 3);
  le_request_free(request);
  atomic_store(&w.freed, true);

  request = request_on(engine, "/", LE_WORKER_ANY);
  RUN(request, LE_PHASE_CONTENT, script, LE_STATUS_YIELD);
  RESUME(request, LE_STATUS_YIELD);
  RESUME(request, LE_STATUS_YIELD);
  RESUME(request, LE_STATUS_DONE);
  le_request_free(request);
  le_script_free(script);
  le_engine_free(engine);
}

/* The client went away while content waits: the phase is cancelled where it waits, and the
 * log phase still runs on what it left (nginx's lua_check_client_abort). */
static void a_cancelled_phase_still_runs_log(void) {
  le_engine *engine = async_engine(1);
  le_script *log = le_test_compile(engine, "log", "ngx.shared.d:set('log', ngx.ctx.seen .. ' ' .. ngx.status)");
  const char *waits[] = {
      "ngx.ctx.seen = 'sleep' ngx.say('partial') ngx.sleep(10) ngx.ctx.seen = 'after'",
      "ngx.ctx.seen = 'fetch' ngx.say('partial') require('host').fetch() ngx.ctx.seen = 'after'",
  };
  const char *logged[] = {"ngx.say(ngx.shared.d:get('log'))", "sleep 200\n", "fetch 200\n"};
  for (int i = 0; i < 2; i++) {
    static watch w;
    le_script *script = le_test_compile(engine, "content", waits[i]);
    le_request *request = watched_wait(engine, script, &w);
    const le_pending *ops = NULL;
    size_t n = 0;
    CHECK_EQ(le_request_pending(request, &ops, &n), LE_OK);
    uint64_t id = n == 1 ? ops[0].id : 0;
    CHECK_OK(le_request_cancel, request);
    CHECK(!le_request_is_suspended(request));
    CHECK_EQ(le_request_pending(request, &ops, &n), LE_OK);
    CHECK_EQ(n, 0);
    if (id != 0) CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_complete, request, id, NULL, 0);
    le_error *err = NULL;
    CHECK_EQ(le_request_resume(request, &err), LE_STATUS_ERROR);
    CHECK_EQ(le_error_code(err), LE_ERR_INVALID_STATE);
    le_error_free(err);
    CHECK_OK(le_request_cancel, request); /* nothing waits: nothing to do */
    CHECK_STR(le_test_response(request).body, "partial\n");
    RUN(request, LE_PHASE_LOG, log, LE_STATUS_OK);
    CONTENT_SAYS(engine, logged[0], logged[i + 1]);
    le_request_free(request);
    atomic_store(&w.freed, true);
    CHECK_EQ(atomic_load(&w.calls), 0);
    le_script_free(script);
  }
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_request_cancel, NULL);
  le_script_free(log);
  le_engine_free(engine);
}

/* Resumes right in the wake callback; counts resumes the request refused. */
static atomic_int refused_resumes;
static void resume_in_wake(le_request *request, void *user_data) {
  (void)user_data;
  le_error *err = NULL;
  if (le_request_resume(request, &err) == LE_STATUS_ERROR) {
    atomic_fetch_add(&refused_resumes, 1);
    le_error_free(err);
  }
}

/* A wake that fires while le_request_run is still returning is held back until it has: the
 * callback may resume the request at once, as the header allows. */
static void resuming_in_the_wake_callback_never_races_the_run(void) {
  enum { N = 2000 };
  le_engine *engine = async_engine(2);
  le_script *script = le_test_compile(engine, "content", "ngx.sleep(0) ngx.say('ok')");
  static le_request *requests[N];
  atomic_store(&refused_resumes, 0);
  for (int i = 0; i < N; i++) {
    requests[i] = request_on(engine, "/", LE_WORKER_ANY);
    CHECK_OK(le_request_set_waker, requests[i], resume_in_wake, NULL);
    le_error *err = NULL;
    le_status status = le_request_run(requests[i], LE_PHASE_CONTENT, script, &err);
    CHECK(status == LE_STATUS_YIELD || status == LE_STATUS_DONE);
  }
  double deadline = now_seconds() + 30;
  for (int i = 0; i < N; i++) {
    le_response_view view = {.size = sizeof view};
    /* The resume may still be returning on the clock thread: then the request is busy. */
    while ((le_request_is_suspended(requests[i]) || le_request_response(requests[i], &view) != LE_OK) &&
           now_seconds() < deadline)
      sleep_ms(1);
    CHECKF(!le_request_is_suspended(requests[i]), "request %d never resumed", i);
    CHECK_STR(view.body, "ok\n");
    le_request_free(requests[i]);
  }
  CHECK_EQ(atomic_load(&refused_resumes), 0);
  le_script_free(script);
  le_engine_free(engine);
}

TEST_MAIN(
    TEST_CASE(resuming_in_the_wake_callback_never_races_the_run),
    TEST_CASE(sleeps_overlap_on_an_event_loop_thread),
    TEST_CASE(ten_thousand_requests_on_four_host_threads),
    TEST_CASE(freed_requests_are_never_woken),
    TEST_CASE(a_request_freed_in_its_wake_callback),
    TEST_CASE(the_last_request_freed_in_its_wake_after_the_engine),
    TEST_CASE(requests_freed_with_pending_operations),
    TEST_CASE(async_results_and_errors_reach_lua),
    TEST_CASE(read_body_is_completed_with_the_body),
    TEST_CASE(a_resume_before_the_wake_runs_nothing),
    TEST_CASE(plain_yields_are_woken_every_time),
    TEST_CASE(a_cancelled_phase_still_runs_log))
