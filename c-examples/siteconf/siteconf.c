/* siteconf.c — reads and checks the JSON site config (see siteconf.h) with jansson. */
#define _XOPEN_SOURCE 700 /* realpath */

#include "siteconf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const phase_names[SITE_PHASES] = {"rewrite",       "access",      "content",
                                                     "header_filter", "body_filter", "log"};

const char *site_phase_name(enum site_phase phase) {
  return phase_names[phase];
}

le_phase site_le_phase(enum site_phase phase) {
  static const le_phase phases[SITE_PHASES] = {LE_PHASE_REWRITE,       LE_PHASE_ACCESS,      LE_PHASE_CONTENT,
                                               LE_PHASE_HEADER_FILTER, LE_PHASE_BODY_FILTER, LE_PHASE_LOG};
  return phases[phase];
}

/* Keys are built into fixed buffers: a longer one is cut, which only shortens a message. */
#define KEY_MAX 256

typedef struct parser {
  const char *file;
  char *error;
  size_t error_size;
  site_config *config;
} parser;

/* Writes a key into a KEY_MAX buffer. */
static void make_key(char *out, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(out, KEY_MAX, format, args);
  va_end(args);
}

static int fail(parser *p, const char *key, const char *format, ...) {
  int n = snprintf(p->error, p->error_size, "%s: %s: ", p->file, key);
  if (n >= 0 && (size_t)n < p->error_size) {
    va_list args;
    va_start(args, format);
    vsnprintf(p->error + n, p->error_size - (size_t)n, format, args);
    va_end(args);
  }
  return -1;
}

static const char *type_name(const json_t *value) {
  switch (json_typeof(value)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
  }
}

static int wrong_type(parser *p, const char *key, const json_t *value, const char *expected) {
  return fail(p, key, "expected %s, got %s", expected, type_name(value));
}

static char *copy(const char *bytes, size_t len) {
  char *out = malloc(len + 1);
  if (!out) abort();
  memcpy(out, bytes, len);
  out[len] = '\0';
  return out;
}

static int text_of(parser *p, const char *key, const json_t *value, site_text *out) {
  if (!json_is_string(value)) return wrong_type(p, key, value, "a string");
  out->len = json_string_length(value);
  out->ptr = copy(json_string_value(value), out->len);
  return 0;
}

/* A JSON integer, or a string of digits with an optional k, m or g suffix (nginx's sizes). */
static int size_of(parser *p, const char *key, const json_t *value, size_t *out) {
  if (json_is_integer(value) && json_integer_value(value) >= 0) {
    *out = (size_t)json_integer_value(value);
    return 0;
  }
  const char *s = json_is_string(value) ? json_string_value(value) : NULL;
  size_t n = 0, digits = 0;
  for (; s && s[digits] >= '0' && s[digits] <= '9'; digits++) {
    if (n > (SIZE_MAX - 9) / 10) return fail(p, key, "\"%s\" is too large", s);
    n = n * 10 + (size_t)(s[digits] - '0');
  }
  size_t scale = 1;
  if (s && digits > 0 && (s[digits] == 'k' || s[digits] == 'K')) scale = 1024;
  if (s && digits > 0 && (s[digits] == 'm' || s[digits] == 'M')) scale = 1024 * 1024;
  if (s && digits > 0 && (s[digits] == 'g' || s[digits] == 'G')) scale = 1024 * 1024 * 1024;
  size_t end = digits + (scale > 1);
  if (!s || digits == 0 || s[end] != '\0' || end != json_string_length(value)) {
    const char *expected = "expected a size (a byte count, or a string such as \"512k\", \"10m\" or \"1g\")";
    return s ? fail(p, key, "%s, got \"%s\"", expected, s) : fail(p, key, "%s, got %s", expected, type_name(value));
  }
  if (n > SIZE_MAX / scale) return fail(p, key, "\"%s\" is too large", s);
  *out = n * scale;
  return 0;
}

