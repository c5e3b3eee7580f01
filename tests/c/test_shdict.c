/*
 * Shared dicts from the host's side: a host pre-seeds and inspects ngx.shared.DICT through
 * le_dict_*, scripts see what the host stored and the host sees what scripts stored, and every
 * failure comes back with lua-nginx-module's message.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <math.h>
#include <time.h>

#include "le_test.h"

/* The smallest capacity an engine accepts. */
#define SMALL_DICT (32 * 1024)

static void sleep_ms(long ms) {
  struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

static le_engine *dict_engine(size_t capacity) {
  le_dict_config dicts[] = {{le_s("d"), capacity}, {le_s("other"), SMALL_DICT}};
  le_config cfg = le_config_default();
  cfg.workers = 2;
  cfg.log_level = LE_LOG_CRIT;
  cfg.shared_dicts = dicts;
  cfg.n_shared_dicts = 2;
  le_engine *engine = NULL;
  CHECK_OK(le_engine_new, &cfg, &engine);
  return engine;
}

static le_dict *dict_of(le_engine *engine, const char *name) {
  le_dict *dict = NULL;
  CHECK_OK(le_engine_dict, engine, le_s(name), &dict);
  CHECK(dict != NULL);
  return dict;
}

static le_value value_of(le_value_type type) {
  le_value v;
  memset(&v, 0, sizeof v);
  v.type_ = type;
  return v;
}

static le_value string_value(const char *bytes, size_t len) {
  le_value v = value_of(LE_VALUE_STRING);
  v.string = le_sn(bytes, len);
  return v;
}

static le_value number_value(double n) {
  le_value v = value_of(LE_VALUE_NUMBER);
  v.number = n;
  return v;
}

/* Stores `value` with `mode`; returns forcible. */
static bool put(le_dict *dict, le_dict_mode mode, const char *key, le_value value, double exptime, uint32_t flags) {
  bool forcible = true;
  CHECK_OK(le_dict_set, dict, mode, le_s(key), &value, exptime, flags, &forcible);
  return forcible;
}

/* A dict call that must fail with `code` and lua-nginx-module's `message`. */
#define DICT_FAILS(code, message, fn, ...)                \
  do {                                                    \
    le_error *le_de_ = EXPECT_ERROR(code, fn, __VA_ARGS__); \
    CHECK_STR(le_error_message(le_de_), message);         \
    le_error_free(le_de_);                                \
  } while (0)

static void host_seeds_and_lua_reads(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *d = dict_of(engine, "d");
  CHECK(!put(d, LE_DICT_SET, "s", string_value("a\0b", 3), 0, 7));
  CHECK(!put(d, LE_DICT_SET, "n", number_value(2.5), 0, 0));
  le_value i = value_of(LE_VALUE_INTEGER);
  i.integer = 42;
  CHECK(!put(d, LE_DICT_SET, "i", i, 0, 0));
  le_value b = value_of(LE_VALUE_BOOLEAN);
  b.boolean = true;
  CHECK(!put(d, LE_DICT_SET, "b", b, 0, 0));
  CHECK(!put(d, LE_DICT_SET, "empty", string_value("", 0), 0, 0));
  CONTENT_SAYS(engine,
               "local d = ngx.shared.d\n"
               "local s, flags = d:get('s')\n"
               "ngx.say(#s, ' ', s:byte(2), ' ', flags, ' ', d:get('n'), ' ', d:get('i') + 1, ' ', d:get('b'), "
               "' [', d:get('empty'), '] ', type(d:get('empty')), ' ', d:get('missing'))",
               "3 0 7 2.5 43 true [] string nil\n");
  /* The other dict is another store. */
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.other:get('s'))", "nil\n");
  le_dict_free(d);
  le_engine_free(engine);
}

