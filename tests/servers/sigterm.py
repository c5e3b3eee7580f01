#!/usr/bin/env python3
"""SIGTERM stops the server within a few seconds while a runaway script (`while true do end`)
is running and slow clients trickle requests: the stop must wait neither for a script that never
ends nor for a client that never finishes.

    sigterm.py SERVER-COMMAND...

Run by ctest (servers.sigterm.<server>). It serves site.json with the time budget turned off, so
only the engine's shutdown (le_engine_shutdown, which the servers call on SIGTERM) can stop the
runaway."""
import json
import sys
import tempfile
import threading
import time

import serverlib

STOP_WITHIN = 3.0
SLOW_CLIENTS = 20


def trickle(socks, stop):
    """A byte to each slow client every 0.2 s (well within any read timeout) until `stop`."""
    while not stop.wait(0.2):
        serverlib.trickle(socks)


def main():
    checks = serverlib.Checks()
    with open(serverlib.SITE) as f:
        site = json.load(f)
    site["lua"]["time_budget"] = 0
    with tempfile.NamedTemporaryFile("w", suffix=".json") as unbudgeted:
        json.dump(site, unbudgeted)
        unbudgeted.flush()
        run(checks, unbudgeted.name)
    checks.done()


def run(checks, site):
    with serverlib.Server(sys.argv[1:], site) as server:
        slow = serverlib.slow_clients(server, SLOW_CLIENTS)
        stop_trickling = threading.Event()
        trickler = threading.Thread(target=trickle, args=(slow, stop_trickling))
        trickler.start()
        spinning = [server.connect(timeout=10) for _ in range(2)]  # one per Lua worker
        for sock in spinning:
            sock.sendall(b"GET /spin HTTP/1.1\r\nHost: t\r\n\r\n")
        time.sleep(0.3)  # the runaways are running
        checks.check(server.proc.poll() is None, "the server runs")
        stopped = server.stop(timeout=10)
        stop_trickling.set()
        trickler.join()
        checks.check(stopped is not None and stopped < STOP_WITHIN,
                     "exited within %.0f s of SIGTERM with runaways and slow clients (%s)" % (
                         STOP_WITHIN, "%.2f s" % stopped if stopped is not None else "did not exit in 10 s"))
        checks.check(server.proc.returncode == 0, "exit status 0 (got %s)" % server.proc.returncode)
        for sock in spinning + slow:
            sock.close()


if __name__ == "__main__":
    main()
