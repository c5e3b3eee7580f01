/*
 * cpp-server — the same JSON site config as c-examples/http-server, served by cpp-httplib
 * through the C++ wrapper include/luaengine.hpp:
 *
 *   cpp-server [--listen HOST:PORT] SITE.json     (port 0 picks a free port; SIGINT/SIGTERM stop)
 *
 * Each request goes through rewrite -> access -> content (or the location's `static` answer,
 * or 404) -> header_filter -> body_filter; cpp-httplib sends the response, then its logger hook
 * runs the log phase on the same thread.
 *
 * Waits: cpp-httplib runs each request to completion on one thread of its pool and has no way
 * to park a request and come back to it later. So a phase that yields (ngx.sleep) blocks its pool
 * thread on a condition variable until the request's wake callback (called on the engine's
 * clock thread) signals it, then resumes on that thread. The thread holds no Lua worker while it
 * waits (other requests run on the same worker meanwhile) and burns no CPU, but it is taken.
 * cpp-httplib also gives each connection a pool thread for its whole life: idle keep-alive time
 * (cut here to 1 s) and a slow client's trickle included, as its read timeout is per read, not
 * per request. So the pool grows, one thread per connection, up to kMaxConnections threads
 * (idle ones are reused): that many connections are served, sleep or trickle at once before new
 * ones queue. Stopping the server cuts waits short (503) and shuts its connections down. The C
 * server has none of these limits.
 */
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <strings.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "luaengine.hpp"
#include "siteconf.h"

namespace {

using luaengine::Status;

/* Connections served at once (a thread each); beyond, they wait for a thread. */
constexpr size_t kMaxConnections = 512;

struct SiteConfigFree {
  void operator()(site_config *config) const noexcept { site_config_free(config); }
};
using SiteConfig = std::unique_ptr<site_config, SiteConfigFree>;

std::string_view text(const site_text &t) { return std::string_view(t.ptr, t.len); }

/* The engine and every location's compiled scripts. */
class Site {
 public:
  explicit Site(SiteConfig config) : config_(std::move(config)), engine_(engine_config(*config_)) {
    scripts_.resize(config_->n_locations);
    for (size_t i = 0; i < config_->n_locations; i++)
      for (int phase = 0; phase < SITE_PHASES; phase++) scripts_[i][phase] = compile(config_->locations[i].scripts[phase]);
  }

  const site_config &config() const { return *config_; }
  const luaengine::Engine &engine() const { return engine_; }

  /* The location's script for a phase, or nullptr. */
  const luaengine::Script *script(const site_location *location, site_phase phase) const {
    if (!location) return nullptr;
    const luaengine::Script &script = scripts_[static_cast<size_t>(location - config_->locations)][phase];
    return script ? &script : nullptr;
  }

 private:
  static le_config engine_config(const site_config &site) {
    le_config config = le_config_default();
    site_engine_config(&site, &config);
    return config;
  }

  luaengine::Script compile(const site_lua &lua) const {
    try {
      if (lua.file) return engine_.compile_file(lua.file);
      if (lua.chunk) return engine_.compile(lua.chunk, text(lua.source));
      return luaengine::Script();
    } catch (const luaengine::Error &e) {
      throw std::runtime_error(std::string(config_->path) + ": " + lua.key + ": " + e.what());
    }
  }

  SiteConfig config_;
  luaengine::Engine engine_;
  std::vector<std::array<luaengine::Script, SITE_PHASES>> scripts_;
};

/* A request's wait for its wake callback. */
struct Wakeup {
  std::condition_variable cv;
  bool woken = false;
};

/* Every request waiting for its wake-up, so that stopping the server can cut the waits short. */
class Waits {
 public:
  /* The wake callback: called on the engine's clock thread. */
  void wake(Wakeup &wakeup) {
    std::lock_guard<std::mutex> lock(mutex_);
    wakeup.woken = true;
    wakeup.cv.notify_one();
  }

  /* Blocks until `wakeup` is woken (true) or the server stops (false). */
  bool wait(Wakeup &wakeup) {
    std::unique_lock<std::mutex> lock(mutex_);
    waiting_.insert(&wakeup);
    wakeup.cv.wait(lock, [&] { return wakeup.woken || stopping_; });
    waiting_.erase(&wakeup);
    wakeup.woken = false;
    return !stopping_;
  }

  void stop() {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (Wakeup *wakeup : waiting_) wakeup->cv.notify_one();
  }

