#!/usr/bin/env python3
"""Plain-request latency of an example server: N sequential GET /ok on a kept-alive connection
(a new one when the server closes it), p50 and p99. A measurement, not a test:

    latency.py [-n 1000] SERVER-COMMAND..."""
import sys
import time

import serverlib


def main():
    args = sys.argv[1:]
    n = 1000
    if args[:1] == ["-n"]:
        n, args = int(args[1]), args[2:]
    with serverlib.Server(args) as server:
        sock, buf, times = None, b"", []
        for _ in range(n):
            started = time.perf_counter()
            if sock is None:
                sock, buf = server.connect(), b""
            sock.sendall(b"GET /ok HTTP/1.1\r\nHost: t\r\n\r\n")
            status, headers, body, buf = serverlib.read_response(sock, buf)
            times.append(time.perf_counter() - started)
            if status != 200 or body != b"ok\n":
                raise SystemExit("unexpected answer: %d %r" % (status, body))
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = None
        times.sort()
        print("%s: %d requests, p50 %.3f ms, p99 %.3f ms, max %.3f ms" % (
            args[-1], n, times[n // 2] * 1000, times[n * 99 // 100] * 1000, times[-1] * 1000))
        server.stop()


if __name__ == "__main__":
    main()