/* A duration in whole milliseconds: a JSON number of seconds (5, 0.5) or a string with an
 * ms or s suffix ("500ms", "5s", "1.5s"). A nonzero duration under 1 ms counts as 1 ms, so that
 * it does not turn the limit off. */
static int duration_of(parser *p, const char *key, const json_t *value, uint32_t *out) {
  double ms = -1;
  const char *s = json_is_string(value) ? json_string_value(value) : NULL;
  if (json_is_number(value)) {
    ms = json_number_value(value) * 1000;
  } else if (s && strlen(s) == json_string_length(value) && s[0] >= '0' && s[0] <= '9') {
    char *end = NULL;
    double n = strtod(s, &end);
    if (strcmp(end, "ms") == 0) ms = n;
    else if (strcmp(end, "s") == 0) ms = n * 1000;
  }
  if (!(ms >= 0)) {
    const char *expected = "expected a duration (seconds, or a string such as \"500ms\" or \"5s\")";
    return s ? fail(p, key, "%s, got \"%s\"", expected, s) : fail(p, key, "%s, got %s", expected, type_name(value));
  }
  if (ms > UINT32_MAX) return fail(p, key, "too long (at most %u ms)", (unsigned)UINT32_MAX);
  *out = ms > 0 && ms < 1 ? 1 : (uint32_t)ms;
  return 0;
}

/* A path relative to the config's folder ("./lua/?.lua", "lua/t.lua"), made absolute. */
static char *resolve(const parser *p, const char *path) {
  if (path[0] == '/') return copy(path, strlen(path));
  while (path[0] == '.' && path[1] == '/') path += 2;
  size_t dir = strlen(p->config->dir), len = strlen(path);
  char *out = malloc(dir + 1 + len + 1);
  if (!out) abort();
  memcpy(out, p->config->dir, dir);
  out[dir] = '/';
  memcpy(out + dir + 1, path, len + 1);
  return out;
}

/* If `name` is one of `names` or its `_file` twin, stores the Lua it gives in the matching
 * slot and returns 1; returns 0 for another key, -1 on an error. `label` completes inline
 * chunk names: "content" + "(location = /t)" makes `content_by_lua(location = /t)`. */
static int lua_key(parser *p, const char *key, const char *name, const json_t *value, const char *const *names,
                   site_lua *slots, size_t n, const char *label) {
  for (size_t i = 0; i < n; i++) {
    size_t len = strlen(names[i]);
    if (strncmp(name, names[i], len) != 0) continue;
    bool file = strcmp(name + len, "_file") == 0;
    if (name[len] != '\0' && !file) continue;
    site_lua *slot = &slots[i];
    if (slot->key) return fail(p, key, "%s is set too; give one of them", slot->key);
    if (!json_is_string(value)) return wrong_type(p, key, value, file ? "a file name" : "Lua source (a string)");
    if (file) {
      if (json_string_length(value) == 0 || strlen(json_string_value(value)) != json_string_length(value))
        return fail(p, key, "expected a file name");
      slot->file = resolve(p, json_string_value(value));
    } else {
      if (text_of(p, key, value, &slot->source) != 0) return -1;
      size_t chunk_len = len + strlen("_by_lua") + strlen(label) + 1;
      slot->chunk = malloc(chunk_len);
      if (!slot->chunk) abort();
      snprintf(slot->chunk, chunk_len, "%s_by_lua%s", names[i], label);
    }
    slot->key = copy(key, strlen(key));
    return 1;
  }
  return 0;
}

static int unknown(parser *p, const char *key) {
  return fail(p, key, "unknown key");
}

static bool header_token_ok(const site_text *text, bool name) {
  if (name && text->len == 0) return false;
  for (size_t i = 0; i < text->len; i++) {
    char c = text->ptr[i];
    if (c == '\r' || c == '\n' || c == '\0' || (name && (c == ':' || c == ' ' || c == '\t'))) return false;
  }
  return true;
}