static void lua_writes_and_host_reads(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  CONTENT_SAYS(engine,
               "local d = ngx.shared.d\n"
               "d:set('s', 'hello', 0, 3) d:set('n', 1.5) d:set('b', false) d:set('i', 10) d:lpush('l', 'x')\n"
               "ngx.say('ok')",
               "ok\n");
  le_dict *d = dict_of(engine, "d");
  le_value v;
  uint32_t flags = 99;
  CHECK_OK(le_dict_get, d, le_s("s"), &v, &flags);
  CHECK_EQ(v.type_, LE_VALUE_STRING);
  CHECK_STR(v.string, "hello");
  CHECK_EQ(flags, 3);
  le_dict_value_free(&v);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  le_dict_value_free(&v); /* freeing twice is harmless: it is nil now */
  CHECK_OK(le_dict_get, d, le_s("n"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_NUMBER);
  CHECK(v.number == 1.5);
  le_dict_value_free(&v);
  CHECK_OK(le_dict_get, d, le_s("i"), &v, &flags);
  CHECK_EQ(v.type_, LE_VALUE_NUMBER); /* the dict stores doubles */
  CHECK(v.number == 10);
  CHECK_EQ(flags, 0);
  CHECK_OK(le_dict_get, d, le_s("b"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_BOOLEAN);
  CHECK(!v.boolean);
  flags = 99;
  CHECK_OK(le_dict_get, d, le_s("missing"), &v, &flags);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK_EQ(flags, 0);
  /* A list is not a scalar; the host's value is left as it was. */
  v = number_value(1);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value is a list", le_dict_get, d, le_s("l"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_NUMBER);
  /* A write from the host is seen by the next script, on any worker. */
  CHECK(!put(d, LE_DICT_SET, "s", string_value("bye", 3), 0, 0));
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('s'))", "bye\n");
  le_dict_free(d);
  le_engine_free(engine);
}

static void store_modes_and_their_failures(void) {
  le_engine *engine = dict_engine(SMALL_DICT);
  le_dict *d = dict_of(engine, "d");
  le_value one = string_value("1", 1);
  CHECK(!put(d, LE_DICT_ADD, "k", one, 0, 0));
  DICT_FAILS(LE_ERR_INVALID_STATE, "exists", le_dict_set, d, LE_DICT_ADD, le_s("k"), &one, 0, 0, NULL);
  DICT_FAILS(LE_ERR_INVALID_STATE, "exists", le_dict_set, d, LE_DICT_SAFE_ADD, le_s("k"), &one, 0, 0, NULL);
  CHECK(!put(d, LE_DICT_REPLACE, "k", string_value("2", 1), 0, 0));
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_set, d, LE_DICT_REPLACE, le_s("absent"), &one, 0, 0, NULL);
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('k'))", "2\n");
  /* Storing nil deletes, as does le_dict_delete; deleting an absent key is fine. */
  CHECK(!put(d, LE_DICT_SET, "k", value_of(LE_VALUE_NIL), 0, 0));
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('k'))", "nil\n");
  CHECK(!put(d, LE_DICT_SET, "k", string_value("3", 1), 0, 0));
  CHECK_OK(le_dict_delete, d, le_s("k"));
  CHECK_OK(le_dict_delete, d, le_s("k"));
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('k'))", "nil\n");
  /* Three 10 KB values fill 32 KiB: set evicts the least recently used (forcible), the safe
   * modes refuse, and a value bigger than the dict never fits. */
  static char big[40000];
  memset(big, 'x', sizeof big);
  CHECK(!put(d, LE_DICT_SET, "a", string_value(big, 10000), 0, 0));
  CHECK(!put(d, LE_DICT_SET, "b", string_value(big, 10000), 0, 0));
  CHECK(!put(d, LE_DICT_SET, "c", string_value(big, 10000), 0, 0));
  le_value v = string_value(big, 10000);
  DICT_FAILS(LE_ERR_MEMORY, "no memory", le_dict_set, d, LE_DICT_SAFE_SET, le_s("e"), &v, 0, 0, NULL);
  DICT_FAILS(LE_ERR_MEMORY, "no memory", le_dict_set, d, LE_DICT_SAFE_ADD, le_s("e"), &v, 0, 0, NULL);
  CHECK(put(d, LE_DICT_SET, "e", v, 0, 0));
  CONTENT_SAYS(engine, "local d = ngx.shared.d ngx.say(d:get('a'), ' ', #d:get('b'), ' ', #d:get('e'))",
               "nil 10000 10000\n");
  v = string_value(big, sizeof big);
  DICT_FAILS(LE_ERR_MEMORY, "no memory", le_dict_set, d, LE_DICT_SET, le_s("huge"), &v, 0, 0, NULL);
  le_dict_free(d);
  le_engine_free(engine);
}

