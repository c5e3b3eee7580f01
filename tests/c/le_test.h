/*
 * A tiny test kit for the C ABI tests: CHECK macros that print file:line and the failing
 * expression and exit(1), string helpers for le_str, and a few builders every test needs.
 * Header-only; each test file is one executable.
 */
#ifndef LE_TEST_H
#define LE_TEST_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaengine.h"

/* ---- assertions ---------------------------------------------------------------------------- */

#define CHECK(expr)                                                                 \
  do {                                                                              \
    if (!(expr)) {                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr);      \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* Like CHECK, plus a printf-style explanation. */
#define CHECKF(expr, ...)                                                           \
  do {                                                                              \
    if (!(expr)) {                                                                  \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  ", __FILE__, __LINE__, #expr);    \
      fprintf(stderr, __VA_ARGS__);                                                 \
      fputc('\n', stderr);                                                          \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* Two integers that must be equal; prints both values. */
#define CHECK_EQ(a, b)                                                              \
  do {                                                                              \
    long long le_a_ = (long long)(a), le_b_ = (long long)(b);                       \
    if (le_a_ != le_b_) {                                                           \
      fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld != %lld)\n", __FILE__,   \
              __LINE__, #a, #b, le_a_, le_b_);                                      \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* A le_str that must hold exactly the C string `want`. */
#define CHECK_STR(s, want)                                                          \
  do {                                                                              \
    le_str le_s_ = (s);                                                             \
    const char *le_w_ = (want);                                                     \
    if (!le_str_eq(le_s_, le_w_)) {                                                 \
      fprintf(stderr, "%s:%d: CHECK failed: %s == \"%s\" (got \"%.*s\")\n",         \
              __FILE__, __LINE__, #s, le_w_, (int)le_s_.len,                        \
              le_s_.ptr ? (const char *)le_s_.ptr : "");                            \
      exit(1);                                                                      \
    }                                                                               \
  } while (0)

/* Prints an unexpected error (code, message, traceback) and exits. */
static inline void le_test_fail_error(const char *file, int line, const char *what, le_result code,
                                      const le_error *err) {
  le_str m = le_error_message(err), t = le_error_traceback(err);
  fprintf(stderr, "%s:%d: %s failed: %s: %.*s\n%.*s\n", file, line, what, le_result_name((uint32_t)code),
          (int)m.len, m.ptr ? (const char *)m.ptr : "", (int)t.len, t.ptr ? (const char *)t.ptr : "");
  exit(1);
}

/* Calls `fn(args..., &err)`, a function returning le_result, which must succeed. */
#define CHECK_OK(fn, ...)                                                           \
  do {                                                                              \
    le_error *le_e_ = NULL;                                                         \
    le_result le_r_ = fn(__VA_ARGS__, &le_e_);                                      \
    if (le_r_ != LE_OK) le_test_fail_error(__FILE__, __LINE__, #fn, le_r_, le_e_);  \
    CHECK(le_e_ == NULL);                                                           \
  } while (0)

/* A result that must be the failure `want`, with an error object of that code and a non-empty
 * message in *errp (read after the call: pass the address of the variable the call wrote).
 * Returns the error; the caller frees it. */
static inline le_error *le_test_expect_error(le_error **errp, le_result got, le_result want, const char *what,
                                             const char *file, int line) {
  le_error *err = *errp;
  *errp = NULL;
  if (got != want) {
    fprintf(stderr, "%s:%d: %s returned %s, expected %s\n", file, line, what, le_result_name((uint32_t)got),
            le_result_name((uint32_t)want));
    if (err != NULL) le_test_fail_error(file, line, what, got, err);
    exit(1);
  }
  if (err == NULL) {
    fprintf(stderr, "%s:%d: %s returned %s without an error object\n", file, line, what, le_result_name((uint32_t)got));
    exit(1);
  }
  if (le_error_code(err) != want) {
    fprintf(stderr, "%s:%d: %s: the error object's code is %s, the result %s\n", file, line, what,
            le_result_name((uint32_t)le_error_code(err)), le_result_name((uint32_t)want));
    exit(1);
  }
  if (le_error_message(err).len == 0 || le_error_message(err).ptr == NULL) {
    fprintf(stderr, "%s:%d: %s: the error message is empty\n", file, line, what);
    exit(1);
  }
  return err;
}

/* Where EXPECT_ERROR lets the call write its error. */
static inline le_error **le_test_slot(void) {
  static le_error *slot;
  return &slot;
}

/* `err = EXPECT_ERROR(want, fn, args...)` calls fn(args..., &err) and checks it fails with `want`. */
#define EXPECT_ERROR(want, fn, ...) \
  le_test_expect_error(le_test_slot(), fn(__VA_ARGS__, le_test_slot()), (want), #fn, __FILE__, __LINE__)

/* The same, freeing the error. */
#define CHECK_FAILS(want, fn, ...) le_error_free(EXPECT_ERROR(want, fn, __VA_ARGS__))

/* ---- le_str helpers ------------------------------------------------------------------------ */

static inline le_str le_s(const char *s) {
  le_str r = {(const uint8_t *)s, s ? strlen(s) : 0};
  return r;
}

static inline le_str le_sn(const void *p, size_t n) {
  le_str r = {(const uint8_t *)p, n};
  return r;
}

static inline bool le_str_eq(le_str s, const char *want) {
  size_t n = strlen(want);
  return s.len == n && (n == 0 || (s.ptr != NULL && memcmp(s.ptr, want, n) == 0));
}

static inline bool le_str_contains(le_str s, const char *needle) {
  size_t n = strlen(needle);
  if (n == 0) return true;
  if (s.ptr == NULL || s.len < n) return false;
  for (size_t i = 0; i + n <= s.len; i++)
    if (memcmp(s.ptr + i, needle, n) == 0) return true;
  return false;
}

/* ---- builders ------------------------------------------------------------------------------ */

/* An engine with `workers` workers logging only critical records to stderr, other fields default. */
static inline le_engine *le_test_engine(uint32_t workers) {
  le_config config = le_config_default();
  config.workers = workers;
  config.log_level = LE_LOG_CRIT; /* the tests fail on purpose: keep stderr readable */
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &config, &engine);
  CHECK(engine != NULL);
  return engine;
}

static inline le_script *le_test_compile(le_engine *engine, const char *name, const char *source) {
  le_script *script = NULL;
  CHECK_OK(le_script_compile, engine, le_s(name), le_s(source), &script);
  CHECK(script != NULL);
  return script;
}

/* A GET request for `path` with the given headers (name/value pairs, n of them). */
static inline le_request *le_test_request(le_engine *engine, const char *path, const le_header *headers,
                                          size_t n_headers) {
  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.method = le_s("GET");
  init.path = le_s(path);
  init.remote_addr = le_s("127.0.0.1");
  init.headers = headers;
  init.n_headers = n_headers;
  le_request *request = NULL;
  CHECK_OK(le_request_new, engine, &init, LE_WORKER_ANY, &request);
  CHECK(request != NULL);
  return request;
}

/* A le_request_run/le_request_resume status that must be `want` (and no error with it). */
static inline void le_test_status(const char *what, le_status got, le_error *err, le_status want, const char *file,
                                  int line) {
  if (got != want) {
    if (got == LE_STATUS_ERROR) le_test_fail_error(file, line, what, le_error_code(err), err);
    fprintf(stderr, "%s:%d: %s returned status %d, expected %d\n", file, line, what, (int)got, (int)want);
    exit(1);
  }
  if (err != NULL) {
    fprintf(stderr, "%s:%d: %s wrote an error with status %d\n", file, line, what, (int)got);
    exit(1);
  }
}

/* Runs one phase that must return `want`. */
#define RUN(request, phase, script, want)                                                          \
  do {                                                                                             \
    le_error *le_e_ = NULL;                                                                        \
    le_status le_s_ = le_request_run((request), (phase), (script), &le_e_);                        \
    le_test_status("le_request_run(" #phase ")", le_s_, le_e_, (want), __FILE__, __LINE__);        \
  } while (0)

/* Resumes a suspended phase, which must return `want`. */
#define RESUME(request, want)                                                                      \
  do {                                                                                             \
    le_error *le_e_ = NULL;                                                                        \
    le_status le_s_ = le_request_resume((request), &le_e_);                                        \
    le_test_status("le_request_resume", le_s_, le_e_, (want), __FILE__, __LINE__);                 \
  } while (0)

/* Runs one phase that must fail with `code`; returns the error (the caller frees it). */
static inline le_error *le_test_run_fails(le_request *request, le_phase phase, const le_script *script,
                                          le_result code, const char *file, int line) {
  le_error *err = NULL;
  le_status status = le_request_run(request, phase, script, &err);
  if (status != LE_STATUS_ERROR) {
    fprintf(stderr, "%s:%d: le_request_run returned status %d, expected LE_STATUS_ERROR\n", file, line, (int)status);
    exit(1);
  }
  if (err == NULL) {
    fprintf(stderr, "%s:%d: LE_STATUS_ERROR without an error object\n", file, line);
    exit(1);
  }
  if (le_error_code(err) != code) {
    fprintf(stderr, "%s:%d: expected %s\n", file, line, le_result_name((uint32_t)code));
    le_test_fail_error(file, line, "le_request_run", le_error_code(err), err);
  }
  return err;
}
#define RUN_FAILS(request, phase, script, code) \
  le_test_run_fails((request), (phase), (script), (code), __FILE__, __LINE__)

/* The response view, which must be readable. */
static inline le_response_view le_test_response(le_request *request) {
  le_response_view view;
  memset(&view, 0xAB, sizeof view);
  view.size = sizeof view;
  CHECK_EQ(le_request_response(request, &view), LE_OK);
  return view;
}

/* The value of the first response header named `name` (exact match), or an empty le_str. */
static inline le_str le_test_header(const le_response_view *view, const char *name) {
  for (size_t i = 0; i < view->n_headers; i++)
    if (le_str_eq(view->headers[i].name, name)) return view->headers[i].value;
  return le_s("");
}

/* Runs `lua` as the content phase of a fresh request, which must finish (DONE), and checks
 * that the body is exactly `body`. */
static inline void le_test_content_says(le_engine *engine, const char *lua, const char *body, const char *file,
                                        int line) {
  le_script *script = le_test_compile(engine, "content", lua);
  le_request *request = le_test_request(engine, "/", NULL, 0);
  le_error *err = NULL;
  /* The status first: an argument list may read `err` before the call writes it. */
  le_status status = le_request_run(request, LE_PHASE_CONTENT, script, &err);
  le_test_status("le_request_run(content)", status, err, LE_STATUS_DONE, file, line);
  le_response_view view = le_test_response(request);
  if (!le_str_eq(view.body, body)) {
    fprintf(stderr, "%s:%d: the body of\n%s\nis \"%.*s\", expected \"%s\"\n", file, line, lua, (int)view.body.len,
            view.body.ptr ? (const char *)view.body.ptr : "", body);
    exit(1);
  }
  le_request_free(request);
  le_script_free(script);
}
#define CONTENT_SAYS(engine, lua, body) le_test_content_says((engine), (lua), (body), __FILE__, __LINE__)

/* ---- running ------------------------------------------------------------------------------ */

typedef struct {
  const char *name;
  void (*run)(void);
} le_test_case;

#define TEST_CASE(fn) {#fn, fn}

/* Runs every case, or with an argument only the case of that name (ctest registers each case
 * as its own test, so one failure hides nothing else). */
static inline int le_test_main(int argc, char **argv, const le_test_case *cases, size_t n) {
  int ran = 0;
  for (size_t i = 0; i < n; i++) {
    if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
    fprintf(stderr, "-- %s\n", cases[i].name);
    cases[i].run();
    ran++;
  }
  if (ran == 0) {
    fprintf(stderr, "no test case named %s\n", argc > 1 ? argv[1] : "(none)");
    return 1;
  }
  fprintf(stderr, "%d passed (%s %s)\n", ran, le_backend(), le_version());
  return 0;
}

#define TEST_MAIN(...)                                                                 \
  int main(int argc, char **argv) {                                                    \
    static const le_test_case cases[] = {__VA_ARGS__};                                 \
    return le_test_main(argc, argv, cases, sizeof cases / sizeof cases[0]);            \
  }

#endif /* LE_TEST_H */
