#!/usr/bin/env python3
"""A few seconds of mixed traffic with a runaway script (`while true do end`) and a memory bomb
among normal requests, on the site config of this folder (lua.time_budget "1s",
lua.memory_limit "64m"): no wrong answer on the normal locations, the runaway and the bomb answer
500 within the budget, the next request is served, and the server's RSS stays bounded.

    soak.py SERVER-COMMAND...

Run by ctest (servers.soak.<server>); bounded to about 15 s."""
import random
import threading
import time

import serverlib

SECONDS = 6
NORMAL_CLIENTS = 4
BUDGET = 1.0  # lua.time_budget in site.json
SLACK = 1.5  # what answering may add to it on a busy 2-core machine
# Measured peaks with the cap: C server ~75 MB, C++ server 140-210 MB (its Lua runs on many pool
# threads, and the bombs' freed memory lingers in their malloc arenas). Without the cap, within
# the bomb's 1 s: C server ~235 MB, C++ server ~415 MB.
RSS_LIMIT_MB = 300


def normal_client(server, seed, deadline, results):
    rng = random.Random(seed)
    sock, buf = None, b""
    while time.monotonic() < deadline:
        kind = rng.choice(["ok", "echo", "sleep", "static"])
        if kind == "echo":
            body = bytes(rng.choice(b"abcdefxyz") for _ in range(rng.randrange(0, 2000)))
            request = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
            want = b"POST /echo " + body
        else:
            path = {"ok": "/ok", "sleep": "/sleep", "static": "/s/%d" % rng.randrange(1000)}[kind]
            request = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode()
            want = {"ok": b"ok\n", "sleep": b"slept\n", "static": b"static\n"}[kind]
        try:
            if sock is None:
                sock, buf = server.connect(timeout=10), b""
            sock.sendall(request)
            status, headers, got, buf = serverlib.read_response(sock, buf)
            results.append((kind, status == 200 and got == want, status, got[:80]))
            if headers.get("connection", "").lower() == "close":
                sock.close()
                sock = None
        except OSError as e:
            results.append((kind, False, "error", str(e)))
            sock = None
    if sock:
        sock.close()


def main():
    import sys
    checks = serverlib.Checks()
    with serverlib.Server(sys.argv[1:]) as server:
        deadline = time.monotonic() + SECONDS
        results, rss = [], []
        clients = [threading.Thread(target=normal_client, args=(server, i, deadline, results))
                   for i in range(NORMAL_CLIENTS)]
        for client in clients:
            client.start()
        bad = []  # (path, status, seconds) of the runaway and the bomb, and what came next
        rounds = 0
        while time.monotonic() < deadline:
            for path in ["/spin", "/bomb"]:
                started = time.monotonic()
                try:
                    status, _ = serverlib.get(server, path, timeout=BUDGET + SLACK + 5)
                except OSError as e:
                    status = "error: %s" % e
                elapsed = time.monotonic() - started
                after = serverlib.get(server, "/ok")
                if status != 500 or elapsed > BUDGET + SLACK or after != (200, b"ok\n"):
                    bad.append((path, status, round(elapsed, 2), after))
                rss.append(server.rss_kb() / 1024)
            rounds += 1
        for client in clients:
            client.join()
        wrong = [r for r in results if not r[1]]
        print("%d normal requests (%s), %d rounds of /spin and /bomb, peak RSS %.0f MB" % (
            len(results), ", ".join("%s %d" % (k, sum(r[0] == k for r in results))
                                    for k in ["ok", "echo", "sleep", "static"]), rounds, max(rss)))
        checks.check(len(results) > 100 and not wrong, "no wrong answer on the normal locations: %r" % wrong[:3])
        checks.check(rounds >= 2 and not bad, "runaway and bomb: 500 within %.1f s, then /ok served: %r" % (
            BUDGET + SLACK, bad[:3]))
        checks.check(max(rss) < RSS_LIMIT_MB, "RSS stayed under %d MB (peak %.0f MB)" % (RSS_LIMIT_MB, max(rss)))
        checks.check(server.stop() is not None, "stops on SIGTERM")
    checks.done()


if __name__ == "__main__":
    main()