static int parse_static(parser *p, const char *prefix, const json_t *object, site_static *out) {
  if (!json_is_object(object)) return wrong_type(p, prefix, object, "an object");
  out->set = true;
  out->status = 200;
  const char *name;
  json_t *value;
  char key[KEY_MAX];
  json_object_foreach((json_t *)object, name, value) {
    make_key(key, "%s.%s", prefix, name);
    if (strcmp(name, "status") == 0) {
      if (!json_is_integer(value)) return wrong_type(p, key, value, "an integer");
      if (json_integer_value(value) < 100 || json_integer_value(value) > 999)
        return fail(p, key, "%lld is not an HTTP status (100 to 999)", (long long)json_integer_value(value));
      out->status = (uint16_t)json_integer_value(value);
    } else if (strcmp(name, "body") == 0) {
      if (text_of(p, key, value, &out->body) != 0) return -1;
    } else if (strcmp(name, "headers") == 0) {
      if (!json_is_object(value)) return wrong_type(p, key, value, "an object");
      out->headers = calloc(json_object_size(value) + 1, sizeof *out->headers);
      if (!out->headers) abort();
      const char *header;
      json_t *header_value;
      json_object_foreach(value, header, header_value) {
        char header_key[KEY_MAX];
        make_key(header_key, "%s.%s", key, header);
        site_header *h = &out->headers[out->n_headers];
        if (text_of(p, header_key, header_value, &h->value) != 0) return -1;
        h->name.len = strlen(header);
        h->name.ptr = copy(header, h->name.len);
        out->n_headers++;
        if (!header_token_ok(&h->name, true)) return fail(p, header_key, "not a valid header name");
        if (!header_token_ok(&h->value, false)) return fail(p, header_key, "header values cannot hold CR or LF");
      }
    } else {
      return unknown(p, key);
    }
  }
  return 0;
}

static int parse_location(parser *p, size_t index, const json_t *object, site_location *out) {
  char prefix[KEY_MAX], key[KEY_MAX];
  make_key(prefix, "locations[%zu]", index);
  if (!json_is_object(object)) return wrong_type(p, prefix, object, "an object");

  /* match and path first: the chunk names of inline scripts name the location. */
  const json_t *match = json_object_get(object, "match"), *path = json_object_get(object, "path");
  make_key(key, "%s.match", prefix);
  if (!match) return fail(p, key, "missing (\"exact\" or \"prefix\")");
  if (!json_is_string(match)) return wrong_type(p, key, match, "\"exact\" or \"prefix\"");
  out->exact = strcmp(json_string_value(match), "exact") == 0;
  if (!out->exact && strcmp(json_string_value(match), "prefix") != 0)
    return fail(p, key, "expected \"exact\" or \"prefix\", got \"%s\"", json_string_value(match));
  make_key(key, "%s.path", prefix);
  if (!path) return fail(p, key, "missing");
  if (text_of(p, key, path, &out->path) != 0) return -1;
  if (out->path.len == 0 || out->path.ptr[0] != '/' || strlen(out->path.ptr) != out->path.len)
    return fail(p, key, "a path starts with /");

  char label[KEY_MAX];
  make_key(label, "(location %s%s)", out->exact ? "= " : "", out->path.ptr);
  const char *name;
  json_t *value;
  json_object_foreach((json_t *)object, name, value) {
    make_key(key, "%s.%s", prefix, name);
    if (strcmp(name, "match") == 0 || strcmp(name, "path") == 0) continue;
    if (strcmp(name, "static") == 0) {
      if (parse_static(p, key, value, &out->response) != 0) return -1;
      continue;
    }
    int found = lua_key(p, key, name, value, phase_names, out->scripts, SITE_PHASES, label);
    if (found < 0) return -1;
    if (found == 0) return unknown(p, key);
  }
  return 0;
}