 private:
  std::mutex mutex_;
  bool stopping_ = false;
  std::set<Wakeup *> waiting_;
};

/* Thrown out of a wait when the server stops. */
struct Stopping {};

/* cpp-httplib's task queue: a pool that starts a thread whenever a connection comes in and none
 * is idle, up to `max` threads. (cpp-httplib's own ThreadPool has a fixed size: 200 slow clients
 * held all of its threads and nothing else was answered.) */
class ConnectionPool : public httplib::TaskQueue {
 public:
  explicit ConnectionPool(size_t max) : max_(max) {}

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs_.push_back(std::move(fn));
    if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { work(); });
    else cv_.notify_one();
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread &thread : threads_) thread.join();
  }

 private:
  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      idle_++;
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      idle_--;
      if (jobs_.empty()) return;  // stopping, and every connection taken was served
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  const size_t max_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  size_t idle_ = 0;
  bool stopping_ = false;
};

/* The port of a socket address (0 for other families). */
uint16_t port_of(const sockaddr_storage &address) {
  if (address.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in &>(address).sin_port);
  if (address.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6 &>(address).sin6_port);
  return 0;
}

/* Shuts down every connected socket of this process on local `port`: the connections cpp-httplib
 * serves. It has no way to end them itself, and server.stop() joins their threads, so a client
 * trickling a request (each byte within the read timeout) held the stop up for as long as it
 * trickled. Their reads now return at once. */
void shutdown_connections(uint16_t port) {
  DIR *dir = opendir("/proc/self/fd");
  if (!dir) return;
  while (const dirent *entry = readdir(dir)) {
    int fd = std::atoi(entry->d_name);
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof local, peer_len = sizeof peer;
    if (fd > 2 && fd != dirfd(dir) && getsockname(fd, reinterpret_cast<sockaddr *>(&local), &local_len) == 0 &&
        port_of(local) == port && getpeername(fd, reinterpret_cast<sockaddr *>(&peer), &peer_len) == 0)
      shutdown(fd, SHUT_RDWR);
  }
  closedir(dir);
}

/* Each pool thread uses its own Lua worker (its number modulo the workers). */
uint32_t worker_hint() {
  static std::atomic<uint32_t> next{0};
  thread_local uint32_t slot = next++;
  return slot;
}

/* Frames the response: cpp-httplib sets Content-Length (and Connection) itself. */
void send(httplib::Response &res, unsigned status, const luaengine::Headers &headers, std::string_view body) {
  res.status = static_cast<int>(status);
  for (luaengine::Header header : headers) {
    std::string name(header.name);
    if (strcasecmp(name.c_str(), "Content-Length") != 0 && strcasecmp(name.c_str(), "Transfer-Encoding") != 0 &&
        strcasecmp(name.c_str(), "Connection") != 0)
      res.headers.emplace(std::move(name), std::string(header.value));
  }
  res.body.assign(body.data(), body.size());
}

/* A response no script or filter touches (413 before any phase, a failing filter, stopping). */
void send_page(httplib::Response &res, unsigned status) {
  char page[SITE_STATUS_PAGE_MAX];
  size_t len = site_status_page(status, page, sizeof page);
  std::vector<le_header> type{{luaengine::str("Content-Type"), luaengine::str("text/html")}};
  send(res, status, luaengine::Headers(type.data(), len ? 1 : 0), std::string_view(page, len));
}

/* Reports an engine error that is not a script's (scripts' errors are logged by the engine). */
void report(const char *what, const luaengine::Error &e) {
  le_result code = e.code();
  if (code != LE_ERR_RUNTIME && code != LE_ERR_BUDGET && code != LE_ERR_MEMORY && code != LE_ERR_ABORTED)
    std::cerr << "cpp-server: " << what << ": " << le_result_name(static_cast<uint32_t>(code)) << ": " << e.what() << "\n";
}

/* 400, then the connection closes: after a framing error the rest of its bytes mean nothing.
 * cpp-httplib 0.11 keeps a connection alive whatever the response's Connection header says, and
 * only a failing write ends it: the provider writes the page, then fails. */
void send_bad_request(httplib::Response &res) {
  char page[SITE_STATUS_PAGE_MAX];
  std::string body(page, site_status_page(400, page, sizeof page));
  res.status = 400;
  res.body.clear();
  res.set_header("Connection", "close");
  res.set_content_provider(body.size(), "text/html", [body](size_t, size_t, httplib::DataSink &sink) {
    sink.write(body.data(), body.size());
    return false;
  });
}

