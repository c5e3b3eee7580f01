/*
 * luaengine.hpp — a header-only C++17 wrapper of the C ABI in luaengine.h.
 *
 *   luaengine::Engine engine(config);                      // le_config, e.g. le_config_default()
 *   luaengine::Script content = engine.compile("content", "ngx.say('hello ', ngx.var.uri)");
 *   luaengine::RequestInit init;
 *   init.method = "GET";
 *   init.path = "/t";
 *   init.add_header("Host", "example.com");
 *   luaengine::Request request = engine.request(init);
 *   if (request.run(LE_PHASE_CONTENT, content) == luaengine::Status::Done) {
 *     luaengine::Response response = request.response();   // valid until the next call on it
 *     std::cout << response.status << ' ' << response.body;
 *   }
 *
 * Handles: Engine, Script, Request and Dict own their C handle and free it in their destructor.
 * They are move-only (a moved-from object holds nothing; using it throws `Error` with
 * LE_ERR_INVALID_ARGUMENT). Engine, Script and Dict are thread-safe; a Request is used by one
 * thread at a time, as in C.
 *
 * Errors are exceptions: every failure of the C API (an `le_result` other than LE_OK, or
 * LE_STATUS_ERROR from a phase) throws `luaengine::Error`, a std::runtime_error carrying the
 * code and, for Lua errors, the chunk, line and traceback. So `run` and `resume` return only
 * Status::Ok, Done or Yield. Nothing here throws anything else except std::bad_alloc.
 *
 * Views (Response, RequestView, BodyChunk, Pending) point into the request, as the C views do:
 * they stay valid until the next call that takes the same request.
 */
#ifndef LUAENGINE_HPP
#define LUAENGINE_HPP

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "luaengine.h"

namespace luaengine {

/* A le_str over the bytes of `s` (not copied: `s` must outlive its use). */
inline le_str str(std::string_view s) noexcept {
  return le_str{reinterpret_cast<const uint8_t *>(s.data()), s.size()};
}

/* The bytes of a le_str. */
inline std::string_view view(le_str s) noexcept {
  return s.len ? std::string_view(reinterpret_cast<const char *>(s.ptr), s.len) : std::string_view();
}

inline std::string_view version() noexcept { return le_version(); }
inline std::string_view backend() noexcept { return le_backend(); }

/* What every failing call throws. */
class Error : public std::runtime_error {
 public:
  Error(le_result code, const std::string &message, std::string chunk = {}, uint32_t line = 0,
        std::string traceback = {})
      : std::runtime_error(message), code_(code), chunk_(std::move(chunk)), line_(line), traceback_(std::move(traceback)) {}

  /* Takes the C error (freed here); `code` is used when there is none. */
  static Error adopt(le_result code, le_error *err) {
    std::unique_ptr<le_error, void (*)(le_error *)> owned(err, le_error_free);
    if (!err) return Error(code, le_result_name(static_cast<uint32_t>(code)));
    return Error(le_error_code(err), std::string(view(le_error_message(err))), std::string(view(le_error_chunk(err))),
                 le_error_line(err), std::string(view(le_error_traceback(err))));
  }

  le_result code() const noexcept { return code_; }
  /* The Lua chunk the error was raised in, or empty. */
  const std::string &chunk() const noexcept { return chunk_; }
  /* Its line, or 0. */
  uint32_t line() const noexcept { return line_; }
  const std::string &traceback() const noexcept { return traceback_; }

