/*
 * http-server — a Lua-scripted HTTP server on libmicrohttpd, serving a JSON site config
 * (c-examples/siteconf/siteconf.h) with libluaengine:
 *
 *   http-server [--listen HOST:PORT] SITE.json     (port 0 picks a free port; SIGINT/SIGTERM stop)
 *
 * Each request goes through nginx's phases for the location it matches:
 *   rewrite -> access -> content (or the location's `static` answer, or 404)
 *           -> header_filter -> body_filter -> send -> log.
 * A script that waits (ngx.sleep) makes its phase return LE_STATUS_YIELD: the connection is
 * suspended with MHD_suspend_connection and no thread waits for it. The engine's clock thread
 * calls the request's wake callback when the sleep is over, which resumes the connection;
 * MHD then calls the access handler again on its own thread, and the phase goes on with
 * le_request_resume. The request body is read by MHD before the phases run and handed over when
 * a script asks for it (ngx.req.read_body's pending operation), as nginx reads it on demand.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "luaengine.h"
#include "siteconf.h"

typedef struct exchange exchange;

typedef struct server {
  const site_config *site;
  le_engine *engine;
  /* SITE_PHASES scripts per location, NULL where the location has none. */
  le_script **scripts;
  struct MHD_Daemon *daemon;
  /* Guards every exchange's wait flags, the list of suspended exchanges and `stopping`: the
   * wake callback runs on the engine's clock thread. */
  pthread_mutex_t lock;
  exchange *suspended;
  bool stopping;
} server;

/* One HTTP request, from its URI to the end of its log phase. */
struct exchange {
  server *srv;
  struct MHD_Connection *connection;
  char *uri; /* the request target as received: path and query */
  bool started;
  char *body;
  size_t body_len, body_cap;
  bool too_large;
  le_request *request;
  const site_location *location; /* NULL when none matches */
  enum site_phase phase;         /* the phase running, or the next one */
  bool yielded;                  /* the phase waits: resume it */
  int jumps;                     /* ngx.req.set_uri(uri, true) rematches so far */
  bool responded;
  /* Under srv->lock. */
  bool suspended, woken;
  exchange *prev, *next;
};

static le_str bytes(const void *ptr, size_t len) {
  le_str s = {(const uint8_t *)ptr, len};
  return s;
}

static le_str text(const char *s) {
  return bytes(s, strlen(s));
}

/* Prints an engine error that is not a script's (scripts' errors are logged by the engine). */
static void report(const char *what, le_error *err) {
  le_result code = le_error_code(err);
  if (code != LE_ERR_RUNTIME && code != LE_ERR_BUDGET && code != LE_ERR_MEMORY && code != LE_ERR_ABORTED) {
    le_str message = le_error_message(err);
    fprintf(stderr, "http-server: %s: %s: %.*s\n", what, le_result_name(code), (int)message.len,
            message.ptr ? (const char *)message.ptr : "");
  }
  le_error_free(err);
}

static const le_script *script_for(const exchange *ex, enum site_phase phase) {
  if (!ex->location) return NULL;
  return ex->srv->scripts[(size_t)(ex->location - ex->srv->site->locations) * SITE_PHASES + phase];
}

/* Each MHD thread uses its own Lua worker (its number modulo the workers), so a worker's lock
 * is only contended when there are more threads than workers. */
static uint32_t worker_hint(void) {
  static atomic_uint next_slot;
  static _Thread_local uint32_t slot = LE_WORKER_ANY;
  if (slot == LE_WORKER_ANY) slot = atomic_fetch_add(&next_slot, 1);
  return slot;
}

/* ---- sending ------------------------------------------------------------------------------ */

static char *copy_cstr(le_str s) {
  char *out = malloc(s.len + 1);
  if (!out) abort();
  if (s.len) memcpy(out, s.ptr, s.len);
  out[s.len] = '\0';
  return out;
}

/* Queues the final response. MHD frames the body itself, so the framing headers scripts or
 * `static` may carry are left to it. */
