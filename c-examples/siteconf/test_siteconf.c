/* The site config reader: every key read as documented, defaults, nginx's location precedence,
 * and load errors that name the key. Run by ctest (c.test_siteconf.<case>). */
#define _XOPEN_SOURCE 700 /* mkdtemp */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "le_test.h"
#include "siteconf.h"

/* A scratch folder per run for site.json, removed at exit. */
static char folder[PATH_MAX];
static char path[PATH_MAX + 16];

static void remove_folder(void) {
  unlink(path);
  rmdir(folder);
}

static const char *write_config(const char *json) {
  if (!folder[0]) {
    char template_[] = "/tmp/siteconf-XXXXXX";
    CHECK(mkdtemp(template_) != NULL);
    CHECK(realpath(template_, folder) != NULL);
    snprintf(path, sizeof path, "%s/site.json", folder);
    atexit(remove_folder);
  }
  FILE *file = fopen(path, "w");
  CHECK(file != NULL);
  fputs(json, file);
  fclose(file);
  return path;
}

static site_config *load(const char *json) {
  char error[512];
  site_config *config = NULL;
  int rc = site_config_load(write_config(json), &config, error, sizeof error);
  CHECKF(rc == 0, "%s", error);
  return config;
}

/* Loading `json` fails with a message that contains `want`. */
static void load_fails(const char *json, const char *want) {
  char error[512] = "";
  site_config *config = NULL;
  CHECKF(site_config_load(write_config(json), &config, error, sizeof error) != 0, "%s loaded", json);
  CHECK(config == NULL);
  CHECKF(strstr(error, want) != NULL, "%s\n  failed with: %s\n  expected: ...%s...", json, error, want);
  CHECKF(strstr(error, "site.json") != NULL, "the message names no file: %s", error);
}

static void every_key_is_read(void) {
  site_config *c = load(
      "{\"listen\": \"[::1]:9090\", \"workers\": 3, \"default_type\": \"text/html\",\n"
      " \"client_max_body_size\": \"512k\",\n"
      " \"lua\": {\"package_path\": [\"./lua/?.lua\", \"/opt/lua/?.lua\"], \"trusted\": true},\n"
      " \"shared_dicts\": {\"cache\": \"10m\", \"small\": 40000},\n"
      " \"init\": \"x = 1\", \"init_worker_file\": \"lua/worker.lua\",\n"
      " \"locations\": [\n"
      "  {\"match\": \"exact\", \"path\": \"/t\", \"rewrite\": \"a()\", \"access_file\": \"lua/access.lua\",\n"
      "   \"content\": \"ngx.say(1)\", \"header_filter\": \"h()\", \"body_filter_file\": \"b.lua\", \"log\": \"l()\"},\n"
      "  {\"match\": \"prefix\", \"path\": \"/s/\",\n"
      "   \"static\": {\"status\": 201, \"headers\": {\"X-B\": \"2\", \"X-A\": \"1\"}, \"body\": \"hi\"}}]}");
  CHECK(strcmp(c->listen_host, "::1") == 0);
  CHECK_EQ(c->listen_port, 9090);
  CHECK_EQ(c->workers, 3);
  CHECK(strcmp(c->default_type.ptr, "text/html") == 0);
  CHECK_EQ(c->client_max_body_size, 512 * 1024);
  CHECK(c->trusted);
  CHECK(strcmp(c->dir, folder) == 0);
  CHECK_EQ(c->n_package_path, 2);
  char expected[PATH_MAX + 32];
  snprintf(expected, sizeof expected, "%s/lua/?.lua", folder);
  CHECK(strcmp(c->package_path[0], expected) == 0);
  CHECK(strcmp(c->package_path[1], "/opt/lua/?.lua") == 0);
  CHECK_EQ(c->n_dicts, 2);
  CHECK(strcmp(c->dicts[0].name, "cache") == 0);
  CHECK_EQ(c->dicts[0].size, 10 * 1024 * 1024);
  CHECK_EQ(c->dicts[1].size, 40000);
  CHECK(strcmp(c->init[SITE_INIT].source.ptr, "x = 1") == 0);
  CHECK(strcmp(c->init[SITE_INIT].chunk, "init_by_lua") == 0);
  snprintf(expected, sizeof expected, "%s/lua/worker.lua", folder);
  CHECK(strcmp(c->init[SITE_INIT_WORKER].file, expected) == 0);
  CHECK(strcmp(c->init[SITE_INIT_WORKER].key, "init_worker_file") == 0);

  CHECK_EQ(c->n_locations, 2);
  const site_location *t = &c->locations[0];
  CHECK(t->exact && strcmp(t->path.ptr, "/t") == 0 && !t->response.set);
  CHECK(strcmp(t->scripts[SITE_CONTENT].chunk, "content_by_lua(location = /t)") == 0);
  CHECK(strcmp(t->scripts[SITE_CONTENT].key, "locations[0].content") == 0);
  CHECK(t->scripts[SITE_ACCESS].file && !t->scripts[SITE_ACCESS].chunk);
  snprintf(expected, sizeof expected, "%s/b.lua", folder);
  CHECK(strcmp(t->scripts[SITE_BODY_FILTER].file, expected) == 0);
  for (int phase = 0; phase < SITE_PHASES; phase++) CHECK(t->scripts[phase].key != NULL);
  const site_location *s = &c->locations[1];
  CHECK(!s->exact && s->response.set);
  CHECK_EQ(s->response.status, 201);
  CHECK_EQ(s->response.n_headers, 2);
  CHECK(strcmp(s->response.headers[0].name.ptr, "X-B") == 0); /* in the config's order */
  CHECK(strcmp(s->response.body.ptr, "hi") == 0);
  CHECK(s->scripts[SITE_CONTENT].key == NULL);
  CHECK(site_has_header(s->response.headers, 2, "x-a") && !site_has_header(s->response.headers, 2, "X-C"));

  le_config engine = le_config_default();
  site_engine_config(c, &engine);
  CHECK_EQ(engine.workers, 3);
  CHECK(engine.trusted);
  CHECK_EQ(engine.n_package_path, 2);
  CHECK_EQ(engine.n_shared_dicts, 2);
  CHECK_EQ(engine.shared_dicts[0].capacity, 10 * 1024 * 1024);
  CHECK(le_str_eq(engine.default_type, "text/html"));
  CHECK(le_str_eq(engine.init, "x = 1") && engine.init_file.len == 0);
  CHECK(engine.init_worker.len == 0 && le_str_eq(engine.init_worker_file, c->init[SITE_INIT_WORKER].file));
  site_config_free(c);
}