 private:
  le_result code_;
  std::string chunk_;
  uint32_t line_;
  std::string traceback_;
};

namespace detail {

/* A struct that carries its size (see "Versions" in luaengine.h): zeroed, its size set. */
template <class T>
T sized() noexcept {
  T value{};
  value.size = sizeof value;
  return value;
}

/* Calls `c_call(&err)`, a C function returning le_result, and throws on failure. (The error is
 * read only after the call: as a sibling argument it could be read before the call wrote it.) */
template <class F>
void call(F c_call) {
  le_error *err = nullptr;
  le_result result = c_call(&err);
  if (result != LE_OK) throw Error::adopt(result, err);
}

/* The same for a function returning le_status (a phase run). */
template <class F>
le_status run(F c_call) {
  le_error *err = nullptr;
  le_status status = c_call(&err);
  if (status == LE_STATUS_ERROR) throw Error::adopt(LE_ERR_INTERNAL, err);
  return status;
}

/* A view reader, whose failure has no error object. */
inline void check(le_result result) {
  if (result != LE_OK) throw Error::adopt(result, nullptr);
}

template <class T>
T *require(T *handle, const char *what) {
  if (!handle) throw Error(LE_ERR_INVALID_ARGUMENT, std::string(what) + " holds no handle (moved from?)");
  return handle;
}

template <class T, void (*Free)(T *)>
struct Deleter {
  void operator()(T *handle) const noexcept { Free(handle); }
};

}  // namespace detail

/* What a phase run or resume returned (LE_STATUS_ERROR is thrown instead). */
enum class Status { Ok = LE_STATUS_OK, Done = LE_STATUS_DONE, Yield = LE_STATUS_YIELD };

struct Header {
  std::string_view name, value;
};

/* The headers of a view, iterable as Header values. */
class Headers {
 public:
  class iterator {
   public:
    explicit iterator(const le_header *at) noexcept : at_(at) {}
    Header operator*() const noexcept { return Header{view(at_->name), view(at_->value)}; }
    iterator &operator++() noexcept {
      ++at_;
      return *this;
    }
    bool operator!=(const iterator &other) const noexcept { return at_ != other.at_; }

   private:
    const le_header *at_;
  };

  Headers(const le_header *items, size_t n) noexcept : items_(items), n_(n) {}
  iterator begin() const noexcept { return iterator(items_); }
  iterator end() const noexcept { return iterator(items_ + n_); }
  size_t size() const noexcept { return n_; }
  Header operator[](size_t i) const noexcept { return Header{view(items_[i].name), view(items_[i].value)}; }
  /* The first header named `name` (exact match, as scripts set it), or an empty view. */
  std::string_view get(std::string_view name) const noexcept {
    for (Header header : *this)
      if (header.name == name) return header.value;
    return {};
  }
  /* The C array, to hand back to le_request_set_response. */
  const le_header *data() const noexcept { return items_; }

 private:
  const le_header *items_;
  size_t n_;
};

/* le_response_view: what the scripts produced. */
struct Response {
  uint16_t status;
  bool headers_sent;
  bool exited;
  int64_t exit_code;
  Headers headers;
  std::string_view body;
};

/* le_request_view: the request as scripts left it. */
struct RequestView {
  std::string_view method, path, query;
  Headers headers;
  Headers variables;
  bool location_jump;
  /* The body as scripts left it, and whether one replaced it (ngx.req.set_body_data...). */
  std::string_view body;
  bool body_changed;
};

/* What body_filter made of a chunk. */
struct BodyChunk {
  Status status;
  std::string_view data;
  bool eof;
};

/* A host-driven wait of a suspended request. */
struct Pending {
  uint64_t id;
  std::string_view name;
  const le_value *args;
  size_t n_args;
};

/* The request snapshot, built field by field; strings are not copied until Engine::request. */
struct RequestInit {
  std::string_view method, path, query, http_version, scheme, remote_addr, body;
  bool has_body = false;
  /* Optional: the buffer the strings lie in (le_request_init.buffer), copied in one piece. */
  std::string_view buffer;
  std::vector<le_header> headers;

  void add_header(std::string_view name, std::string_view value) { headers.push_back(le_header{str(name), str(value)}); }

  le_request_init raw() const noexcept {
    le_request_init init = detail::sized<le_request_init>();
    init.method = str(method);
    init.path = str(path);
    init.query = str(query);
    init.http_version = str(http_version);
    init.scheme = str(scheme);
    init.remote_addr = str(remote_addr);
    init.body = str(body);
    init.has_body = has_body;
    init.buffer = str(buffer);
    init.headers = headers.data();
    init.n_headers = headers.size();
    return init;
  }
};

/* A compiled script (le_script). */
class Script {
 public:
  Script() noexcept = default;
  /* Takes ownership of a handle from the C API. */
  explicit Script(le_script *handle) noexcept : handle_(handle) {}

  const le_script *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

 private:
  std::unique_ptr<le_script, detail::Deleter<le_script, le_script_free>> handle_;
};

/* A request bound to one worker (le_request). */
class Request {
 public:
  Request() noexcept = default;
  /* Takes ownership of a handle from the C API. */
  explicit Request(le_request *handle) noexcept : handle_(handle) {}
  Request(Request &&) noexcept = default;
  /* Frees the old request before its waker goes: a wake call in flight still has it. */
  Request &operator=(Request &&other) noexcept {
    if (this != &other) {
      handle_.reset();
      waker_ = std::move(other.waker_);
      handle_ = std::move(other.handle_);
    }
    return *this;
  }