static enum MHD_Result send_response(exchange *ex, unsigned status, const le_header *headers, size_t n, le_str body) {
  if (status == 444) return MHD_NO; /* nginx's "close the connection without a response" */
  struct MHD_Response *response =
      MHD_create_response_from_buffer(body.len, (void *)(body.len ? body.ptr : (const uint8_t *)""), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  for (size_t i = 0; i < n; i++) {
    char *name = copy_cstr(headers[i].name), *value = copy_cstr(headers[i].value);
    if (strcasecmp(name, "Content-Length") != 0 && strcasecmp(name, "Transfer-Encoding") != 0 &&
        strcasecmp(name, "Connection") != 0 && MHD_add_response_header(response, name, value) != MHD_YES)
      fprintf(stderr, "http-server: dropped the response header %s\n", name);
    free(name);
    free(value);
  }
  enum MHD_Result rc = MHD_queue_response(ex->connection, status, response);
  MHD_destroy_response(response);
  ex->responded = rc == MHD_YES;
  return rc;
}

/* A response no script or filter touches (413 before any phase, or a failing filter). */
static enum MHD_Result send_page(exchange *ex, unsigned status) {
  char page[SITE_STATUS_PAGE_MAX];
  size_t len = site_status_page(status, page, sizeof page);
  le_header type = {text("Content-Type"), text("text/html")};
  return send_response(ex, status, &type, len ? 1 : 0, bytes(page, len));
}

/* header_filter on the response the request holds now, if the location has one. */
static bool header_filter(exchange *ex) {
  const le_script *script = script_for(ex, SITE_HEADER_FILTER);
  le_error *err = NULL;
  if (!script) return true;
  le_status status = le_request_run(ex->request, LE_PHASE_HEADER_FILTER, script, &err);
  if (status == LE_STATUS_OK || status == LE_STATUS_DONE) return true;
  if (status == LE_STATUS_ERROR) report("header_filter", err);
  return false;
}

/* The response scripts produced (output, or ngx.exit with a 2xx): through the filters, then out. */
static enum MHD_Result send_scripts_response(exchange *ex) {
  const le_script *body_filter = script_for(ex, SITE_BODY_FILTER);
  le_error *err = NULL;
  if (!header_filter(ex)) return send_page(ex, 500);
  if (body_filter) {
    le_status status = le_request_run(ex->request, LE_PHASE_BODY_FILTER, body_filter, &err);
    if (status == LE_STATUS_ERROR) report("body_filter", err);
    if (status != LE_STATUS_OK && status != LE_STATUS_DONE) return send_page(ex, 500);
  }
  le_response_view view = {.size = sizeof view};
  if (le_request_response(ex->request, &view) != LE_OK) return send_page(ex, 500);
  return send_response(ex, view.status, view.headers, view.n_headers, view.body);
}

/* The host's own response (a `static` answer, a 404, an error page): handed to the filters
 * with le_request_set_response and le_request_body_filter, then out. */
static enum MHD_Result send_hosts_response(exchange *ex, unsigned status, const le_header *headers, size_t n,
                                           le_str body) {
  le_error *err = NULL;
  if (le_request_set_response(ex->request, (uint16_t)status, headers, n, &err) != LE_OK) {
    report("le_request_set_response", err);
    return send_page(ex, 500);
  }
  if (!header_filter(ex)) return send_page(ex, 500);
  /* The filtered chunk lives until the next call on the request: keep a copy past
   * le_request_response. */
  char *filtered = NULL;
  const le_script *body_filter = script_for(ex, SITE_BODY_FILTER);
  if (body_filter) {
    le_body_chunk chunk = {.size = sizeof chunk};
    le_status run = le_request_body_filter(ex->request, body_filter, body, true, &chunk, &err);
    if (run != LE_STATUS_OK && run != LE_STATUS_DONE) {
      if (run == LE_STATUS_ERROR) report("body_filter", err);
      return send_page(ex, 500);
    }
    filtered = copy_cstr(chunk.data);
    body = bytes(filtered, chunk.data.len);
  }
  le_response_view view = {.size = sizeof view};
  enum MHD_Result rc = le_request_response(ex->request, &view) == LE_OK
                           ? send_response(ex, view.status, view.headers, view.n_headers, body)
                           : send_page(ex, 500);
  free(filtered);
  return rc;
}

/* An error page (or a body-less status) the host makes, keeping the headers scripts set before
 * ngx.exit (a redirect's Location). `headers` may point into the request: they are copied. */
static enum MHD_Result send_status(exchange *ex, unsigned status, const le_header *headers, size_t n) {
  char page[SITE_STATUS_PAGE_MAX];
  size_t len = site_status_page(status, page, sizeof page);
  size_t size = (n + 1) * sizeof(le_header);
  for (size_t i = 0; i < n; i++) size += headers[i].name.len + headers[i].value.len;
  le_header *copy = malloc(size);
  if (!copy) abort();
  uint8_t *arena = (uint8_t *)(copy + n + 1);
  for (size_t i = 0; i < n; i++) {
    le_str parts[2] = {headers[i].name, headers[i].value};
    for (int k = 0; k < 2; k++) {
      if (parts[k].len) memcpy(arena, parts[k].ptr, parts[k].len);
      parts[k].ptr = arena;
      arena += parts[k].len;
    }
    copy[i].name = parts[0];
    copy[i].value = parts[1];
  }
  copy[n].name = text("Content-Type");
  copy[n].value = text("text/html");
  enum MHD_Result rc = send_hosts_response(ex, status, copy, n + (len ? 1 : 0), bytes(page, len));
  free(copy);
  return rc;
}

/* The location's `static` answer, with default_type when it names no Content-Type; 404
 * without one. */
static enum MHD_Result send_static(exchange *ex) {
  const site_static *answer = ex->location ? &ex->location->response : NULL;
  if (!answer || !answer->set) return send_status(ex, 404, NULL, 0);
  const site_config *site = ex->srv->site;
  le_header *headers = calloc(answer->n_headers + 1, sizeof *headers);
  if (!headers) abort();
  size_t n = 0;
  for (; n < answer->n_headers; n++) {
    headers[n].name = bytes(answer->headers[n].name.ptr, answer->headers[n].name.len);
    headers[n].value = bytes(answer->headers[n].value.ptr, answer->headers[n].value.len);
  }
  if (site->default_type.len && !site_has_header(answer->headers, answer->n_headers, "Content-Type")) {
    headers[n].name = text("Content-Type");
    headers[n++].value = bytes(site->default_type.ptr, site->default_type.len);
  }
  enum MHD_Result rc = send_hosts_response(ex, answer->status, headers, n, bytes(answer->body.ptr, answer->body.len));
  free(headers);
  return rc;
}

/* ---- the phases --------------------------------------------------------------------------- */

/* Performs the host-driven waits of a yielded phase: only body reads here, as the site
 * registers no async host functions. Returns how many it completed. */
static size_t complete_pending(exchange *ex) {
  size_t done = 0;
  for (;;) {
    const le_pending *ops = NULL;
    size_t n = 0;
    if (le_request_pending(ex->request, &ops, &n) != LE_OK || n == 0) return done;
    le_error *err = NULL;
    le_result rc;
    if (ops[0].name.len == strlen("ngx.req.read_body") && memcmp(ops[0].name.ptr, "ngx.req.read_body", ops[0].name.len) == 0) {
      le_value body;
      memset(&body, 0, sizeof body);
      body.type_ = LE_VALUE_STRING;
      body.string = bytes(ex->body, ex->body_len);
      rc = le_request_complete(ex->request, ops[0].id, &body, 1, &err);
    } else {
      rc = le_request_complete_error(ex->request, ops[0].id, text("no such host function"), &err);
    }
    if (rc != LE_OK) {
      report("le_request_complete", err);
      return done;
    }
    done++;
  }
}

/* The phase yielded with nothing for the host to do: suspend the connection until the wake
 * callback resumes it, unless the wake already came. Returns false when it must not wait. */
static bool wait_for_wake(exchange *ex, bool *suspended) {
  server *srv = ex->srv;
  pthread_mutex_lock(&srv->lock);
  bool ok = !srv->stopping;
  *suspended = false;
  if (ok && ex->woken) {
    ex->woken = false;
  } else if (ok) {
    ex->suspended = *suspended = true;
    ex->prev = NULL;
    ex->next = srv->suspended;
    if (srv->suspended) srv->suspended->prev = ex;
    srv->suspended = ex;
    MHD_suspend_connection(ex->connection);
  }
  pthread_mutex_unlock(&srv->lock);
  return ok;
}

static void unlink_suspended(exchange *ex) {
  if (ex->prev) ex->prev->next = ex->next;
  else ex->srv->suspended = ex->next;
  if (ex->next) ex->next->prev = ex->prev;
  ex->prev = ex->next = NULL;
  ex->suspended = false;
}

/* Called on the engine's clock thread when a sleep is over. */
static void on_wake(le_request *request, void *user_data) {
  (void)request;
  exchange *ex = user_data;
  pthread_mutex_lock(&ex->srv->lock);
  if (ex->suspended) {
    unlink_suspended(ex);
    MHD_resume_connection(ex->connection);
  } else {
    ex->woken = true; /* it yielded but has not suspended yet: it will not */
  }
  pthread_mutex_unlock(&ex->srv->lock);
}

/* Where a rewrite that ended with ngx.req.set_uri(uri, true) sends the request. */
static bool location_jump(exchange *ex) {
  le_request_view view = {.size = sizeof view};
  if (le_request_inspect(ex->request, &view) != LE_OK || !view.location_jump) return false;
  char *path = copy_cstr(view.path);
  ex->location = site_match(ex->srv->site, path, view.path.len);
  free(path);
  return true;
}

/* Runs (or resumes) the phases up to the response, until one waits or the response is queued. */
static enum MHD_Result drive(exchange *ex) {
  for (;;) {
    le_error *err = NULL;
    le_status status;
    if (ex->yielded) {
      status = le_request_resume(ex->request, &err);
    } else if (ex->phase == SITE_CONTENT && !script_for(ex, SITE_CONTENT)) {
      return send_static(ex);
    } else {
      const le_script *script = script_for(ex, ex->phase);
      status = script ? le_request_run(ex->request, site_le_phase(ex->phase), script, &err) : LE_STATUS_OK;
    }
    ex->yielded = status == LE_STATUS_YIELD;
    switch (status) {
      case LE_STATUS_YIELD: {
        if (complete_pending(ex) > 0) continue;
        bool suspended;
        if (!wait_for_wake(ex, &suspended)) return MHD_NO; /* shutting down: drop the connection */
        if (suspended) return MHD_YES;
        continue;
      }
      case LE_STATUS_ERROR:
        report(site_phase_name(ex->phase), err);
        return send_status(ex, 500, NULL, 0);
      case LE_STATUS_DONE: {
        le_response_view view = {.size = sizeof view};
        if (le_request_response(ex->request, &view) != LE_OK) return send_page(ex, 500);
        if (view.headers_sent) return send_scripts_response(ex);
        /* ngx.exit(status) or ngx.redirect without output: nginx's special response. */
        return send_status(ex, view.status ? view.status : 500, view.headers, view.n_headers);
      }
      case LE_STATUS_OK:
      default:
        /* (A location without a rewrite script ran none: its flag is the last location's.) */
        if (ex->phase == SITE_REWRITE && script_for(ex, SITE_REWRITE) && location_jump(ex)) {
          if (++ex->jumps > 10) {
            fprintf(stderr, "http-server: rewrite or internal redirection cycle while processing \"%s\"\n", ex->uri);
            return send_status(ex, 500, NULL, 0);
          }
          continue; /* the new location's rewrite */
        }
        if (ex->phase == SITE_CONTENT) return send_scripts_response(ex);
        ex->phase++;
    }
  }
}

/* ---- MHD callbacks ------------------------------------------------------------------------ */

typedef struct header_list {
  le_header *items;
  size_t n, cap;
} header_list;

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value) {
  (void)kind;
  header_list *list = cls;
  if (list->n == list->cap) {
    list->cap = list->cap ? list->cap * 2 : 16;
    list->items = realloc(list->items, list->cap * sizeof *list->items);
    if (!list->items) abort();
  }
  list->items[list->n].name = text(name);
  list->items[list->n++].value = text(value ? value : "");
  return MHD_YES;
}