/* One request through the phases, on the pool thread that got it. */
class Exchange {
 public:
  Exchange(const Site &site, Waits &waits, const httplib::Request &req) : site_(site), waits_(waits), req_(req) {}

  void serve(httplib::Response &res) {
    try {
      start();
      run_phases(res);
    } catch (const Stopping &) {
      send_page(res, 503);
    } catch (const luaengine::Error &e) {
      report(phase_name_, e);
      if (request_) send_status(res, 500, luaengine::Headers(nullptr, 0));
      else send_page(res, 500);
    }
  }

  /* After cpp-httplib wrote the response. */
  void log() {
    const luaengine::Script *script = site_.script(location_, SITE_LOG);
    if (!script || !responded_) return;
    try {
      request_.run(LE_PHASE_LOG, *script);
    } catch (const luaengine::Error &e) {
      report("log", e);
    }
  }

 private:
  void start() {
    luaengine::RequestInit init;
    init.method = req_.method;
    init.path = req_.path;  // decoded by cpp-httplib, as nginx's $uri
    std::string_view target = req_.target;
    size_t question = target.find('?');
    if (question != std::string_view::npos) init.query = target.substr(question + 1);
    init.http_version = req_.version;
    init.scheme = "http";
    init.remote_addr = req_.remote_addr;
    for (const auto &header : req_.headers) init.add_header(header.first, header.second);
    request_ = site_.engine().request(init, worker_hint());
    request_.set_waker([this] { waits_.wake(wakeup_); });
    location_ = site_match(&site_.config(), req_.path.data(), req_.path.size());
  }

  void run_phases(httplib::Response &res) {
    int jumps = 0;
    for (site_phase phase = SITE_REWRITE;;) {
      phase_name_ = site_phase_name(phase);
      const luaengine::Script *script = site_.script(location_, phase);
      if (phase == SITE_CONTENT && !script) return send_static(res);
      Status status = script ? run(phase, *script) : Status::Ok;
      if (status == Status::Done) {
        luaengine::Response response = request_.response();
        if (response.headers_sent) return send_scripts_response(res);
        // ngx.exit(status) or ngx.redirect without output: nginx's special response.
        return send_status(res, response.status ? response.status : 500, response.headers);
      }
      if (phase == SITE_REWRITE && script) {
        luaengine::RequestView view = request_.inspect();
        if (view.location_jump) {
          if (++jumps > 10) {
            std::cerr << "cpp-server: rewrite or internal redirection cycle while processing \"" << req_.path << "\"\n";
            return send_status(res, 500, luaengine::Headers(nullptr, 0));
          }
          location_ = site_match(&site_.config(), view.path.data(), view.path.size());
          continue;  // the new location's rewrite
        }
      }
      if (phase == SITE_CONTENT) return send_scripts_response(res);
      phase = static_cast<site_phase>(phase + 1);
    }
  }

  /* Runs a phase to its end, waiting out its yields on this thread. */
  Status run(site_phase phase, const luaengine::Script &script) {
    Status status = request_.run(site_le_phase(phase), script);
    while (status == Status::Yield) {
      if (!complete_pending() && !waits_.wait(wakeup_)) throw Stopping();
      status = request_.resume();
    }
    return status;
  }

  /* Performs the host-driven waits: only body reads, as the site registers no async host
   * functions. The body is the one cpp-httplib read (bounded by client_max_body_size). */
  bool complete_pending() {
    bool any = false;
    for (auto ops = request_.pending(); !ops.empty(); ops = request_.pending()) {
      if (ops.front().name == "ngx.req.read_body") request_.complete(ops.front().id, req_.body);
      else request_.complete_error(ops.front().id, "no such host function");
      any = true;
    }
    return any;
  }

  /* header_filter on the response the request holds now; false when it failed. */
  bool header_filter() {
    const luaengine::Script *script = site_.script(location_, SITE_HEADER_FILTER);
    if (!script) return true;
    try {
      request_.run(LE_PHASE_HEADER_FILTER, *script);
      return true;
    } catch (const luaengine::Error &e) {
      report("header_filter", e);
      return false;
    }
  }