static void incr_from_the_host(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *d = dict_of(engine, "d");
  double out = -1, init = 10;
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_incr, d, le_s("n"), 1, NULL, 0, &out);
  CHECK(out == -1);
  CHECK_OK(le_dict_incr, d, le_s("n"), 1, &init, 0, &out);
  CHECK(out == 11);
  CHECK_OK(le_dict_incr, d, le_s("n"), -0.5, &init, 0, &out); /* init only applies to an absent key */
  CHECK(out == 10.5);
  CHECK_OK(le_dict_incr, d, le_s("n"), 2, NULL, 0, NULL);
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:incr('n', 1))", "13.5\n");
  CHECK_OK(le_dict_incr, d, le_s("n"), 0, NULL, 0, &out);
  CHECK(out == 13.5);
  /* init_ttl: the counter expires. */
  CHECK_OK(le_dict_incr, d, le_s("window"), 1, &init, 0.05, &out);
  double ttl = 0;
  CHECK_OK(le_dict_ttl, d, le_s("window"), &ttl);
  CHECK(ttl > 0 && ttl <= 0.05);
  sleep_ms(100);
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_incr, d, le_s("window"), 1, NULL, 0, &out);
  CHECK(!put(d, LE_DICT_SET, "s", string_value("x", 1), 0, 0));
  DICT_FAILS(LE_ERR_INVALID_STATE, "not a number", le_dict_incr, d, le_s("s"), 1, &init, 0, &out);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "init_ttl must be a finite number of seconds >= 0, not -1", le_dict_incr, d,
             le_s("n"), 1, &init, -1, &out);
  le_dict_free(d);
  le_engine_free(engine);
}