/* Makes the engine's request from what MHD parsed; the body comes later, on demand. */
static bool start(exchange *ex, const char *url, const char *method, const char *version) {
  header_list headers = {NULL, 0, 0};
  MHD_get_connection_values(ex->connection, MHD_HEADER_KIND, collect_header, &headers);
  char address[INET6_ADDRSTRLEN] = "";
  const union MHD_ConnectionInfo *info = MHD_get_connection_info(ex->connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (info && info->client_addr && info->client_addr->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)info->client_addr)->sin_addr, address, sizeof address);
  else if (info && info->client_addr && info->client_addr->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)info->client_addr)->sin6_addr, address,
              sizeof address);
  const char *query = strchr(ex->uri, '?');

  le_request_init init;
  memset(&init, 0, sizeof init);
  init.size = sizeof init;
  init.method = text(method);
  init.path = text(url); /* MHD decoded it, as nginx's $uri */
  init.query = query ? text(query + 1) : text("");
  init.http_version = text(version);
  init.scheme = text("http");
  init.remote_addr = text(address);
  init.headers = headers.items;
  init.n_headers = headers.n;
  le_error *err = NULL;
  le_result rc = le_request_new(ex->srv->engine, &init, worker_hint(), &ex->request, &err);
  free(headers.items);
  if (rc != LE_OK) {
    report("le_request_new", err);
    return false;
  }
  if (le_request_set_waker(ex->request, on_wake, ex, &err) != LE_OK) {
    report("le_request_set_waker", err);
    return false;
  }
  ex->location = site_match(ex->srv->site, url, strlen(url));
  ex->phase = SITE_REWRITE;
  return true;
}

