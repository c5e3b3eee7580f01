#!/usr/bin/env python3
"""200 slow clients (slowloris: a request head trickled one byte a second, never finished) must
not stop a server from answering a normal request promptly.

    slowloris.py SERVER-COMMAND...

Run by ctest against both servers (servers.slowloris.<server>); bounded to about 10 s."""
import sys
import time

import serverlib

SLOW_CLIENTS = 200
TRICKLE_SECONDS = 6
PROMPT = 1.0  # seconds a normal request may take meanwhile


def main():
    checks = serverlib.Checks()
    with serverlib.Server(sys.argv[1:]) as server:
        slow = serverlib.slow_clients(server, SLOW_CLIENTS)
        latencies, answers = [], []
        started = time.monotonic()
        second = 0
        while time.monotonic() - started < TRICKLE_SECONDS:
            serverlib.trickle(slow)
            second += 1
            if second >= 2:  # every slow client has held its connection for a while
                t0 = time.monotonic()
                try:
                    answers.append(serverlib.get(server, "/ok", timeout=PROMPT + 4))
                except OSError as e:
                    answers.append(("error", str(e)))
                latencies.append(time.monotonic() - t0)
            time.sleep(max(0.0, started + second - time.monotonic()))
        for sock in slow:
            sock.close()
        print("normal requests among %d slow clients: %s" % (
            SLOW_CLIENTS, ", ".join("%.1f ms" % (l * 1000) for l in latencies)))
        checks.check(all(a == (200, b"ok\n") for a in answers), "every normal request answered: %r" % answers[:2])
        checks.check(max(latencies) < PROMPT, "each within %.1f s (slowest %.3f s)" % (PROMPT, max(latencies)))
        checks.check(serverlib.get(server, "/ok") == (200, b"ok\n"), "serving after the slow clients left")
        checks.check(server.stop() is not None, "stops on SIGTERM")
    checks.done()


if __name__ == "__main__":
    main()