  /* The response scripts produced: through the filters, then out. */
  void send_scripts_response(httplib::Response &res) {
    const luaengine::Script *body_filter = site_.script(location_, SITE_BODY_FILTER);
    try {
      if (!header_filter()) return send_page(res, 500);
      if (body_filter) request_.run(LE_PHASE_BODY_FILTER, *body_filter);
    } catch (const luaengine::Error &e) {
      report("body_filter", e);
      return send_page(res, 500);
    }
    luaengine::Response response = request_.response();
    send(res, response.status, response.headers, response.body);
    responded_ = true;
  }

  /* The host's own response, handed to the filters, then out. */
  void send_hosts_response(httplib::Response &res, unsigned status, const std::vector<le_header> &headers,
                           std::string_view body) {
    request_.set_response(static_cast<uint16_t>(status), headers);
    if (!header_filter()) return send_page(res, 500);
    std::string filtered(body);
    if (const luaengine::Script *body_filter = site_.script(location_, SITE_BODY_FILTER)) {
      try {
        filtered = std::string(request_.body_filter(*body_filter, body, true).data);
      } catch (const luaengine::Error &e) {
        report("body_filter", e);
        return send_page(res, 500);
      }
    }
    luaengine::Response response = request_.response();
    send(res, response.status, response.headers, filtered);
    responded_ = true;
  }

  /* An error page (or a body-less status) the host makes, keeping the headers scripts set
   * before ngx.exit. `headers` may point into the request: they are copied first. */
  void send_status(httplib::Response &res, unsigned status, const luaengine::Headers &headers) {
    std::vector<std::string> bytes;
    for (luaengine::Header header : headers) {
      bytes.emplace_back(header.name);
      bytes.emplace_back(header.value);
    }
    std::vector<le_header> copy;
    for (size_t i = 0; i < bytes.size(); i += 2) copy.push_back({luaengine::str(bytes[i]), luaengine::str(bytes[i + 1])});
    char page[SITE_STATUS_PAGE_MAX];
    size_t len = site_status_page(status, page, sizeof page);
    if (len) copy.push_back({luaengine::str("Content-Type"), luaengine::str("text/html")});
    send_hosts_response(res, status, copy, std::string_view(page, len));
  }

  /* The location's `static` answer, with default_type when it names no Content-Type; 404
   * without one. */
  void send_static(httplib::Response &res) {
    const site_static *answer = location_ ? &location_->response : nullptr;
    if (!answer || !answer->set) return send_status(res, 404, luaengine::Headers(nullptr, 0));
    const site_config &site = site_.config();
    std::vector<le_header> headers;
    for (size_t i = 0; i < answer->n_headers; i++)
      headers.push_back({luaengine::str(text(answer->headers[i].name)), luaengine::str(text(answer->headers[i].value))});
    if (site.default_type.len && !site_has_header(answer->headers, answer->n_headers, "Content-Type"))
      headers.push_back({luaengine::str("Content-Type"), luaengine::str(text(site.default_type))});
    send_hosts_response(res, answer->status, headers, text(answer->body));
  }

  const Site &site_;
  Waits &waits_;
  const httplib::Request &req_;
  const char *phase_name_ = "request";
  Wakeup wakeup_;
  // After wakeup_, so that the request (and its waker) goes first.
  luaengine::Request request_;
  const site_location *location_ = nullptr;
  bool responded_ = false;
};

/* The exchange whose response this thread is writing; the logger takes it. */
thread_local std::unique_ptr<Exchange> current;