/* ---- request hygiene ---------------------------------------------------------------------- */

/* 400, then the connection closes: after a framing error the rest of its bytes mean nothing. */
static enum MHD_Result send_bad_request(exchange *ex, const char *why) {
  char page[SITE_STATUS_PAGE_MAX];
  size_t len = site_status_page(400, page, sizeof page);
  struct MHD_Response *response = MHD_create_response_from_buffer(len, page, MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  fprintf(stderr, "http-server: 400 for \"%s\": %s\n", ex->uri, why);
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html");
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
  enum MHD_Result rc = MHD_queue_response(ex->connection, MHD_HTTP_BAD_REQUEST, response);
  MHD_destroy_response(response);
  return rc;
}

/* MHD calls this once when the headers are in, once per piece of body, once when the body is
 * complete, and again after each resume. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
  server *srv = cls;
  exchange *ex = *con_cls;
  size_t limit = srv->site->client_max_body_size;
  if (!ex->started) {
    ex->started = true;
    ex->connection = connection;
    /* MHD itself answers a malformed Content-Length, an overflowing chunk size and (with
     * MHD_OPTION_STRICT_FOR_CLIENT) spaces in the target; the rest is checked here. */
    header_list headers = {NULL, 0, 0};
    MHD_get_connection_values(connection, MHD_HEADER_KIND, collect_header, &headers);
    const char *why = site_bad_request(text(version), text(ex->uri), headers.items, headers.n);
    free(headers.items);
    if (why) return send_bad_request(ex, why);
    const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (limit && length && strtoull(length, NULL, 10) > limit) return send_page(ex, 413);
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    /* A chunked body over the limit is read and dropped: a response can only be queued at the
     * end of it. */
    size_t len = *upload_data_size;
    *upload_data_size = 0;
    if (ex->too_large || (limit && ex->body_len + len > limit)) {
      ex->too_large = true;
      return MHD_YES;
    }
    if (ex->body_len + len > ex->body_cap) {
      ex->body_cap = (ex->body_len + len) * 2;
      ex->body = realloc(ex->body, ex->body_cap);
      if (!ex->body) abort();
    }
    memcpy(ex->body + ex->body_len, upload_data, len);
    ex->body_len += len;
    return MHD_YES;
  }
  if (ex->too_large) return send_page(ex, 413);
  if (!ex->request && !start(ex, url, method, version)) return send_page(ex, 500);
  return drive(ex);
}