/* The limits: each read in its forms, 0 turns one off, and absent ones keep the engine's
 * defaults (whatever le_config_default says). */
static void engine_limits(void) {
  const struct {
    const char *json;
    uint32_t time_ms;
    uint64_t instructions;
    size_t memory;
  } cases[] = {
      {"\"time_budget\": \"5s\", \"instruction_budget\": 1000000, \"memory_limit\": \"64m\"", 5000, 1000000, 64u << 20},
      {"\"time_budget\": \"500ms\", \"instruction_budget\": 0, \"memory_limit\": \"1g\"", 500, 0, 1u << 30},
      {"\"time_budget\": 2, \"instruction_budget\": 7, \"memory_limit\": 4096", 2000, 7, 4096},
      {"\"time_budget\": 0.25, \"instruction_budget\": 1, \"memory_limit\": \"512k\"", 250, 1, 512u << 10},
      {"\"time_budget\": \"1.5s\", \"instruction_budget\": 2, \"memory_limit\": 0", 1500, 2, 0},
      {"\"time_budget\": 0, \"instruction_budget\": 3, \"memory_limit\": \"2G\"", 0, 3, (size_t)2 << 30},
      {"\"time_budget\": \"0.1ms\", \"instruction_budget\": 4, \"memory_limit\": 1", 1, 4, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char json[512];
    snprintf(json, sizeof json, "{\"lua\": {%s}}", cases[i].json);
    site_config *c = load(json);
    le_config engine = le_config_default();
    /* Marks what site_engine_config must overwrite. */
    engine.time_budget_ms = 77;
    engine.instruction_budget = 77;
    engine.memory_limit = 77;
    site_engine_config(c, &engine);
    CHECKF(engine.time_budget_ms == cases[i].time_ms, "%s: time_budget_ms %u", json, (unsigned)engine.time_budget_ms);
    CHECKF(engine.instruction_budget == cases[i].instructions, "%s: instruction_budget %llu", json,
           (unsigned long long)engine.instruction_budget);
    CHECKF(engine.memory_limit == cases[i].memory, "%s: memory_limit %zu", json, engine.memory_limit);
    site_config_free(c);
  }

  site_config *c = load("{\"lua\": {\"trusted\": false}}");
  le_config defaults = le_config_default(), engine = le_config_default();
  site_engine_config(c, &engine);
  CHECK_EQ(engine.time_budget_ms, defaults.time_budget_ms);
  CHECK_EQ(engine.instruction_budget, defaults.instruction_budget);
  CHECK_EQ(engine.memory_limit, defaults.memory_limit);
  /* Whatever the caller's config held stays too. */
  engine.time_budget_ms = 123;
  engine.memory_limit = 456;
  site_engine_config(c, &engine);
  CHECK_EQ(engine.time_budget_ms, 123);
  CHECK_EQ(engine.memory_limit, 456);
  site_config_free(c);
}

static void defaults(void) {
  site_config *c = load("{}");
  CHECK(strcmp(c->listen_host, "127.0.0.1") == 0);
  CHECK_EQ(c->listen_port, 8080);
  CHECK_EQ(c->workers, 0);
  CHECK(strcmp(c->default_type.ptr, "text/plain") == 0);
  CHECK_EQ(c->client_max_body_size, 1024 * 1024);
  CHECK(!c->trusted);
  CHECK_EQ(c->n_locations + c->n_dicts + c->n_package_path, 0);
  CHECK(c->init[SITE_INIT].key == NULL && c->init[SITE_INIT_WORKER].key == NULL);
  site_config_free(c);
}

/* Exact wins, then the longest prefix, whatever the order in the config. */
static void nginx_location_precedence(void) {
  site_config *c = load(
      "{\"locations\": [{\"match\": \"prefix\", \"path\": \"/\"}, {\"match\": \"prefix\", \"path\": \"/a/b/\"},\n"
      " {\"match\": \"prefix\", \"path\": \"/a/\"}, {\"match\": \"exact\", \"path\": \"/a/b/\"},\n"
      " {\"match\": \"exact\", \"path\": \"/x\"}]}");
  const struct {
    const char *path;
    int location;
  } cases[] = {{"/", 0}, {"/zzz", 0}, {"/a/", 2}, {"/a/c", 2}, {"/a/b/", 3}, {"/a/b/c", 1}, {"/x", 4}, {"/xy", 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const site_location *found = site_match(c, cases[i].path, strlen(cases[i].path));
    CHECKF(found == &c->locations[cases[i].location], "%s matched locations[%d]", cases[i].path,
           found ? (int)(found - c->locations) : -1);
  }
  site_config_free(c);
  c = load("{\"locations\": [{\"match\": \"exact\", \"path\": \"/only\"}]}");
  CHECK(site_match(c, "/other", 6) == NULL);
  CHECK(site_match(c, "/only/", 6) == NULL);
  site_config_free(c);
}

static void errors_name_the_key(void) {
  const struct {
    const char *json, *message;
  } cases[] = {
      {"{\"listen\": \"127.0.0.1:8080\", \"bogus\": 1}", "bogus: unknown key"},
      {"{\"workers\": \"2\"}", "workers: expected an integer, got a string"},
      {"{\"workers\": -1}", "workers: expected 0 (one per CPU) to 1024"},
      {"{\"listen\": 8080}", "listen: expected a string"},
      {"{\"listen\": \"localhost:80\"}", "listen: expected host:port"},
      {"{\"listen\": \"127.0.0.1:70000\"}", "listen: expected host:port"},
      {"{\"default_type\": true}", "default_type: expected a string, got a boolean"},
      {"{\"client_max_body_size\": \"10x\"}", "client_max_body_size: expected a size"},
      {"{\"client_max_body_size\": \"1t\"}", "got \"1t\""},
      {"{\"client_max_body_size\": 1.5}", "client_max_body_size: expected a size"},
      {"{\"lua\": {\"trusted\": \"yes\"}}", "lua.trusted: expected a boolean, got a string"},
      {"{\"lua\": {\"package_path\": \"x\"}}", "lua.package_path: expected an array of strings"},
      {"{\"lua\": {\"package_path\": [\"a\", 2]}}", "lua.package_path[1]: expected a path template"},
      {"{\"lua\": {\"cpath\": []}}", "lua.cpath: unknown key"},
      {"{\"lua\": {\"time_budget\": \"5\"}}", "lua.time_budget: expected a duration"},
      {"{\"lua\": {\"time_budget\": \"5m\"}}", "lua.time_budget: expected a duration"},
      {"{\"lua\": {\"time_budget\": \"s\"}}", "lua.time_budget: expected a duration"},
      {"{\"lua\": {\"time_budget\": -1}}", "lua.time_budget: expected a duration"},
      {"{\"lua\": {\"time_budget\": true}}", "lua.time_budget: expected a duration (seconds, or a string such as \"500ms\" or \"5s\"), got a boolean"},
      {"{\"lua\": {\"time_budget\": \"5000000s\"}}", "lua.time_budget: too long"},
      {"{\"lua\": {\"instruction_budget\": \"1000\"}}", "lua.instruction_budget: expected a count of VM instructions"},
      {"{\"lua\": {\"instruction_budget\": -5}}", "lua.instruction_budget: expected a count"},
      {"{\"lua\": {\"instruction_budget\": 1.5}}", "lua.instruction_budget: expected a count"},
      {"{\"lua\": {\"memory_limit\": \"64q\"}}", "lua.memory_limit: expected a size"},
      {"{\"lua\": {\"memory_limit\": -1}}", "lua.memory_limit: expected a size"},
      {"{\"lua\": {\"time_budgets\": 1}}", "lua.time_budgets: unknown key"},
      {"{\"shared_dicts\": {\"d\": true}}", "shared_dicts.d: expected a size"},
      {"{\"init\": 1}", "init: expected Lua source (a string), got an integer"},
      {"{\"init\": \"a()\", \"init_file\": \"i.lua\"}", "init_file: init is set too"},
      {"{\"init_worker_file\": \"\"}", "init_worker_file: expected a file name"},
      {"{\"locations\": {}}", "locations: expected an array, got an object"},
      {"{\"locations\": [1]}", "locations[0]: expected an object, got an integer"},
      {"{\"locations\": [{\"path\": \"/t\"}]}", "locations[0].match: missing"},
      {"{\"locations\": [{\"match\": \"regex\", \"path\": \"/t\"}]}", "locations[0].match: expected \"exact\" or \"prefix\""},
      {"{\"locations\": [{\"match\": \"exact\"}]}", "locations[0].path: missing"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"t\"}]}", "locations[0].path: a path starts with /"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"contents\": \"x\"}]}",
       "locations[0].contents: unknown key"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"content\": [\"x\"]}]}",
       "locations[0].content: expected Lua source (a string), got an array"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"log\": \"x\", \"log_file\": \"l.lua\"}]}",
       "locations[0].log_file: locations[0].log is set too"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": \"hi\"}]}",
       "locations[0].static: expected an object, got a string"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": {\"status\": \"200\"}}]}",
       "locations[0].static.status: expected an integer, got a string"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": {\"status\": 42}}]}",
       "locations[0].static.status: 42 is not an HTTP status"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": {\"headers\": {\"X\": 1}}}]}",
       "locations[0].static.headers.X: expected a string, got an integer"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": {\"headers\": {\"A B\": \"1\"}}}]}",
       "locations[0].static.headers.A B: not a valid header name"},
      {"{\"locations\": [{\"match\": \"exact\", \"path\": \"/t\", \"static\": {\"body\": \"x\", \"type\": \"y\"}}]}",
       "locations[0].static.type: unknown key"},
      {"{\"locations\": [{\"match\": \"prefix\", \"path\": \"/t\"}, {\"match\": \"prefix\", \"path\": \"/t\"}]}",
       "locations[1]: duplicate location"},
      {"{\"workers\": 1, \"workers\": 2}", "duplicate object key"},
      {"{\"workers\": 1,", "site.json:"},
      {"[]", "(top level): expected an object, got an array"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) load_fails(cases[i].json, cases[i].message);
}

static void listen_and_status_pages(void) {
  char *host = NULL;
  uint16_t port = 0;
  CHECK(site_parse_listen("8081", &host, &port) == 0 && strcmp(host, "127.0.0.1") == 0 && port == 8081);
  free(host);
  CHECK(site_parse_listen("0.0.0.0:0", &host, &port) == 0 && strcmp(host, "0.0.0.0") == 0 && port == 0);
  free(host);
  CHECK(site_parse_listen("[::]:80", &host, &port) == 0 && strcmp(host, "::") == 0 && port == 80);
  free(host);
  const char *bad[] = {"", ":80", "127.0.0.1:", "127.0.0.1:x", "example.com:80", "[::1]", "1.2.3.4:-1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) CHECKF(site_parse_listen(bad[i], &host, &port) != 0, "%s", bad[i]);

  char page[SITE_STATUS_PAGE_MAX];
  CHECK(site_status_page(404, page, sizeof page) == strlen(page));
  CHECK(strstr(page, "<title>404 Not Found</title>") != NULL);
  CHECK(site_status_page(599, page, sizeof page) > 0 && strstr(page, "<title>599</title>") != NULL);
  CHECK(site_status_page(200, page, sizeof page) == 0 && page[0] == '\0');
  CHECK(site_status_page(304, page, sizeof page) == 0);
  CHECK(strcmp(site_reason(413), "Request Entity Too Large") == 0 && strcmp(site_reason(299), "") == 0);
  CHECK(strcmp(site_phase_name(SITE_BODY_FILTER), "body_filter") == 0);
  CHECK_EQ(site_le_phase(SITE_LOG), LE_PHASE_LOG);
}

static le_str str(const char *s) {
  le_str out = {(const uint8_t *)s, strlen(s)};
  return out;
}

/* What the servers refuse with 400, from the parsed request line and headers. */
static void bad_requests(void) {
  CHECK(site_is_token(str("X-Token")) && site_is_token(str("a!#$%&'*+-.^_`|~9")));
  const char *not_tokens[] = {"", "X-Token ", " X", "X:Y", "X\tY", "X(Y)", "X\x7f", "X\xc3\xa9", "X\x01"};
  for (size_t i = 0; i < sizeof not_tokens / sizeof not_tokens[0]; i++)
    CHECKF(!site_is_token(str(not_tokens[i])), "\"%s\" is a token", not_tokens[i]);
  le_str nul_name = {(const uint8_t *)"X\0Y", 3};
  CHECK(!site_is_token(nul_name));

  const le_header host = {str("Host"), str("t")};
  const struct {
    const char *version, *target;
    le_header headers[3];
    size_t n;
    const char *why; /* NULL: accepted */
  } cases[] = {
      {"HTTP/1.1", "/a?b=%20", {host, {str("Content-Length"), str("12")}}, 2, NULL},
      {"HTTP/1.1", "/", {host, {str("content-length"), str("5")}, {str("Content-Length"), str("5")}}, 3, NULL},
      {"HTTP/1.1", "/", {host, {str("Transfer-Encoding"), str("chunked")}}, 2, NULL},
      {"HTTP/1.0", "/", {{str("X-A"), str("")}}, 1, NULL},
      {"HTTP/1.1", "/", {{str("HOST"), str("t")}}, 1, NULL},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("3")}, {str("Content-Length"), str("5")}}, 3,
       "different Content-Length values"},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("4")}, {str("transfer-encoding"), str("chunked")}}, 3,
       "both Content-Length and Transfer-Encoding"},
      {"HTTP/1.1", "/", {{str("Transfer-Encoding"), str("chunked")}, {str("Content-Length"), str("4")}, host}, 3,
       "both Content-Length and Transfer-Encoding"},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("abc")}}, 2, "a Content-Length that is not a number"},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("-1")}}, 2, "a Content-Length that is not a number"},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("+3")}}, 2, "a Content-Length that is not a number"},
      {"HTTP/1.1", "/", {host, {str("Content-Length"), str("")}}, 2, "an empty Content-Length"},
      {"HTTP/1.1", "/", {{str("X-A"), str("b")}}, 1, "HTTP/1.1 without Host"},
      {"HTTP/1.1", "/", {host, {str("X-Token "), str("secret")}}, 2, "a header name that is not a token"},
      {"HTTP/1.1", "/", {{str("Host "), str("t")}}, 1, "a header name that is not a token"},
      {"HTTP/1.1", "/ok%00.txt", {host}, 1, "a NUL (%00) in the target"},
      {"HTTP/1.1", "/ok?a=%00", {host}, 1, "a NUL (%00) in the target"},
      {"HTTP/2.0", "/", {host}, 1, "not HTTP/1.0 or HTTP/1.1"},
      {"", "/", {host}, 1, "not HTTP/1.0 or HTTP/1.1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const char *why = site_bad_request(str(cases[i].version), str(cases[i].target), cases[i].headers, cases[i].n);
    CHECKF(cases[i].why ? why && strcmp(why, cases[i].why) == 0 : why == NULL, "case %zu: got %s, want %s", i,
           why ? why : "(accepted)", cases[i].why ? cases[i].why : "(accepted)");
  }
  le_str nul_target = {(const uint8_t *)"/ok\0.txt", 8};
  le_str nul_value = {(const uint8_t *)"a\0b", 3};
  le_header with_nul[2] = {host, {str("X-A"), nul_value}};
  CHECK(strcmp(site_bad_request(str("HTTP/1.1"), nul_target, &host, 1), "a NUL in the target") == 0);
  CHECK(strcmp(site_bad_request(str("HTTP/1.1"), str("/"), with_nul, 2), "a NUL in a header value") == 0);
}

TEST_MAIN(
    TEST_CASE(every_key_is_read),
    TEST_CASE(engine_limits),
    TEST_CASE(defaults),
    TEST_CASE(nginx_location_precedence),
    TEST_CASE(errors_name_the_key),
    TEST_CASE(listen_and_status_pages),
    TEST_CASE(bad_requests))