static void ttl_and_expire(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *d = dict_of(engine, "d");
  CHECK(!put(d, LE_DICT_SET, "forever", number_value(1), 0, 0));
  CHECK(!put(d, LE_DICT_SET, "brief", number_value(1), 0.05, 0));
  double ttl = -1;
  CHECK_OK(le_dict_ttl, d, le_s("forever"), &ttl);
  CHECK(ttl == 0);
  CHECK_OK(le_dict_ttl, d, le_s("brief"), &ttl);
  CHECK(ttl > 0 && ttl <= 0.05);
  CHECK_OK(le_dict_expire, d, le_s("forever"), 100);
  CHECK_OK(le_dict_ttl, d, le_s("forever"), &ttl);
  CHECK(ttl > 99 && ttl <= 100);
  CONTENT_SAYS(engine, "ngx.say(math.ceil(ngx.shared.d:ttl('forever')))", "100\n");
  CHECK_OK(le_dict_expire, d, le_s("forever"), 0);
  CHECK_OK(le_dict_ttl, d, le_s("forever"), &ttl);
  CHECK(ttl == 0);
  /* Lua's expiry is the host's too. */
  CONTENT_SAYS(engine, "local ok = ngx.shared.d:set('lua', 1, 0.05) ngx.say(ok)", "true\n");
  sleep_ms(100);
  le_value v = number_value(7);
  CHECK_OK(le_dict_get, d, le_s("brief"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK_OK(le_dict_get, d, le_s("lua"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_ttl, d, le_s("brief"), &ttl);
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_expire, d, le_s("brief"), 1);
  DICT_FAILS(LE_ERR_INVALID_STATE, "not found", le_dict_ttl, d, le_s("absent"), &ttl);
  le_dict_free(d);
  le_engine_free(engine);
}

/* Pushes `value` at the tail of list `key`; returns the new length. */
static size_t rpush(le_dict *dict, const char *key, le_value value) {
  size_t length = 0;
  CHECK_OK(le_dict_rpush, dict, le_s(key), &value, &length);
  return length;
}

/* A host and its scripts share one queue: either side pushes, the other pops, in order. */
static void lists_shared_with_lua(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *q = dict_of(engine, "d");
  size_t length = 0;
  CHECK_OK(le_dict_llen, q, le_s("q"), &length);
  CHECK_EQ(length, 0);
  CHECK_EQ(rpush(q, "q", string_value("a\0b", 3)), 1);
  CHECK_EQ(rpush(q, "q", number_value(2.5)), 2);
  le_value i = value_of(LE_VALUE_INTEGER);
  i.integer = 3;
  CHECK_EQ(rpush(q, "q", i), 3);
  le_value first = string_value("first", 5);
  CHECK_OK(le_dict_lpush, q, le_s("q"), &first, NULL); /* the length is optional */
  CHECK_OK(le_dict_llen, q, le_s("q"), &length);
  CHECK_EQ(length, 4);
  CONTENT_SAYS(engine,
               "local q = ngx.shared.d\n"
               "local a, b = q:lpop('q'), q:lpop('q')\n"
               "ngx.say(q:llen('q'), ' ', a, ' ', #b, ' ', b:byte(2), ' ', q:rpop('q'), ' ', q:lpop('q'), ' ', "
               "q:lpop('q'), ' ', q:llen('q'))",
               "2 first 3 0 3 2.5 nil 0\n");
  /* The script's pushes, popped by the host: lpush/rpop and rpush/lpop are both FIFO. */
  CONTENT_SAYS(engine,
               "local q = ngx.shared.d\n"
               "q:rpush('q', 'x') q:rpush('q', 10) ngx.say(q:rpush('q', 'z'))",
               "3\n");
  le_value v;
  CHECK_OK(le_dict_lpop, q, le_s("q"), &v);
  CHECK_EQ(v.type_, LE_VALUE_STRING);
  CHECK_STR(v.string, "x");
  le_dict_value_free(&v);
  CHECK_OK(le_dict_rpop, q, le_s("q"), &v);
  CHECK_EQ(v.type_, LE_VALUE_STRING);
  CHECK_STR(v.string, "z");
  le_dict_value_free(&v);
  CHECK_OK(le_dict_lpop, q, le_s("q"), &v);
  CHECK_EQ(v.type_, LE_VALUE_NUMBER); /* the dict stores doubles */
  CHECK(v.number == 10);
  le_dict_value_free(&v);
  /* Empty: the key is gone, and a pop reads nil, which is not an error. */
  v = number_value(7);
  CHECK_OK(le_dict_lpop, q, le_s("q"), &v);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK_OK(le_dict_rpop, q, le_s("never"), &v);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  le_dict_value_free(&v);
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('q'), ' ', #ngx.shared.d:get_keys())", "nil 0\n");
  /* An empty string is an element like any other. */
  CHECK_EQ(rpush(q, "q", string_value("", 0)), 1);
  CHECK_OK(le_dict_rpop, q, le_s("q"), &v);
  CHECK_EQ(v.type_, LE_VALUE_STRING);
  CHECK_EQ(v.string.len, 0);
  le_dict_value_free(&v);
  CHECK_EQ(le_dict_free_space(q), le_dict_capacity(q));
  le_dict_free(q);
  le_engine_free(engine);
}

/* List operations on a scalar fail with "value not a list", scalar reads of a list with "value
 * is a list", and only strings and numbers go into a list; nothing is written on failure. */
static void list_type_errors(void) {
  le_engine *engine = dict_engine(SMALL_DICT);
  le_dict *d = dict_of(engine, "d");
  CHECK(!put(d, LE_DICT_SET, "s", string_value("scalar", 6), 0, 0));
  le_value one = number_value(1);
  size_t length = 99;
  DICT_FAILS(LE_ERR_INVALID_STATE, "value not a list", le_dict_lpush, d, le_s("s"), &one, &length);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value not a list", le_dict_rpush, d, le_s("s"), &one, &length);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value not a list", le_dict_llen, d, le_s("s"), &length);
  CHECK_EQ(length, 99);
  le_value v = number_value(7);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value not a list", le_dict_lpop, d, le_s("s"), &v);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value not a list", le_dict_rpop, d, le_s("s"), &v);
  CHECK_EQ(v.type_, LE_VALUE_NUMBER);
  /* The same errors as a script gets. */
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:rpush('s', 1))", "nilvalue not a list\n");
  CHECK_EQ(rpush(d, "l", one), 1);
  DICT_FAILS(LE_ERR_INVALID_STATE, "value is a list", le_dict_get_stale, d, le_s("l"), &v, NULL, NULL);
  le_value b = value_of(LE_VALUE_BOOLEAN), nil = value_of(LE_VALUE_NIL), map = value_of(LE_VALUE_MAP);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "bad value type", le_dict_rpush, d, le_s("l"), &b, &length);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "bad value type", le_dict_lpush, d, le_s("l"), &nil, &length);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "bad value type", le_dict_rpush, d, le_s("new"), &map, &length);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "empty key", le_dict_rpush, d, le_s(""), &one, &length);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "empty key", le_dict_lpop, d, le_s(""), &v);
  CHECK_OK(le_dict_llen, d, le_s("l"), &length);
  CHECK_EQ(length, 1);
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('new'))", "nil\n");
  /* An element bigger than the dict never fits. */
  static char big[40000];
  memset(big, 'x', sizeof big);
  le_value huge = string_value(big, sizeof big);
  DICT_FAILS(LE_ERR_MEMORY, "no memory", le_dict_rpush, d, le_s("l"), &huge, &length);
  le_dict_free(d);
  le_engine_free(engine);
}