/* The first callback of each request, with the request target as received: the query string
 * is read from it. What it returns becomes the request's context. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *connection) {
  (void)connection;
  exchange *ex = calloc(1, sizeof *ex);
  if (!ex) abort();
  ex->srv = cls;
  ex->uri = copy_cstr(text(uri));
  return ex;
}

/* After the response went out (or the connection died): the log phase, then cleanup. */
static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)connection;
  (void)toe;
  server *srv = cls;
  exchange *ex = *con_cls;
  if (!ex) return;
  *con_cls = NULL;
  if (ex->request) {
    const le_script *log = script_for(ex, SITE_LOG);
    if (log && ex->responded && !ex->yielded) {
      le_error *err = NULL;
      if (le_request_run(ex->request, LE_PHASE_LOG, log, &err) == LE_STATUS_ERROR) report("log", err);
    }
    /* Not under srv->lock: freeing waits for a wake callback in flight, which takes it. */
    le_request_free(ex->request);
  }
  pthread_mutex_lock(&srv->lock);
  if (ex->suspended) unlink_suspended(ex);
  pthread_mutex_unlock(&srv->lock);
  free(ex->body);
  free(ex->uri);
  free(ex);
}

/* ---- startup and shutdown ----------------------------------------------------------------- */

static int die_config(const site_config *site, const char *key, const char *what, le_error *err) {
  le_str message = le_error_message(err);
  fprintf(stderr, "http-server: %s: %s: %s: %.*s\n", site->path, key, what, (int)message.len,
          message.ptr ? (const char *)message.ptr : "");
  le_error_free(err);
  return -1;
}