static int parse_locations(parser *p, const json_t *array) {
  if (!json_is_array(array)) return wrong_type(p, "locations", array, "an array");
  site_config *config = p->config;
  config->locations = calloc(json_array_size(array) + 1, sizeof *config->locations);
  if (!config->locations) abort();
  size_t index;
  json_t *value;
  json_array_foreach(array, index, value) {
    site_location *location = &config->locations[index];
    config->n_locations = index + 1;
    if (parse_location(p, index, value, location) != 0) return -1;
    for (size_t i = 0; i < index; i++) {
      const site_location *other = &config->locations[i];
      if (other->exact == location->exact && strcmp(other->path.ptr, location->path.ptr) == 0) {
        char key[KEY_MAX];
        make_key(key, "locations[%zu]", index);
        return fail(p, key, "duplicate location (locations[%zu] has the same match and path)", i);
      }
    }
  }
  return 0;
}

static int parse_lua_section(parser *p, const json_t *object) {
  site_config *config = p->config;
  if (!json_is_object(object)) return wrong_type(p, "lua", object, "an object");
  const char *name;
  json_t *value;
  char key[KEY_MAX];
  json_object_foreach((json_t *)object, name, value) {
    make_key(key, "lua.%s", name);
    if (strcmp(name, "trusted") == 0) {
      if (!json_is_boolean(value)) return wrong_type(p, key, value, "a boolean");
      config->trusted = json_is_true(value);
    } else if (strcmp(name, "package_path") == 0) {
      if (!json_is_array(value)) return wrong_type(p, key, value, "an array of strings");
      config->package_path = calloc(json_array_size(value) + 1, sizeof *config->package_path);
      if (!config->package_path) abort();
      size_t index;
      json_t *entry;
      json_array_foreach(value, index, entry) {
        char entry_key[KEY_MAX];
        make_key(entry_key, "%s[%zu]", key, index);
        if (!json_is_string(entry) || json_string_length(entry) == 0)
          return wrong_type(p, entry_key, entry, "a path template such as \"lua/?.lua\"");
        config->package_path[config->n_package_path++] = resolve(p, json_string_value(entry));
      }
    } else if (strcmp(name, "time_budget") == 0) {
      if (duration_of(p, key, value, &config->time_budget_ms) != 0) return -1;
      config->time_budget_set = true;
    } else if (strcmp(name, "instruction_budget") == 0) {
      if (!json_is_integer(value) || json_integer_value(value) < 0)
        return wrong_type(p, key, value, "a count of VM instructions (an integer, 0 for none)");
      config->instruction_budget = (uint64_t)json_integer_value(value);
      config->instruction_budget_set = true;
    } else if (strcmp(name, "memory_limit") == 0) {
      if (size_of(p, key, value, &config->memory_limit) != 0) return -1;
      config->memory_limit_set = true;
    } else {
      return unknown(p, key);
    }
  }
  return 0;
}

static int parse_dicts(parser *p, const json_t *object) {
  site_config *config = p->config;
  if (!json_is_object(object)) return wrong_type(p, "shared_dicts", object, "an object");
  config->dicts = calloc(json_object_size(object) + 1, sizeof *config->dicts);
  if (!config->dicts) abort();
  const char *name;
  json_t *value;
  json_object_foreach((json_t *)object, name, value) {
    char key[KEY_MAX];
    make_key(key, "shared_dicts.%s", name);
    site_dict *dict = &config->dicts[config->n_dicts++];
    dict->name = copy(name, strlen(name));
    if (size_of(p, key, value, &dict->size) != 0) return -1;
  }
  return 0;
}

