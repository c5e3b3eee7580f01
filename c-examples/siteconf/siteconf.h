/*
 * siteconf.h — the example servers' JSON site config, read the same way by the C server
 * (c-examples/http-server) and the C++ server (c-examples/cpp-server):
 *
 *   {
 *     "listen": "127.0.0.1:8080",            host:port, [v6]:port or port (default 127.0.0.1:8080)
 *     "workers": 2,                          Lua states, 0 = one per CPU (default 0)
 *     "default_type": "text/plain",          nginx's default_type (default text/plain)
 *     "client_max_body_size": "1m",          request body limit, 413 beyond; 0 = none (default 1m)
 *     "lua": { "package_path": ["./lua/?.lua"], "trusted": false,
 *              "time_budget": "5s",               wall time per phase run: seconds, "500ms", "5s"
 *              "instruction_budget": 100000000,   VM instructions per phase run
 *              "memory_limit": "256m" },          Lua memory per worker
 *                                                 (each: 0 = off; absent = the engine's default)
 *     "shared_dicts": { "cache": "10m" },    ngx.shared.cache
 *     "init": "<lua>", "init_worker": "<lua>",
 *     "locations": [
 *       { "match": "exact" | "prefix", "path": "/t",
 *         "rewrite": "<lua>", "access": "<lua>", "content": "<lua>",
 *         "header_filter": "<lua>", "body_filter": "<lua>", "log": "<lua>",
 *         "static": { "status": 200, "headers": { "Content-Type": "text/plain" }, "body": "hi" } }
 *     ]
 *   }
 *
 * Every Lua-bearing key has a `_file` twin (`content_file`, `init_file`...) naming a file
 * relative to the config file's folder, as `lua.package_path` entries are. Sizes are a byte
 * count or a string with a k, m or g suffix ("512k", "10m", "1g"). Unknown keys, wrong types and bad
 * values are load errors that name the key (`locations[2].static.status: ...`).
 *
 * The config is plain data: it does not depend on a running engine, so a host parses it, builds
 * its engine from `site_engine_config`, then compiles the scripts it names.
 */
#ifndef SITECONF_H
#define SITECONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "luaengine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A location's phases, in the order a request goes through them. */
enum site_phase {
  SITE_REWRITE,
  SITE_ACCESS,
  SITE_CONTENT,
  SITE_HEADER_FILTER,
  SITE_BODY_FILTER,
  SITE_LOG,
  SITE_PHASES
};

/* The engine-wide scripts: init_by_lua and init_worker_by_lua. */
enum { SITE_INIT, SITE_INIT_WORKER };

/* The engine's phase for a site phase (SITE_CONTENT -> LE_PHASE_CONTENT). */
le_phase site_le_phase(enum site_phase phase);

/* "rewrite", "access", "content", "header_filter", "body_filter" or "log". */
const char *site_phase_name(enum site_phase phase);

/* Bytes owned by the config, also NUL-terminated (a JSON string may hold none). */
typedef struct site_text {
  char *ptr;
  size_t len;
} site_text;

/* Lua code from a config key: inline source or a file. */
typedef struct site_lua {
  /* Where it came from, for error messages: `locations[1].content_file`. NULL when unset. */
  char *key;
  /* Inline source and the chunk name it runs under (`content_by_lua(location = /t)`), or NULL. */
  char *chunk;
  site_text source;
  /* The file a `_file` key names, resolved against the config's folder, or NULL. */
  char *file;
} site_lua;

typedef struct site_header {
  site_text name, value;
} site_header;

/* What the host answers when a location has no content script. */
typedef struct site_static {
  bool set;
  uint16_t status;
  site_header *headers;
  size_t n_headers;
  site_text body;
} site_static;

typedef struct site_location {
  bool exact;
  site_text path;
  site_lua scripts[SITE_PHASES];
  site_static response;
} site_location;

typedef struct site_dict {
  char *name;
  size_t size;
} site_dict;

typedef struct site_config {
  /* The file it was loaded from, as given. */
  char *path;
  /* The config file's folder, absolute. */
  char *dir;
  /* The address to listen on: a numeric IPv4 or IPv6 host and a port. */
  char *listen_host;
  uint16_t listen_port;
  uint32_t workers;
  site_text default_type;
  /* 0: no limit. */
  size_t client_max_body_size;
  bool trusted;
  /* The engine's limits, when the config sets them (`*_set`); else the engine's defaults stay. */
  bool time_budget_set, instruction_budget_set, memory_limit_set;
  uint32_t time_budget_ms;
  uint64_t instruction_budget;
  size_t memory_limit;
  /* Resolved against `dir`. */
  char **package_path;
  size_t n_package_path;
  site_dict *dicts;
  size_t n_dicts;
  /* init and init_worker (SITE_INIT, SITE_INIT_WORKER). */
  site_lua init[2];
  site_location *locations;
  size_t n_locations;
  /* What site_engine_config points the engine's config at. */
  le_str *engine_package_path;
  le_dict_config *engine_dicts;
} site_config;

/* Reads and checks the config at `path`. On success `*out` owns it (site_config_free) and 0 is
 * returned; on failure -1, with a message naming the file and the key in `error`. */
int site_config_load(const char *path, site_config **out, char *error, size_t error_size);

void site_config_free(site_config *config);

/* Parses "host:port", "[v6]:port" or "port" (host 127.0.0.1); 0 on success. `*host` is
 * malloc'ed. The servers' --listen option uses it too. */
int site_parse_listen(const char *listen, char **host, uint16_t *port);

/* Fills the engine's config from the site's: workers, trusted, package_path, shared dicts,
 * default_type, init, init_worker and the limits the site sets (the others keep the values
 * `engine_config` holds, le_config_default's). It points into `config`, which must outlive the
 * le_engine_new call. */
void site_engine_config(const site_config *config, le_config *engine_config);

/* The location for a request path, nginx's way: an exact match wins, else the longest prefix.
 * NULL when none matches. */
const site_location *site_match(const site_config *config, const char *path, size_t len);

/* Whether `headers` has one named `name` (ASCII case-insensitive). */
bool site_has_header(const site_header *headers, size_t n, const char *name);

/* Whether `s` is an HTTP token (RFC 9110's tchar), as a header name must be. */
bool site_is_token(le_str s);

/* Why a request must be refused with 400 and its connection closed, or NULL. `target` is the
 * request target as received (not decoded). Refused: framing a proxy in front may read
 * differently from the server (two different Content-Length values, Content-Length with
 * Transfer-Encoding, a Content-Length that is not digits: request smuggling), a header name that
 * is not a token ("X-Token : v" would reach scripts as another header), a NUL in a header, a
 * NUL raw or as %00 in the target (a path read as a C string would be cut there), HTTP/1.1
 * without Host, and a version other than HTTP/1.0 and HTTP/1.1. */
const char *site_bad_request(le_str version, le_str target, const le_header *headers, size_t n);

/* The HTTP reason phrase for a status ("Not Found"), or "" for an unknown one. */
const char *site_reason(unsigned status);

/* The body the host sends for a status it answers itself, like nginx's special responses: an
 * HTML page for 3xx (but 304), 4xx and 5xx statuses, else none. Writes at most `size` bytes
 * (NUL included) and returns the page's length. Its Content-Type is text/html. */
size_t site_status_page(unsigned status, char *buf, size_t size);

/* Big enough for any site_status_page. */
#define SITE_STATUS_PAGE_MAX 256

#ifdef __cplusplus
}
#endif

#endif /* SITECONF_H */