/* Compiles one Lua key of the config: its file (followed on changes) or its inline source. */
static int compile(const server *srv, const site_lua *lua, le_script **out) {
  le_engine *engine = srv->engine;
  le_error *err = NULL;
  le_result rc = LE_OK;
  if (lua->file) rc = le_script_compile_file(engine, text(lua->file), out, &err);
  else if (lua->chunk) rc = le_script_compile(engine, text(lua->chunk), bytes(lua->source.ptr, lua->source.len), out, &err);
  return rc == LE_OK ? 0 : die_config(srv->site, lua->key, le_result_name(rc), err);
}

static void free_scripts(server *srv) {
  if (!srv->scripts) return;
  for (size_t i = 0; i < srv->site->n_locations * SITE_PHASES; i++) le_script_free(srv->scripts[i]);
  free(srv->scripts);
}

static int start_engine(server *srv) {
  const site_config *site = srv->site;
  le_config config = le_config_default();
  site_engine_config(site, &config);
  le_error *err = NULL;
  if (le_engine_new(&config, &srv->engine, &err) != LE_OK) return die_config(site, "(engine)", "le_engine_new", err);
  srv->scripts = calloc(site->n_locations * SITE_PHASES + 1, sizeof *srv->scripts);
  if (!srv->scripts) abort();
  for (size_t i = 0; i < site->n_locations; i++)
    for (int phase = 0; phase < SITE_PHASES; phase++)
      if (compile(srv, &site->locations[i].scripts[phase], &srv->scripts[i * SITE_PHASES + (size_t)phase]) != 0)
        return -1;
  return 0;
}