  le_request *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  uint64_t id() const noexcept { return le_request_id(handle_.get()); }
  bool suspended() const noexcept { return le_request_is_suspended(handle_.get()); }

  /* Runs one phase's script: Status::Ok, Done or Yield; script errors throw Error. */
  Status run(le_phase phase, const Script &script) {
    const le_script *s = detail::require(script.get(), "Script");
    return static_cast<Status>(detail::run([&](le_error **err) { return le_request_run(live(), phase, s, err); }));
  }

  /* Continues a phase that yielded. */
  Status resume() {
    return static_cast<Status>(detail::run([&](le_error **err) { return le_request_resume(live(), err); }));
  }

  /* Ends a waiting phase without resuming it (a client that went away); later phases, such as
   * log, still run. */
  void cancel() {
    detail::call([&](le_error **err) { return le_request_cancel(live(), err); });
  }

  Response response() {
    le_response_view v = detail::sized<le_response_view>();
    detail::check(le_request_response(live(), &v));
    return Response{v.status, v.headers_sent, v.exited, v.exit_code, Headers(v.headers, v.n_headers), view(v.body)};
  }

  RequestView inspect() {
    le_request_view v = detail::sized<le_request_view>();
    detail::check(le_request_inspect(live(), &v));
    return RequestView{view(v.method),
                       view(v.path),
                       view(v.query),
                       Headers(v.headers, v.n_headers),
                       Headers(v.variables, v.n_variables),
                       v.location_jump,
                       view(v.body),
                       v.body_changed};
  }

  /* Hands the host's response (status and headers, copied) to the filters. */
  void set_response(uint16_t status, const le_header *headers, size_t n) {
    detail::call([&](le_error **err) { return le_request_set_response(live(), status, headers, n, err); });
  }
  void set_response(uint16_t status, const std::vector<le_header> &headers) {
    set_response(status, headers.data(), headers.size());
  }

  /* Runs body_filter on one chunk of the host's body. */
  BodyChunk body_filter(const Script &script, std::string_view chunk, bool eof) {
    const le_script *s = detail::require(script.get(), "Script");
    le_body_chunk out = detail::sized<le_body_chunk>();
    le_status status =
        detail::run([&](le_error **err) { return le_request_body_filter(live(), s, str(chunk), eof, &out, err); });
    return BodyChunk{static_cast<Status>(status), view(out.data), out.eof};
  }

  /* `wake` is called on the engine's clock thread when an engine-driven wait (ngx.sleep) is
   * over; resume the request from any thread after it. It must not throw (that terminates). */
  void set_waker(std::function<void()> wake) {
    auto holder = std::make_unique<std::function<void()>>(std::move(wake));
    detail::call([&](le_error **err) { return le_request_set_waker(live(), &Request::wake_trampoline, holder.get(), err); });
    waker_ = std::move(holder);  // the old one is no longer called
  }

  /* The host-driven waits of a suspended request. */
  std::vector<Pending> pending() {
    const le_pending *ops = nullptr;
    size_t n = 0;
    detail::check(le_request_pending(live(), &ops, &n));
    std::vector<Pending> out;
    out.reserve(n);
    for (size_t i = 0; i < n; i++) out.push_back(Pending{ops[i].id, view(ops[i].name), ops[i].args, ops[i].n_args});
    return out;
  }

  void complete(uint64_t id, const le_value *values, size_t n) {
    detail::call([&](le_error **err) { return le_request_complete(live(), id, values, n, err); });
  }
  /* Completes a wait with one string (a body read's body). */
  void complete(uint64_t id, std::string_view string) {
    le_value value{};
    value.type_ = LE_VALUE_STRING;
    value.string = str(string);
    complete(id, &value, 1);
  }
  void complete_error(uint64_t id, std::string_view message) {
    detail::call([&](le_error **err) { return le_request_complete_error(live(), id, str(message), err); });
  }

 private:
  le_request *live() const { return detail::require(handle_.get(), "Request"); }

  static void wake_trampoline(le_request *, void *user_data) noexcept {
    (*static_cast<std::function<void()> *>(user_data))();
  }