static int parse_top(parser *p, const json_t *root) {
  static const char *const init_names[2] = {"init", "init_worker"};
  site_config *config = p->config;
  if (!json_is_object(root)) return wrong_type(p, "(top level)", root, "an object");
  const char *name;
  json_t *value;
  json_object_foreach((json_t *)root, name, value) {
    int rc = 0;
    if (strcmp(name, "listen") == 0) {
      if (!json_is_string(value)) return wrong_type(p, name, value, "a string such as \"127.0.0.1:8080\"");
      free(config->listen_host);
      config->listen_host = NULL;
      if (site_parse_listen(json_string_value(value), &config->listen_host, &config->listen_port) != 0)
        return fail(p, name, "expected host:port, [v6]:port or port with a numeric host, got \"%s\"",
                    json_string_value(value));
    } else if (strcmp(name, "workers") == 0) {
      if (!json_is_integer(value)) return wrong_type(p, name, value, "an integer");
      if (json_integer_value(value) < 0 || json_integer_value(value) > 1024)
        return fail(p, name, "expected 0 (one per CPU) to 1024, got %lld", (long long)json_integer_value(value));
      config->workers = (uint32_t)json_integer_value(value);
    } else if (strcmp(name, "default_type") == 0) {
      free(config->default_type.ptr);
      config->default_type.ptr = NULL;
      rc = text_of(p, name, value, &config->default_type);
    } else if (strcmp(name, "client_max_body_size") == 0) {
      rc = size_of(p, name, value, &config->client_max_body_size);
    } else if (strcmp(name, "lua") == 0) {
      rc = parse_lua_section(p, value);
    } else if (strcmp(name, "shared_dicts") == 0) {
      rc = parse_dicts(p, value);
    } else if (strcmp(name, "locations") == 0) {
      rc = parse_locations(p, value);
    } else {
      int matched = lua_key(p, name, name, value, init_names, config->init, 2, "");
      if (matched < 0) return -1;
      if (matched == 0) return unknown(p, name);
    }
    if (rc != 0) return -1;
  }
  return 0;
}

int site_parse_listen(const char *listen, char **host, uint16_t *port) {
  const char *colon = strrchr(listen, ':');
  const char *port_text = colon ? colon + 1 : listen;
  char *end = NULL;
  errno = 0;
  long number = strtol(port_text, &end, 10);
  if (*port_text < '0' || *port_text > '9' || *end != '\0' || errno != 0 || number < 0 || number > 65535) return -1;
  char *name;
  if (!colon) {
    name = copy("127.0.0.1", strlen("127.0.0.1"));
  } else if (listen[0] == '[' && colon > listen && colon[-1] == ']') {
    name = copy(listen + 1, (size_t)(colon - listen) - 2);
  } else {
    name = copy(listen, (size_t)(colon - listen));
  }
  unsigned char address[sizeof(struct in6_addr)];
  if (inet_pton(AF_INET, name, address) != 1 && inet_pton(AF_INET6, name, address) != 1) {
    free(name);
    return -1;
  }
  *host = name;
  *port = (uint16_t)number;
  return 0;
}

/* The config's folder, absolute, from the path it was loaded from. */
static char *folder_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? copy(path, slash == path ? 1 : (size_t)(slash - path)) : copy(".", 1);
  char *absolute = realpath(dir, NULL);
  free(dir);
  return absolute;
}

int site_config_load(const char *path, site_config **out, char *error, size_t error_size) {
  parser p = {path, error, error_size, calloc(1, sizeof(site_config))};
  if (!p.config) abort();
  site_config *config = p.config;
  config->path = copy(path, strlen(path));
  config->client_max_body_size = 1024 * 1024;
  config->default_type.ptr = copy("text/plain", strlen("text/plain"));
  config->default_type.len = strlen("text/plain");
  config->listen_host = copy("127.0.0.1", strlen("127.0.0.1"));
  config->listen_port = 8080;
  config->dir = folder_of(path);
  if (!config->dir) {
    snprintf(error, error_size, "%s: %s", path, strerror(errno));
    site_config_free(config);
    return -1;
  }

  json_error_t json_error;
  json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &json_error);
  int rc = -1;
  if (!root) {
    snprintf(error, error_size, "%s:%d:%d: %s", path, json_error.line, json_error.column, json_error.text);
  } else {
    rc = parse_top(&p, root);
    json_decref(root);
  }
  if (rc != 0) {
    site_config_free(config);
    return -1;
  }

  config->engine_package_path = calloc(config->n_package_path + 1, sizeof *config->engine_package_path);
  config->engine_dicts = calloc(config->n_dicts + 1, sizeof *config->engine_dicts);
  if (!config->engine_package_path || !config->engine_dicts) abort();
  for (size_t i = 0; i < config->n_package_path; i++) {
    config->engine_package_path[i].ptr = (const uint8_t *)config->package_path[i];
    config->engine_package_path[i].len = strlen(config->package_path[i]);
  }
  for (size_t i = 0; i < config->n_dicts; i++) {
    config->engine_dicts[i].name.ptr = (const uint8_t *)config->dicts[i].name;
    config->engine_dicts[i].name.len = strlen(config->dicts[i].name);
    config->engine_dicts[i].capacity = config->dicts[i].size;
  }
  *out = config;
  return 0;
}