static struct MHD_Daemon *listen_on(server *srv, const char *host, uint16_t port) {
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
  memset(&v4, 0, sizeof v4);
  memset(&v6, 0, sizeof v6);
  const struct sockaddr *address = (const struct sockaddr *)&v4;
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  if (inet_pton(AF_INET, host, &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
  } else {
    inet_pton(AF_INET6, host, &v6.sin6_addr);
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    address = (const struct sockaddr *)&v6;
    flags |= MHD_USE_IPv6;
  }
  /* One MHD thread per Lua worker: each thread keeps to its own worker (worker_hint). */
  unsigned int threads = le_engine_worker_count(srv->engine);
  return MHD_start_daemon(flags, port, NULL, NULL, on_request, srv, MHD_OPTION_SOCK_ADDR, address,
                          MHD_OPTION_URI_LOG_CALLBACK, on_uri, srv, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                          MHD_OPTION_THREAD_POOL_SIZE, threads, MHD_OPTION_CONNECTION_TIMEOUT, 30u,
                          /* 400 for spaces in the target (and a HTTP/1.1 request without Host) */
                          MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_END);
}

/* Scripts running away would hold MHD_stop_daemon up (it joins the threads that run them): the
 * engine stops them. Waits would too (it refuses suspended connections): resume them all; their
 * handlers see `stopping` and drop them, and freeing their requests cancels the waits. */
static void stop(server *srv) {
  le_engine_shutdown(srv->engine);
  pthread_mutex_lock(&srv->lock);
  srv->stopping = true;
  while (srv->suspended) {
    exchange *ex = srv->suspended;
    unlink_suspended(ex);
    MHD_resume_connection(ex->connection);
  }
  pthread_mutex_unlock(&srv->lock);
  MHD_stop_daemon(srv->daemon);
}

static int usage(void) {
  fprintf(stderr, "usage: http-server [--listen HOST:PORT] SITE.json\n");
  return 2;
}

int main(int argc, char **argv) {
  const char *config_path = NULL, *listen = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
    else if (argv[i][0] == '-' || config_path) return usage();
    else config_path = argv[i];
  }
  if (!config_path) return usage();

  char error[1024];
  site_config *site = NULL;
  if (site_config_load(config_path, &site, error, sizeof error) != 0) {
    fprintf(stderr, "http-server: %s\n", error);
    return 1;
  }
  char *host = NULL;
  uint16_t port = site->listen_port;
  if (listen && site_parse_listen(listen, &host, &port) != 0) {
    fprintf(stderr, "http-server: --listen: expected host:port, [v6]:port or port, got \"%s\"\n", listen);
    site_config_free(site);
    return 2;
  }

  server srv;
  memset(&srv, 0, sizeof srv);
  srv.site = site;
  pthread_mutex_init(&srv.lock, NULL);
  /* SIGINT and SIGTERM are taken by sigwait below: block them before the engine and MHD start
   * their threads, which inherit the mask (else one of them would take the signal and die). */
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, NULL);
  signal(SIGPIPE, SIG_IGN);
  int status = 1;
  if (start_engine(&srv) == 0) {
    const char *listen_host = host ? host : site->listen_host;
    srv.daemon = listen_on(&srv, listen_host, port);
    if (!srv.daemon) {
      fprintf(stderr, "http-server: cannot listen on %s:%u\n", listen_host, (unsigned)port);
    } else {
      const union MHD_DaemonInfo *info = MHD_get_daemon_info(srv.daemon, MHD_DAEMON_INFO_BIND_PORT);
      printf("http-server: listening on http://%s%s%s:%u/ (libluaengine %s, %s, %u Lua workers)\n",
             strchr(listen_host, ':') ? "[" : "", listen_host, strchr(listen_host, ':') ? "]" : "",
             info ? (unsigned)info->port : (unsigned)port, le_version(), le_backend(),
             le_engine_worker_count(srv.engine));
      fflush(stdout);
      int signal_number = 0;
      sigwait(&signals, &signal_number);
      stop(&srv);
      printf("http-server: stopped (signal %d)\n", signal_number);
      status = 0;
    }
  }
  free_scripts(&srv);
  le_engine_free(srv.engine);
  pthread_mutex_destroy(&srv.lock);
  free(host);
  site_config_free(site);
  return status;
}