  // Declared before handle_ so that it is destroyed after it: le_request_free waits for a wake
  // call in flight, which uses the function.
  std::unique_ptr<std::function<void()>> waker_;
  std::unique_ptr<le_request, detail::Deleter<le_request, le_request_free>> handle_;
};

/* A value read from a shared dict: a number or a string (its bytes copied). */
struct DictValue {
  bool is_number = false;
  double number = 0;
  std::string string;
  uint32_t flags = 0;
  /* get_stale: the entry had expired. */
  bool stale = false;
};

/* A handle on one of the engine's shared dicts (le_dict), the host's side of
 * ngx.shared.<name>. Thread-safe; it keeps the dict alive. Values are numbers or strings. */
class Dict {
 public:
  Dict() noexcept = default;
  /* Takes ownership of a handle from the C API. */
  explicit Dict(le_dict *handle) noexcept : handle_(handle) {}

  le_dict *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }

  /* dict:get: nothing when the key is absent or expired. */
  std::optional<DictValue> get(std::string_view key) const {
    DictValue out;
    return read(out, [&](le_value *value, le_error **err) {
      return le_dict_get(live(), str(key), value, &out.flags, err);
    });
  }
  /* dict:get_stale: an expired entry still reads (with `stale` set) until it is reclaimed. */
  std::optional<DictValue> get_stale(std::string_view key) const {
    DictValue out;
    return read(out, [&](le_value *value, le_error **err) {
      return le_dict_get_stale(live(), str(key), value, &out.flags, &out.stale, err);
    });
  }

  /* dict:set (or `mode`: LE_DICT_SAFE_SET, LE_DICT_ADD, ...); `exptime` in seconds, 0 = never.
   * Returns whether live entries were evicted to make room. */
  bool set(std::string_view key, std::string_view value, double exptime = 0, uint32_t flags = 0,
           le_dict_mode mode = LE_DICT_SET) const {
    return store(key, string_value(value), exptime, flags, mode);
  }
  bool set(std::string_view key, double value, double exptime = 0, uint32_t flags = 0,
           le_dict_mode mode = LE_DICT_SET) const {
    return store(key, number_value(value), exptime, flags, mode);
  }
  void remove(std::string_view key) const {
    detail::call([&](le_error **err) { return le_dict_delete(live(), str(key), err); });
  }
  /* dict:incr; with `init`, an absent key starts from it (expiring after `init_ttl`). */
  double incr(std::string_view key, double by, std::optional<double> init = std::nullopt, double init_ttl = 0) const {
    double out = 0;
    const double *start = init ? &*init : nullptr;
    detail::call([&](le_error **err) { return le_dict_incr(live(), str(key), by, start, init_ttl, &out, err); });
    return out;
  }
  /* dict:ttl: seconds left, 0 for an entry that never expires. */
  double ttl(std::string_view key) const {
    double out = 0;
    detail::call([&](le_error **err) { return le_dict_ttl(live(), str(key), &out, err); });
    return out;
  }
  void expire(std::string_view key, double exptime) const {
    detail::call([&](le_error **err) { return le_dict_expire(live(), str(key), exptime, err); });
  }

  /* List operations: elements are strings or numbers; pushes return the new length. */
  size_t lpush(std::string_view key, std::string_view value) const {
    return push(le_dict_lpush, key, string_value(value));
  }
  size_t rpush(std::string_view key, std::string_view value) const {
    return push(le_dict_rpush, key, string_value(value));
  }
  size_t lpush(std::string_view key, double value) const { return push(le_dict_lpush, key, number_value(value)); }
  size_t rpush(std::string_view key, double value) const { return push(le_dict_rpush, key, number_value(value)); }
  /* Nothing when the list is empty or absent. */
  std::optional<DictValue> lpop(std::string_view key) const { return pop(le_dict_lpop, key); }
  std::optional<DictValue> rpop(std::string_view key) const { return pop(le_dict_rpop, key); }
  size_t llen(std::string_view key) const {
    size_t out = 0;
    detail::call([&](le_error **err) { return le_dict_llen(live(), str(key), &out, err); });
    return out;
  }

  void flush_all() const {
    detail::call([&](le_error **err) { return le_dict_flush_all(live(), err); });
  }
  /* Frees up to `max` expired entries (0 = all); returns how many. */
  size_t flush_expired(size_t max = 0) const {
    size_t out = 0;
    detail::call([&](le_error **err) { return le_dict_flush_expired(live(), max, &out, err); });
    return out;
  }
  size_t capacity() const noexcept { return le_dict_capacity(handle_.get()); }
  size_t free_space() const noexcept { return le_dict_free_space(handle_.get()); }