/* get_stale reads what expired until its memory is reclaimed, and says it is stale. */
static void get_stale_after_expiry(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *d = dict_of(engine, "d");
  CHECK(!put(d, LE_DICT_SET, "k", string_value("old", 3), 0.05, 5));
  le_value v;
  uint32_t flags = 0;
  bool stale = true;
  CHECK_OK(le_dict_get_stale, d, le_s("k"), &v, &flags, &stale);
  CHECK_STR(v.string, "old");
  CHECK_EQ(flags, 5);
  CHECK(!stale);
  le_dict_value_free(&v);
  CONTENT_SAYS(engine, "ngx.shared.d:set('lua', 1.5, 0.05) ngx.say('ok')", "ok\n");
  sleep_ms(100);
  CHECK_OK(le_dict_get, d, le_s("k"), &v, NULL);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK_OK(le_dict_get_stale, d, le_s("k"), &v, &flags, &stale);
  CHECK_EQ(v.type_, LE_VALUE_STRING);
  CHECK_STR(v.string, "old");
  CHECK_EQ(flags, 5);
  CHECK(stale);
  le_dict_value_free(&v);
  CHECK_OK(le_dict_get_stale, d, le_s("lua"), &v, NULL, &stale); /* flags are optional */
  CHECK_EQ(v.type_, LE_VALUE_NUMBER);
  CHECK(v.number == 1.5);
  CHECK(stale);
  CHECK_OK(le_dict_get_stale, d, le_s("lua"), &v, NULL, NULL); /* and so is stale */
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get_stale('k'))", "old5true\n");
  /* An absent key: nil, no flags, not stale. */
  flags = 9;
  CHECK_OK(le_dict_get_stale, d, le_s("absent"), &v, &flags, &stale);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK_EQ(flags, 0);
  CHECK(!stale);
  /* Once reclaimed, the stale value is gone. */
  size_t flushed = 0;
  CHECK_OK(le_dict_flush_expired, d, 0, &flushed);
  CHECK_EQ(flushed, 2);
  CHECK_OK(le_dict_get_stale, d, le_s("k"), &v, &flags, &stale);
  CHECK_EQ(v.type_, LE_VALUE_NIL);
  CHECK(!stale);
  le_dict_free(d);
  le_engine_free(engine);
}

