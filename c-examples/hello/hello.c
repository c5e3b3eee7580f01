/*
 * hello.c — the first libluaengine program: the lifecycle a C host goes through.
 *
 *   1. create an engine (Lua workers, code cache),
 *   2. compile the scripts once (an nginx `access_by_lua` / `content_by_lua` pair),
 *   3. for each HTTP request: create a request from the host's snapshot, run the phases,
 *      read the response, free the request,
 *   4. free the scripts and the engine.
 *
 * Every call that can fail returns a code (le_result, or le_status for running a phase) and
 * can hand back an le_error object with the details; this program checks them all.
 *
 * Build and run it from the repository root:  cmake --build --preset luajit --target run-hello
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "luaengine.h"

/* Strings cross the C ABI as pointer + length (le_str), never NUL-terminated; this makes one
 * from a C string literal. */
static le_str str(const char *s) {
  le_str r = {(const uint8_t *)s, strlen(s)};
  return r;
}

/* The bytes of an le_str for printf's "%.*s" (an empty le_str may have a NULL pointer). */
static const char *chars(le_str s) {
  return s.ptr ? (const char *)s.ptr : "";
}

/* Prints what went wrong and exits. `err` may be NULL (then only the code is known). */
static void die(const char *what, le_result code, le_error *err) {
  le_str message = le_error_message(err); /* empty for a NULL error */
  fprintf(stderr, "hello: %s failed: %s: %.*s\n", what, le_result_name(code), (int)message.len,
          chars(message));
  le_str traceback = le_error_traceback(err); /* Lua errors carry one */
  if (traceback.len > 0) fprintf(stderr, "%.*s\n", (int)traceback.len, chars(traceback));
  le_error_free(err); /* error objects belong to the caller */
  exit(1);
}

/* Runs one phase. Returns true if the host should go on to the next phase, false if the request
 * is answered (LE_STATUS_DONE: send the response now). */
static int run_phase(le_request *request, le_phase phase, const le_script *script, const char *name) {
  le_error *err = NULL;
  le_status status = le_request_run(request, phase, script, &err);
  switch (status) {
    case LE_STATUS_OK: /* the phase finished: go on */
      return 1;
    case LE_STATUS_DONE: /* ngx.exit, a redirect, or content: the response is ready */
      return 0;
    case LE_STATUS_YIELD:
      /* The script waits (ngx.sleep, a host call...). A real host would come back later with
       * le_request_resume(); these scripts never wait. */
      fprintf(stderr, "hello: the %s phase waits; this example does not resume requests\n", name);
      exit(1);
    case LE_STATUS_ERROR:
    default:
      /* A script error: a server would log it and answer 500. */
      die(name, le_error_code(err), err);
  }
  return 0;
}

/* One request through access and content, then its response printed. */
static void serve(le_engine *engine, const le_script *access, const le_script *content, const char *token) {
  /* The request snapshot: everything the scripts may read, handed over in one call. The engine
   * copies it, so these buffers may be reused as soon as le_request_new returns. */
  le_header headers[] = {
      {str("Host"), str("example.com")},
      {str("User-Agent"), str("hello/1.0")},
      {str("Accept"), str("*/*")},
      {str("X-Token"), str(token)},
  };
  le_request_init init;
  memset(&init, 0, sizeof init); /* empty fields get defaults: HTTP/1.1, http, no body */
  init.size = sizeof init;        /* the struct's version: set it before any call */
  init.method = str("GET");
  init.path = str("/t");
  init.remote_addr = str("127.0.0.1");
  init.headers = headers;
  init.n_headers = sizeof headers / sizeof headers[0];

  le_request *request = NULL;
  le_error *err = NULL;
  /* LE_WORKER_ANY: bind the request to the next worker in turn. A host with an event loop per
   * thread passes its thread number instead, so each thread keeps to its own worker. */
  le_result rc = le_request_new(engine, &init, LE_WORKER_ANY, &request, &err);
  if (rc != LE_OK) die("le_request_new", rc, err);

  printf("--- request with X-Token: %s (request id %llu)\n", token, (unsigned long long)le_request_id(request));

  /* The phases in nginx's order; DONE from access (e.g. ngx.exit(403)) skips content. */
  if (run_phase(request, LE_PHASE_ACCESS, access, "access")) run_phase(request, LE_PHASE_CONTENT, content, "content");

  /* The response in one call: a view into the request, valid until the next call on it. */
  le_response_view view = {.size = sizeof view};
  rc = le_request_response(request, &view);
  if (rc != LE_OK) die("le_request_response", rc, NULL);
  printf("status: %u\n", (unsigned)view.status);
  for (size_t i = 0; i < view.n_headers; i++)
    printf("header: %.*s: %.*s\n", (int)view.headers[i].name.len, chars(view.headers[i].name),
           (int)view.headers[i].value.len, chars(view.headers[i].value));
  if (view.exited) printf("ngx.exit(%lld) was called\n", (long long)view.exit_code);
  printf("body: %.*s", (int)view.body.len, chars(view.body));
  if (view.body.len == 0 || view.body.ptr[view.body.len - 1] != '\n') printf("\n");

  /* Done with the request: this also invalidates `view`. */
  le_request_free(request);
}

int main(void) {
  printf("libluaengine %s (%s), ABI %u\n", le_version(), le_backend(), le_abi_version());
  /* The header this program was compiled with must match the library it runs with. */
  if (le_abi_version() != LE_ABI_VERSION) {
    fprintf(stderr, "hello: built for ABI %d but the library implements ABI %u\n", LE_ABI_VERSION, le_abi_version());
    return 1;
  }

  /* 1. The engine. Start from the defaults and change what you need. */
  le_config config = le_config_default();
  config.workers = 2;                      /* Lua states; 0 = one per CPU */
  config.instruction_budget = 10000000;    /* a runaway loop fails its phase instead of hanging */
  le_engine *engine = NULL;
  le_error *err = NULL;
  le_result rc = le_engine_new(&config, &engine, &err);
  if (rc != LE_OK) die("le_engine_new", rc, err);

  /* 2. The scripts, compiled once and shared by every worker and request. The name ("access")
   *    is the chunk name in error messages and logs: "access:1: ...". */
  const char *access_source =
      "local h = ngx.req.get_headers()\n"
      "if h[\"x-token\"] ~= \"secret\" then return ngx.exit(403) end\n"
      "ngx.ctx.user = \"u1\"\n";
  const char *content_source = "ngx.say(\"hello \", ngx.ctx.user, \" \", ngx.var.uri)\n";

  le_script *access = NULL, *content = NULL;
  rc = le_script_compile(engine, str("access"), str(access_source), &access, &err);
  if (rc != LE_OK) die("compiling the access script", rc, err);
  rc = le_script_compile(engine, str("content"), str(content_source), &content, &err);
  if (rc != LE_OK) die("compiling the content script", rc, err);

  /* 3. Two requests: one with the right token, one without. */
  serve(engine, access, content, "secret");
  serve(engine, access, content, "wrong");

  /* 4. Clean up, in any order: scripts and requests keep what they need alive. */
  le_script_free(access);
  le_script_free(content);
  le_engine_free(engine);
  return 0;
}