 private:
  using Push = le_result (*)(const le_dict *, le_str, const le_value *, size_t *, le_error **);
  using Pop = le_result (*)(const le_dict *, le_str, le_value *, le_error **);

  const le_dict *live() const { return detail::require(handle_.get(), "Dict"); }

  static le_value string_value(std::string_view s) noexcept {
    le_value value{};
    value.type_ = LE_VALUE_STRING;
    value.string = str(s);
    return value;
  }
  static le_value number_value(double n) noexcept {
    le_value value{};
    value.type_ = LE_VALUE_NUMBER;
    value.number = n;
    return value;
  }

  bool store(std::string_view key, const le_value &value, double exptime, uint32_t flags, le_dict_mode mode) const {
    bool forcible = false;
    detail::call(
        [&](le_error **err) { return le_dict_set(live(), mode, str(key), &value, exptime, flags, &forcible, err); });
    return forcible;
  }
  size_t push(Push fn, std::string_view key, const le_value &value) const {
    size_t length = 0;
    detail::call([&](le_error **err) { return fn(live(), str(key), &value, &length, err); });
    return length;
  }
  std::optional<DictValue> pop(Pop fn, std::string_view key) const {
    DictValue out;
    return read(out, [&](le_value *value, le_error **err) { return fn(live(), str(key), value, err); });
  }
  /* Runs a call that writes a value the caller must free; copies it into `out`. */
  template <class F>
  static std::optional<DictValue> read(DictValue &out, F f) {
    le_value value{};
    detail::call([&](le_error **err) { return f(&value, err); });
    std::optional<DictValue> result;
    if (value.type_ != LE_VALUE_NIL) {
      out.is_number = value.type_ == LE_VALUE_NUMBER;
      out.number = value.number;
      out.string.assign(view(value.string));
      result = std::move(out);
    }
    le_dict_value_free(&value);
    return result;
  }

  std::unique_ptr<le_dict, detail::Deleter<le_dict, le_dict_free>> handle_;
};

/* An engine (le_engine): workers, code cache, shared dicts. */
class Engine {
 public:
  Engine() : Engine(le_config_default()) {}
  /* Copies what the config points to; host function user data must outlive the engine. */
  explicit Engine(const le_config &config) {
    le_engine *handle = nullptr;
    detail::call([&](le_error **err) { return le_engine_new(&config, &handle, err); });
    handle_.reset(handle);
  }

  le_engine *get() const noexcept { return handle_.get(); }
  explicit operator bool() const noexcept { return handle_ != nullptr; }
  uint32_t workers() const noexcept { return le_engine_worker_count(handle_.get()); }

  le_stats stats() const {
    le_stats out = detail::sized<le_stats>();
    detail::check(le_engine_stats(live(), &out));
    return out;
  }

  /* Stops every running script (a runaway included) and fails every later phase run: for a
   * server that is stopping (see le_engine_shutdown). */
  void shutdown() const { le_engine_shutdown(live()); }

  /* Checks file scripts now; returns how many changed. */
  size_t reload() const {
    size_t reloaded = 0;
    detail::call([&](le_error **err) { return le_engine_reload(live(), &reloaded, err); });
    return reloaded;
  }

  Script compile(std::string_view name, std::string_view source) const {
    le_script *script = nullptr;
    detail::call([&](le_error **err) { return le_script_compile(live(), str(name), str(source), &script, err); });
    return Script(script);
  }

  /* A script that follows its file (see le_script_compile_file). */
  Script compile_file(std::string_view path) const {
    le_script *script = nullptr;
    detail::call([&](le_error **err) { return le_script_compile_file(live(), str(path), &script, err); });
    return Script(script);
  }

  /* The shared dict `name`, as declared in le_config.shared_dicts. */
  Dict dict(std::string_view name) const {
    le_dict *dict = nullptr;
    detail::call([&](le_error **err) { return le_engine_dict(live(), str(name), &dict, err); });
    return Dict(dict);
  }

  Request request(const RequestInit &init, uint32_t worker_hint = LE_WORKER_ANY) const {
    le_request_init raw = init.raw();
    le_request *request = nullptr;
    detail::call([&](le_error **err) { return le_request_new(live(), &raw, worker_hint, &request, err); });
    return Request(request);
  }

 private:
  le_engine *live() const { return detail::require(handle_.get(), "Engine"); }

  std::unique_ptr<le_engine, detail::Deleter<le_engine, le_engine_free>> handle_;
};

}  // namespace luaengine

#endif /* LUAENGINE_HPP */
