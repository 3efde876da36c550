#!/usr/bin/env python3
"""Signals: SIGTERM drains in-flight requests and exits 0; SIGINT exits promptly."""

import signal
import socket
import threading
import time

import weirtest as wt

CRASH_SIGNALS = {-signal.SIGSEGV, -signal.SIGABRT, -signal.SIGBUS, -signal.SIGILL, -signal.SIGFPE}


def connect_refused(addr, timeout=0.5) -> bool:
    """True if a TCP connect to addr is refused; a successful connect is closed at once."""
    try:
        s = socket.create_connection(addr, timeout=timeout)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


class SignalsTest(wt.WeirTestCase):

    def _in_flight(self, w, path, timeout=30):
        """Starts curl on path in a thread; returns (thread, result holder)."""
        holder = {}

        def run():
            holder["r"] = wt.curl(w.url(path), timeout=timeout)
            holder["t"] = time.monotonic()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t, holder

    def test_sigterm_drains_in_flight_request(self):
        o = self.origin("a", wt.fixed("fast"), paths={"/slow": wt.slow(1.5, "slow-done")})
        w = self.start_weir(wt.basic_config({"app": o.address}, shutdown_grace="10s"))
        addr = w.addr()
        t, holder = self._in_flight(w, "/slow")
        self.assertTrue(wt.wait_until(lambda: o.request_count >= 1, 5),
                        "the slow request did not reach the origin")
        t_sig = time.monotonic()
        w.send_signal(signal.SIGTERM)
        # New connections are refused once weir stops accepting (well before the slow response).
        refused = wt.wait_until(lambda: connect_refused(addr), 1.0, interval=0.05)
        t_refused = time.monotonic() - t_sig
        self.assertTrue(refused, "a new connection was still accepted 1 s after SIGTERM")
        t.join(timeout=30)
        self.assertFalse(t.is_alive(), "the in-flight request did not finish")
        r = holder["r"]
        self.assertEqual(r.rc, 0, f"in-flight request failed after SIGTERM: {r}")
        self.assertStatus(r, 200, "in-flight request during SIGTERM")
        self.assertEqual(r.body, b"slow-done")
        self.assertLess(t_refused, holder["t"] - t_sig,
                        "new connections were only refused after the in-flight request finished")
        code = w.wait(15)
        exited = time.monotonic()
        self.assertIsNotNone(code, "weir did not exit within 15 s of SIGTERM")
        self.assertEqual(code, 0, f"weir exit code after SIGTERM\n{w.log_text(last=30)}")
        # Nothing may outlive the drained request: its upstream connection, done while draining,
        # is closed rather than kept (with its timer, it once held the exit for 5 s).
        self.assertLess(exited - holder["t"], 3.0,
                        f"weir exited {exited - holder['t']:.1f}s after the last request finished")

    def test_sigterm_with_idle_keepalive_connection_exits_promptly(self):
        # Just idle (still reading with a buffer), and parked (quiet for longer than weir's park
        # delay of 100 ms: only a descriptor in the worker's parking lot).
        for quiet in (0.0, 0.5):
            with self.subTest(quiet=quiet):
                o = self.origin(f"a{quiet}", wt.fixed("x"))
                w = self.start_weir(wt.basic_config({"app": o.address}, shutdown_grace="10s"))
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                    r, _ = c.read_final_response()
                    self.assertStatus(r, 200, "GET before SIGTERM")
                    time.sleep(quiet)
                    t0 = time.monotonic()
                    w.send_signal(signal.SIGTERM)
                    code = w.wait(15)
                    dt = time.monotonic() - t0
                    self.assertIsNotNone(code, "weir did not exit within 15 s of SIGTERM")
                    self.assertEqual(code, 0)
                    self.assertLess(dt, 5.0, f"an idle keep-alive connection held shutdown for "
                                             f"{dt:.1f}s (shutdown-grace 10s): idle connections "
                                             f"should be closed")
                    self.assertTrue(c.peer_closed(1.0), "the idle client connection was not closed")

    def test_sigterm_grace_expires(self):
        o = self.origin("a", wt.stall())
        w = self.start_weir(wt.basic_config({"app": o.address}, shutdown_grace="1s",
                                            upstream_extra='response-timeout = "60s"'))
        t, holder = self._in_flight(w, "/stall", timeout=30)
        self.assertTrue(wt.wait_until(lambda: o.request_count >= 1, 5))
        t0 = time.monotonic()
        w.send_signal(signal.SIGTERM)
        code = w.wait(15)
        dt = time.monotonic() - t0
        self.assertIsNotNone(code, "weir did not exit within 15 s of SIGTERM (grace 1s)")
        self.assertNotIn(code, CRASH_SIGNALS, f"weir crashed: {code}")
        self.assertGreaterEqual(dt, 0.8, f"weir exited after {dt:.2f}s, before shutdown-grace 1s "
                                         f"with a request in flight")
        self.assertLess(dt, 4.0, f"weir took {dt:.1f}s to exit with shutdown-grace = 1s")
        t.join(timeout=30)

    def test_sigint_exits_promptly(self):
        o = self.origin("a", wt.stall())
        w = self.start_weir(wt.basic_config({"app": o.address}, shutdown_grace="30s"))
        t, holder = self._in_flight(w, "/stall", timeout=30)
        self.assertTrue(wt.wait_until(lambda: o.request_count >= 1, 5))
        t0 = time.monotonic()
        w.send_signal(signal.SIGINT)
        code = w.wait(10)
        dt = time.monotonic() - t0
        self.assertIsNotNone(code, "weir did not exit within 10 s of SIGINT")
        self.assertNotIn(code, CRASH_SIGNALS, f"weir crashed on SIGINT: exit {code}")
        self.assertLess(dt, 2.0, f"SIGINT took {dt:.1f}s (a request was in flight, grace 30s)")
        t.join(timeout=30)

    def test_sigint_idle(self):
        o = self.origin("a", wt.fixed("x"))
        w = self.start_weir(wt.basic_config({"app": o.address}))
        t0 = time.monotonic()
        w.send_signal(signal.SIGINT)
        code = w.wait(10)
        self.assertIsNotNone(code, "weir did not exit within 10 s of SIGINT")
        self.assertNotIn(code, CRASH_SIGNALS, f"weir crashed on SIGINT: exit {code}")
        self.assertLess(time.monotonic() - t0, 2.0)


if __name__ == "__main__":
    wt.main()