static void free_lua(site_lua *lua) {
  free(lua->key);
  free(lua->chunk);
  free(lua->source.ptr);
  free(lua->file);
}

void site_config_free(site_config *config) {
  if (!config) return;
  for (size_t i = 0; i < config->n_locations; i++) {
    site_location *location = &config->locations[i];
    free(location->path.ptr);
    for (int phase = 0; phase < SITE_PHASES; phase++) free_lua(&location->scripts[phase]);
    for (size_t h = 0; h < location->response.n_headers; h++) {
      free(location->response.headers[h].name.ptr);
      free(location->response.headers[h].value.ptr);
    }
    free(location->response.headers);
    free(location->response.body.ptr);
  }
  free(config->locations);
  for (size_t i = 0; i < config->n_package_path; i++) free(config->package_path[i]);
  free(config->package_path);
  for (size_t i = 0; i < config->n_dicts; i++) free(config->dicts[i].name);
  free(config->dicts);
  free_lua(&config->init[SITE_INIT]);
  free_lua(&config->init[SITE_INIT_WORKER]);
  free(config->engine_package_path);
  free(config->engine_dicts);
  free(config->default_type.ptr);
  free(config->listen_host);
  free(config->dir);
  free(config->path);
  free(config);
}

/* Inline source or file of an init key into the engine config's pair of fields. */
static void engine_lua(const site_lua *lua, le_str *source, le_str *file) {
  if (lua->chunk) {
    source->ptr = (const uint8_t *)lua->source.ptr;
    source->len = lua->source.len;
  }
  if (lua->file) {
    file->ptr = (const uint8_t *)lua->file;
    file->len = strlen(lua->file);
  }
}

void site_engine_config(const site_config *config, le_config *engine_config) {
  engine_lua(&config->init[SITE_INIT], &engine_config->init, &engine_config->init_file);
  engine_lua(&config->init[SITE_INIT_WORKER], &engine_config->init_worker, &engine_config->init_worker_file);
  engine_config->workers = config->workers;
  engine_config->trusted = config->trusted;
  engine_config->package_path = config->engine_package_path;
  engine_config->n_package_path = config->n_package_path;
  engine_config->shared_dicts = config->engine_dicts;
  engine_config->n_shared_dicts = config->n_dicts;
  engine_config->default_type.ptr = (const uint8_t *)config->default_type.ptr;
  engine_config->default_type.len = config->default_type.len;
  /* Limits the config leaves out keep the engine's defaults. */
  if (config->time_budget_set) engine_config->time_budget_ms = config->time_budget_ms;
  if (config->instruction_budget_set) engine_config->instruction_budget = config->instruction_budget;
  if (config->memory_limit_set) engine_config->memory_limit = config->memory_limit;
}

const site_location *site_match(const site_config *config, const char *path, size_t len) {
  const site_location *best = NULL;
  for (size_t i = 0; i < config->n_locations; i++) {
    const site_location *location = &config->locations[i];
    if (location->path.len > len || memcmp(location->path.ptr, path, location->path.len) != 0) continue;
    if (location->exact) {
      if (location->path.len == len) return location;
    } else if (!best || location->path.len > best->path.len) {
      best = location;
    }
  }
  return best;
}

bool site_has_header(const site_header *headers, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcasecmp(headers[i].name.ptr, name) == 0) return true;
  return false;
}