typedef struct {
  char seen[256];
  size_t n;
} key_list;

static void collect_key(le_str key, void *user_data) {
  key_list *keys = user_data;
  size_t used = strlen(keys->seen);
  snprintf(keys->seen + used, sizeof keys->seen - used, "%s%.*s", keys->n++ ? "," : "", (int)key.len,
           (const char *)key.ptr);
}

static void keys_flush_and_space(void) {
  le_engine *engine = dict_engine(1024 * 1024);
  le_dict *d = dict_of(engine, "d");
  CHECK_EQ(le_dict_capacity(d), 1024 * 1024);
  CHECK_EQ(le_dict_free_space(d), 1024 * 1024);
  CHECK(!put(d, LE_DICT_SET, "a", number_value(1), 0, 0));
  CHECK(!put(d, LE_DICT_SET, "b", number_value(2), 0, 0));
  CONTENT_SAYS(engine, "local ok = ngx.shared.d:set('c', 3) ngx.say(ok)", "true\n");
  CHECK(le_dict_free_space(d) < le_dict_capacity(d));
  key_list keys = {{0}, 0};
  CHECK_OK(le_dict_keys, d, 0, collect_key, &keys);
  CHECK(strcmp(keys.seen, "c,b,a") == 0); /* most recently used first */
  key_list two = {{0}, 0};
  CHECK_OK(le_dict_keys, d, 2, collect_key, &two);
  CHECK_EQ(two.n, 2);
  /* flush_all expires everything, flush_expired reclaims the memory. */
  CHECK_OK(le_dict_flush_all, d);
  key_list none = {{0}, 0};
  CHECK_OK(le_dict_keys, d, 0, collect_key, &none);
  CHECK_EQ(none.n, 0);
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:get('c'))", "nil\n");
  CHECK(le_dict_free_space(d) < le_dict_capacity(d));
  size_t flushed = 0;
  CHECK_OK(le_dict_flush_expired, d, 1, &flushed);
  CHECK_EQ(flushed, 1);
  CHECK_OK(le_dict_flush_expired, d, 0, &flushed);
  CHECK_EQ(flushed, 2);
  CHECK_OK(le_dict_flush_expired, d, 0, NULL);
  CHECK_EQ(le_dict_free_space(d), le_dict_capacity(d));
  CONTENT_SAYS(engine, "ngx.say(ngx.shared.d:free_space() == ngx.shared.d:capacity())", "true\n");
  le_dict_free(d);
  le_engine_free(engine);
}