int usage() {
  std::cerr << "usage: cpp-server [--listen HOST:PORT] SITE.json\n";
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  const char *config_path = nullptr, *listen = nullptr;
  for (int i = 1; i < argc; i++) {
    if (std::strcmp(argv[i], "--listen") == 0 && i + 1 < argc) listen = argv[++i];
    else if (argv[i][0] == '-' || config_path) return usage();
    else config_path = argv[i];
  }
  if (!config_path) return usage();

  // SIGINT and SIGTERM are taken by sigwait below: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  char error[1024];
  site_config *loaded = nullptr;
  if (site_config_load(config_path, &loaded, error, sizeof error) != 0) {
    std::cerr << "cpp-server: " << error << "\n";
    return 1;
  }
  std::string host = loaded->listen_host;
  int port = loaded->listen_port;
  if (listen) {
    char *listen_host = nullptr;
    uint16_t listen_port = 0;
    if (site_parse_listen(listen, &listen_host, &listen_port) != 0) {
      std::cerr << "cpp-server: --listen: expected host:port, [v6]:port or port, got \"" << listen << "\"\n";
      site_config_free(loaded);
      return 2;
    }
    host = listen_host;
    port = listen_port;
    std::free(listen_host);
  }

  std::unique_ptr<Site> site;
  try {
    site = std::make_unique<Site>(SiteConfig(loaded));
  } catch (const std::exception &e) {
    std::cerr << "cpp-server: " << e.what() << "\n";
    return 1;
  }

  Waits waits;
  httplib::Server server;
  server.new_task_queue = [] { return new ConnectionPool(kMaxConnections); };
  size_t limit = site->config().client_max_body_size;
  server.set_payload_max_length(limit ? limit : std::numeric_limits<size_t>::max());
  // A kept-alive connection holds its pool thread while idle: keep that short. A client silent
  // for 5 s in the middle of a request, or not reading its response for 5 s, is dropped.
  server.set_keep_alive_timeout(1);
  server.set_keep_alive_max_count(1000);  // nginx's keepalive_requests (cpp-httplib's is 5)
  server.set_read_timeout(5);
  server.set_write_timeout(5);
  // Responses go out in several writes (head, body): with Nagle's algorithm on, the client's
  // delayed ACK held each one back ~40 ms.
  server.set_tcp_nodelay(true);
  httplib::Server::Handler handler = [&](const httplib::Request &req, httplib::Response &res) {
    current = std::make_unique<Exchange>(*site, waits, req);
    current->serve(res);
  };
  // Before the body is read: the 400 goes out and the connection closes, its other bytes unread.
  server.set_pre_routing_handler([](const httplib::Request &req, httplib::Response &res) {
    std::vector<le_header> headers;
    for (const auto &[name, value] : req.headers) headers.push_back({luaengine::str(name), luaengine::str(value)});
    const char *why = site_bad_request(luaengine::str(req.version), luaengine::str(req.target), headers.data(),
                                       headers.size());
    if (!why) return httplib::Server::HandlerResponse::Unhandled;
    std::cerr << "cpp-server: 400 for \"" << req.target << "\": " << why << "\n";
    send_bad_request(res);
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Get(".*", handler).Post(".*", handler).Put(".*", handler).Patch(".*", handler);
  server.Delete(".*", handler).Options(".*", handler);
  server.set_logger([](const httplib::Request &, const httplib::Response &) {
    if (current) current->log();
    current.reset();
  });
  // Errors cpp-httplib answers by itself (413 over client_max_body_size, 400) get the same page.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request &, httplib::Response &res) {
    if (current || !res.body.empty() || res.content_provider_) return httplib::Server::HandlerResponse::Unhandled;
    if (res.status == 400) send_bad_request(res);  // a request line or framing it could not parse
    else send_page(res, static_cast<unsigned>(res.status));
    return httplib::Server::HandlerResponse::Handled;
  }));

  if (host.find(':') != std::string::npos) server.set_address_family(AF_INET6);
  // The listening socket, seen here before cpp-httplib binds it (this replaces its default
  // options, of which SO_REUSEADDR is the one that matters).
  int listening = -1;
  server.set_socket_options([&listening](int sock) {
    int on = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    listening = sock;
  });
  int bound = port == 0 ? server.bind_to_any_port(host) : server.bind_to_port(host, port) ? port : -1;
  // cpp-httplib 0.11 listens with a backlog of 5: a burst of connections overflowed it and the
  // dropped SYNs were retried after 1, 3, 7... s. listen() again takes the system's maximum.
  if (bound < 0 || ::listen(listening, SOMAXCONN) != 0) {
    std::cerr << "cpp-server: cannot listen on " << host << ":" << port << "\n";
    return 1;
  }
  std::thread listener([&server] { server.listen_after_bind(); });
  bool v6 = host.find(':') != std::string::npos;
  std::cout << "cpp-server: listening on http://" << (v6 ? "[" : "") << host << (v6 ? "]" : "") << ":" << bound
            << "/ (libluaengine " << luaengine::version() << ", " << luaengine::backend() << ", "
            << site->engine().workers() << " Lua workers, up to " << kMaxConnections << " connections at once)"
            << std::endl;

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  // Scripts running away would hold server.stop() up: it joins the threads that run them.
  site->engine().shutdown();
  waits.stop();
  server.stop();
  shutdown_connections(static_cast<uint16_t>(bound));
  listener.join();
  std::cout << "cpp-server: stopped (signal " << signal_number << ")" << std::endl;
  return 0;
}