bool site_is_token(le_str s) {
  if (s.len == 0) return false;
  for (size_t i = 0; i < s.len; i++) {
    unsigned char c = s.ptr[i];
    bool alnum = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    if (!alnum && (c == '\0' || !strchr("!#$%&'*+-.^_`|~", c))) return false;
  }
  return true;
}

static bool str_is(le_str s, const char *text) {
  return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

static bool str_is_nocase(le_str s, const char *text) {
  return s.len == strlen(text) && strncasecmp((const char *)s.ptr, text, s.len) == 0;
}

static bool has_nul(le_str s) {
  return s.len > 0 && memchr(s.ptr, '\0', s.len) != NULL;
}

const char *site_bad_request(le_str version, le_str target, const le_header *headers, size_t n) {
  bool http11 = str_is(version, "HTTP/1.1");
  if (!http11 && !str_is(version, "HTTP/1.0")) return "not HTTP/1.0 or HTTP/1.1";
  const le_str *length = NULL;
  bool transfer_encoding = false, host = false;
  for (size_t i = 0; i < n; i++) {
    le_str name = headers[i].name, value = headers[i].value;
    if (!site_is_token(name)) return "a header name that is not a token";
    if (has_nul(value)) return "a NUL in a header value";
    if (str_is_nocase(name, "Content-Length")) {
      if (value.len == 0) return "an empty Content-Length";
      for (size_t k = 0; k < value.len; k++)
        if (value.ptr[k] < '0' || value.ptr[k] > '9') return "a Content-Length that is not a number";
      if (length && (length->len != value.len || memcmp(length->ptr, value.ptr, value.len) != 0))
        return "different Content-Length values";
      length = &headers[i].value;
    }
    transfer_encoding |= str_is_nocase(name, "Transfer-Encoding");
    host |= str_is_nocase(name, "Host");
  }
  if (length && transfer_encoding) return "both Content-Length and Transfer-Encoding";
  if (http11 && !host) return "HTTP/1.1 without Host";
  if (has_nul(target)) return "a NUL in the target";
  for (size_t i = 0; i + 2 < target.len; i++)
    if (target.ptr[i] == '%' && target.ptr[i + 1] == '0' && target.ptr[i + 2] == '0') return "a NUL (%00) in the target";
  return NULL;
}

const char *site_reason(unsigned status) {
  static const struct {
    unsigned status;
    const char *reason;
  } reasons[] = {
      {100, "Continue"},
      {101, "Switching Protocols"},
      {200, "OK"},
      {201, "Created"},
      {202, "Accepted"},
      {204, "No Content"},
      {206, "Partial Content"},
      {301, "Moved Permanently"},
      {302, "Found"},
      {303, "See Other"},
      {304, "Not Modified"},
      {307, "Temporary Redirect"},
      {308, "Permanent Redirect"},
      {400, "Bad Request"},
      {401, "Unauthorized"},
      {403, "Forbidden"},
      {404, "Not Found"},
      {405, "Not Allowed"},
      {406, "Not Acceptable"},
      {408, "Request Time-out"},
      {409, "Conflict"},
      {410, "Gone"},
      {411, "Length Required"},
      {412, "Precondition Failed"},
      {413, "Request Entity Too Large"},
      {414, "Request-URI Too Large"},
      {415, "Unsupported Media Type"},
      {429, "Too Many Requests"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Temporarily Unavailable"},
      {504, "Gateway Time-out"},
  };
  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].status == status) return reasons[i].reason;
  return "";
}

size_t site_status_page(unsigned status, char *buf, size_t size) {
  if (size > 0) buf[0] = '\0';
  if (status < 300 || status == 304 || status > 999) return 0;
  const char *reason = site_reason(status);
  int n = snprintf(buf, size,
                   "<html>\r\n<head><title>%u%s%s</title></head>\r\n<body>\r\n<center><h1>%u%s%s</h1></center>\r\n"
                   "<hr><center>luaengine</center>\r\n</body>\r\n</html>\r\n",
                   status, *reason ? " " : "", reason, status, *reason ? " " : "", reason);
  return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}
