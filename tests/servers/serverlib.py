"""Starts an example server on a loopback port for the tests in this folder, and speaks raw
HTTP/1.1 to it over sockets (so that malformed requests reach it byte for byte)."""
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time

SITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "site.json")


class Server:
    """The server command with `--listen 127.0.0.1:0 SITE` appended, started and stopped."""

    def __init__(self, command, site=None):
        self.proc = subprocess.Popen(command + ["--listen", "127.0.0.1:0", site or SITE], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        line = b""
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line = self.proc.stdout.readline()
                found = re.search(rb"listening on http://([0-9.]+):(\d+)/", line)
                if found:
                    self.host, self.port = found.group(1).decode(), int(found.group(2))
                    return
            if self.proc.poll() is not None or (ready and not line):
                break
        self.proc.kill()
        raise SystemExit("the server did not start: %r %r" % (line, self.proc.stderr.read()))

    def connect(self, timeout=5):
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def rss_kb(self):
        with open("/proc/%d/status" % self.proc.pid) as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self, timeout=10):
        """SIGTERM, then the seconds it took to exit (None if it did not within `timeout`)."""
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
            return time.monotonic() - started
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


def read_response(sock, buf=b""):
    """One response from `sock`: (status, headers dict with lowercase names, body, leftover
    bytes). Raises on a timeout or a connection closed before a whole response."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a response (got %r)" % buf[:200])
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower().decode()] = value.strip().decode()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += sock.recv(65536)
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += sock.recv(65536)
            body, buf = body + buf[:size], buf[size + 2:]
            if size == 0:
                return status, headers, body, buf
    length = int(headers.get("content-length", "0"))
    while len(buf) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed in the body")
        buf += data
    return status, headers, buf[:length], buf[length:]


def get(server, path, timeout=10):
    """One GET on a fresh connection: (status, body)."""
    with server.connect(timeout) as sock:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path.encode())
        status, _, body, _ = read_response(sock)
        return status, body


def slow_clients(server, n):
    """`n` slow clients (slowloris): connections that sent the start of a request head, which
    `trickle` goes on with a byte at a time and nothing ever ends."""
    socks = []
    for _ in range(n):
        sock = server.connect()
        sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        sock.setblocking(False)
        socks.append(sock)
    return socks


def trickle(socks):
    """One more byte of its endless header to each slow client."""
    for sock in socks:
        try:
            sock.send(b"a")
        except OSError:
            pass  # the server gave up on it: fine


class Checks:
    """Counts failed checks; `done` prints the summary and exits 1 if any failed."""

    def __init__(self):
        self.failed = 0

    def check(self, ok, what):
        print(("ok: " if ok else "FAIL: ") + what)
        sys.stdout.flush()
        if not ok:
            self.failed += 1
        return ok

    def done(self):
        print("%d failed" % self.failed)
        sys.exit(1 if self.failed else 0)