static void bad_arguments_are_refused(void) {
  le_engine *engine = dict_engine(SMALL_DICT);
  le_dict *d = NULL;
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "the engine has no shared dict named 'nope'", le_engine_dict, engine,
             le_s("nope"), &d);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_dict, NULL, le_s("d"), &d);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_dict, engine, le_s("d"), NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_engine_dict, engine, le_s("\xff"), &d);
  CHECK(d == NULL);
  d = dict_of(engine, "d");
  le_value v = number_value(1), table = value_of(LE_VALUE_MAP), unknown = value_of(99);
  double out;
  size_t length;
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "empty key", le_dict_set, d, LE_DICT_SET, le_s(""), &v, 0, 0, NULL);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "empty key", le_dict_get, d, le_s(""), &v, NULL);
  static char long_key[65536];
  memset(long_key, 'k', sizeof long_key);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "key too long", le_dict_incr, d, le_sn(long_key, sizeof long_key), 1, NULL, 0,
             &out);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "bad value type", le_dict_set, d, LE_DICT_SET, le_s("k"), &table, 0, 0, NULL);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "bad value type", le_dict_set, d, LE_DICT_SET, le_s("k"), &unknown, 0, 0, NULL);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "5 is not an le_dict_mode", le_dict_set, d, 5, le_s("k"), &v, 0, 0, NULL);
  DICT_FAILS(LE_ERR_INVALID_ARGUMENT, "exptime must be a finite number of seconds >= 0, not -1", le_dict_set, d,
             LE_DICT_SET, le_s("k"), &v, -1, 0, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_set, d, LE_DICT_SET, le_s("k"), &v, NAN, 0, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_expire, d, le_s("k"), INFINITY);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_set, d, LE_DICT_SET, le_s("k"), NULL, 0, 0, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_set, d, LE_DICT_SET, le_sn(NULL, 3), &v, 0, 0, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_get, d, le_s("k"), NULL, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_ttl, d, le_s("k"), NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_keys, d, 0, NULL, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_get_stale, d, le_s("k"), NULL, NULL, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_lpush, d, le_s("k"), NULL, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_rpush, d, le_sn(NULL, 3), &v, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_lpop, d, le_s("k"), NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_rpop, d, le_s("k"), NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_llen, d, le_s("k"), NULL);
  /* A NULL dict fails (or reads as empty) everywhere. */
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_get, NULL, le_s("k"), &v, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_set, NULL, LE_DICT_SET, le_s("k"), &v, 0, 0, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_delete, NULL, le_s("k"));
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_incr, NULL, le_s("k"), 1, NULL, 0, &out);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_expire, NULL, le_s("k"), 1);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_keys, NULL, 0, collect_key, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_get_stale, NULL, le_s("k"), &v, NULL, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_lpush, NULL, le_s("k"), &v, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_rpush, NULL, le_s("k"), &v, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_lpop, NULL, le_s("k"), &v);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_rpop, NULL, le_s("k"), &v);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_llen, NULL, le_s("k"), &length);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_flush_all, NULL);
  CHECK_FAILS(LE_ERR_INVALID_ARGUMENT, le_dict_flush_expired, NULL, 0, NULL);
  CHECK_EQ(le_dict_capacity(NULL), 0);
  CHECK_EQ(le_dict_free_space(NULL), 0);
  le_dict_value_free(NULL);
  le_dict_free(NULL);
  /* Nothing above changed the dict. */
  CHECK_EQ(le_dict_free_space(d), le_dict_capacity(d));
  le_dict_free(d);
  le_engine_free(engine);
}

static void a_handle_outlives_its_engine(void) {
  le_engine *engine = dict_engine(SMALL_DICT);
  le_dict *d = dict_of(engine, "d");
  le_dict *again = dict_of(engine, "d");
  CONTENT_SAYS(engine, "ngx.shared.d:set('k', 'from lua') ngx.say('ok')", "ok\n");
  le_engine_free(engine);
  le_dict_free(again);
  le_value v;
  CHECK_OK(le_dict_get, d, le_s("k"), &v, NULL);
  CHECK_STR(v.string, "from lua");
  le_dict_value_free(&v);
  CHECK(!put(d, LE_DICT_SET, "k", number_value(1), 0, 0));
  le_dict_free(d);
}

TEST_MAIN(
    TEST_CASE(host_seeds_and_lua_reads),
    TEST_CASE(lua_writes_and_host_reads),
    TEST_CASE(store_modes_and_their_failures),
    TEST_CASE(incr_from_the_host),
    TEST_CASE(ttl_and_expire),
    TEST_CASE(keys_flush_and_space),
    TEST_CASE(lists_shared_with_lua),
    TEST_CASE(list_type_errors),
    TEST_CASE(get_stale_after_expiry),
    TEST_CASE(bad_arguments_are_refused),
    TEST_CASE(a_handle_outlives_its_engine))
