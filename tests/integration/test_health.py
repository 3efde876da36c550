#!/usr/bin/env python3
"""Health checks and retries: an active HTTP check ejects a dead origin and takes it back while a
load loop sees no failure (retries cover the gap); passive outlier ejection (5xx and connection
failures, growing ejections); several checkers that must all agree, and the admin endpoint; a POST
is never delivered twice while a GET is retried elsewhere; connect failures retried up to
max-tries (and a per-route max-tries); retry-timeout; request-timeout; TCP and TLS checks;
checks of a target published by host name while its DNS server hangs."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import tlsutil
import weirtest as wt
from dnsserver import DnsServer, private_resolv_conf


def traffic(origin: wt.Origin) -> int:
    """An origin's requests other than health checks."""
    return len([r for r in origin.snapshot() if r.path != "/healthz"])


def log_msg(line: str) -> str:
    """The message of a log line (json format: its "msg"; otherwise the line)."""
    try:
        return json.loads(line)["msg"]
    except (ValueError, KeyError, TypeError):
        return line


def health_config(targets: list[str], *, health: str = "", admin_port: int | None = None,
                  workers: int = 1, upstream_extra: str = "", lb: str = '{ use = "round-robin" }',
                  routes: str = "", access_log: bool = True) -> str:
    tl = ", ".join(wt.toml_str(t) for t in targets)
    out = [f"[system]\nworkers = {workers}\nshutdown-grace = \"2s\"\n",
           f"[log]\nformat = \"json\"\naccess-log = {'true' if access_log else 'false'}\n"]
    if admin_port:
        out.append(f"[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n")
    up = f"[upstreams.app]\ndiscovery = {{ use = \"static\", targets = [{tl}] }}\nlb = {lb}\n"
    if health:
        up += f"health = {health}\n"
    out.append(up + upstream_extra)
    out.append("[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\nupstream = \"app\"\n")
    out.append(routes)
    return "\n".join(out)


def admin_targets(port: int) -> dict[str, dict]:
    """The admin endpoint's view of upstream `app`: address -> target object (and the group)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/upstreams", timeout=5) as r:
        doc = json.loads(r.read())
    groups = {g["name"]: g for g in doc["upstreams"]}
    g = groups["app"]
    out = {t["address"]: t for t in g["targets"]}
    out["__group__"] = g
    return out


def get(addr, path: str, method: str = "GET", body: bytes | None = None,
        timeout: float = 10.0) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": "health.test"})
        resp = conn.getresponse()
        return resp.status, resp.getheader("x-origin"), resp.read()
    finally:
        conn.close()


class LoadLoop:
    """Threads sending sequential keep-alive GETs through weir until stopped (at most `limit`
    seconds and `max_requests` requests each), recording every result."""

    def __init__(self, addr, threads: int = 2, limit: float = 20.0, max_requests: int = 20000,
                 pause: float = 0.002):
        self.addr = addr
        self.limit = limit
        self.max_requests = max_requests
        self.pause = pause
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, int, str | None]] = []
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(k,), daemon=True)
                        for k in range(threads)]

    def start(self) -> "LoadLoop":
        for t in self.threads:
            t.start()
        return self

    def _run(self, k: int) -> None:
        deadline = time.monotonic() + self.limit
        conn = None
        try:
            for i in range(self.max_requests):
                if self.stop_event.is_set() or time.monotonic() >= deadline:
                    break
                if conn is None:
                    conn = http.client.HTTPConnection(self.addr[0], self.addr[1], timeout=10)
                try:
                    conn.request("GET", f"/load/{k}/{i}", headers={"Host": "health.test"})
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException) as e:
                    with self.lock:
                        self.failures.append(f"thread {k} request {i}: {type(e).__name__}: {e}")
                    conn.close()
                    conn = None
                    continue
                with self.lock:
                    self.results.append((time.monotonic(), resp.status, resp.getheader("x-origin")))
                    if resp.status != 200:
                        self.failures.append(f"thread {k} request {i}: status {resp.status}")
                if resp.will_close:
                    conn.close()
                    conn = None
                time.sleep(self.pause)
        finally:
            if conn is not None:
                conn.close()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)

    def served_by(self, name: str, since: float = 0.0) -> int:
        with self.lock:
            return len([r for r in self.results if r[2] == name and r[0] >= since])


class HealthTest(wt.WeirTestCase):

    def port_origin(self, name: str, behaviour: wt.Behaviour | None = None,
                    port: int = 0) -> wt.Origin:
        o = wt.Origin(name, behaviour, port=port, wait_free=2.5, one_send=True)
        self.addCleanup(o.stop)
        return o

    def line_after(self, w: wt.Weir, pred, timeout: float,
                   start: int = 0) -> tuple[int, float, str] | None:
        """Waits for a log line matching pred at index >= start: (index, arrival time, text)."""
        if w.wait_for_line(pred, timeout, start_index=start) is None:
            return None
        for i in range(start, len(w.lines)):
            t, _, text = w.lines[i]
            if pred(text):
                return i, t, log_msg(text)
        return None

    @staticmethod
    def health_line(address: str, state: str):
        return lambda s: f"target {address} is now {state} (" in s

    # ---------------------------------------------------------------------------------------------
    def test_active_http_check_ejects_and_restores_without_failures(self):
        a = self.port_origin("a")
        b = self.port_origin("b")
        c = self.port_origin("c")
        admin = wt.free_port()
        w = self.start_weir(health_config(
            [a.address, b.address, c.address], admin_port=admin, workers=2,
            health='{ use = "http", path = "/healthz", interval = "200ms", fall = 2, rise = 2, '
                   'timeout = "150ms" }',
            upstream_extra='max-tries = 3\nconnect-timeout = "1s"\n', access_log=False))
        view = admin_targets(admin)
        self.assertEqual(view["__group__"]["targets-healthy"], 3, f"admin: {view}")
        checkers = view["__group__"]["health-checkers"]
        self.assertEqual(len(checkers), 1, f"admin: {view}")
        self.assertIn('"http"', checkers[0])
        self.assertTrue(wt.wait_until(lambda: all(
            any(r.path == "/healthz" for r in o.snapshot()) for o in (a, b, c)), 3),
            "not every origin was checked within 3 s")
        check = next(r for r in a.snapshot() if r.path == "/healthz")
        self.assertEqual(check.method, "GET")

        load = LoadLoop(w.addr(), threads=2, limit=20.0).start()
        self.addCleanup(load.stop)
        self.assertTrue(wt.wait_until(lambda: all(traffic(o) > 5 for o in (a, b, c)), 3),
                        f"traffic before the kill: {[traffic(o) for o in (a, b, c)]}")

        # Kill b: its listening socket closes (connections are refused) and its open connections
        # are shut down.
        b_port = b.addr[1]
        t_kill = time.monotonic()
        b.stop()
        down = self.line_after(w, self.health_line(b.address, "unhealthy"), 5.0)
        self.assertIsNotNone(down, f"no 'is now unhealthy' line for {b.address}")
        idx_down, t_down, text = down
        # fall x interval = 2 x 200 ms (+-10% jitter), the first check up to one interval away,
        # plus margin.
        self.assertLess(t_down - t_kill, 1.5, f"ejected {t_down - t_kill:.2f}s after the kill")
        self.assertIn("/healthz", text)
        self.assertIn("2 consecutive failed checks", text)
        view = admin_targets(admin)
        tb = view[b.address]
        self.assertFalse(tb["healthy"], f"admin: {tb}")
        self.assertEqual(len(tb["unhealthy-because"]), 1, f"admin: {tb}")
        self.assertIn('"http"', tb["unhealthy-because"][0]["checker"])
        self.assertIn("HTTP check GET /healthz", tb["unhealthy-because"][0]["reason"])
        # state-for-ms: the time since the last change of state, here since the ejection.
        self.assertIn("state-for-ms", tb, f"admin: {view}")
        self.assertLessEqual(tb["state-for-ms"], (time.monotonic() - t_down) * 1000 + 100)
        self.assertGreater(view[a.address]["state-for-ms"], tb["state-for-ms"])
        self.assertTrue(view[a.address]["healthy"] and view[c.address]["healthy"], f"admin: {view}")
        self.assertEqual(view["__group__"]["targets-healthy"], 2)
        self.assertEqual(view["__group__"]["targets-total"], 3)

        # Between the kill and the ejection the load loop did hit b: its requests were retried.
        retried = [text for t, _, text in w.lines
                   if t_kill <= t <= t_down + 0.3 and b.address in text
                   and ("connect to" in text or "(safe to send again)" in text)]
        self.assertGreater(len(retried), 0, "no request hit the dead origin before its ejection, "
                                            "so no retry was tested")

        # While b is out, the others take everything, without failures.
        time.sleep(1.3)
        served_a, served_c = load.served_by("a", t_down), load.served_by("c", t_down)
        self.assertGreater(served_a, 10)
        self.assertGreater(served_c, 10)
        # Once weir knows b is down, it stops trying to connect to it. Connect failures are
        # logged at most 10 times per target and second, so look from 1 s after the ejection
        # on, when a failure would be logged again.
        late_tries = [text for t, _, text in w.lines[idx_down:]
                      if f"connect to {b.address}" in text and t > t_down + 1.05]
        self.assertEqual(late_tries, [], "weir kept connecting to the ejected target")

        # Restart b on the same port: it comes back after rise x interval.
        t_up = time.monotonic()
        b2 = self.port_origin("b", port=b_port)
        up = self.line_after(w, self.health_line(b.address, "healthy"), 5.0, start=idx_down + 1)
        self.assertIsNotNone(up, f"no 'is now healthy' line for {b.address}")
        self.assertLess(up[1] - t_up, 1.5, f"back {up[1] - t_up:.2f}s after the restart")
        self.assertIn("2 consecutive successful checks", up[2])
        view = admin_targets(admin)
        self.assertTrue(view[b.address]["healthy"], f"admin: {view[b.address]}")
        self.assertNotIn("unhealthy-because", view[b.address])
        self.assertEqual(view["__group__"]["targets-healthy"], 3)
        self.assertTrue(wt.wait_until(lambda: traffic(b2) > 5, 2.0),
                        f"the restarted origin got {traffic(b2)} requests within 2 s")

        load.stop()
        self.assertEqual(load.failures, [], f"the load loop saw failures "
                                            f"({len(load.results)} requests in all)")
        self.assertGreater(len(load.results), 200)
        # Exactly one transition each way.
        downs = [x for x in w.text_lines() if "is now unhealthy" in x]
        ups = [x for x in w.text_lines() if "is now healthy" in x]
        self.assertEqual((len(downs), len(ups)), (1, 1), f"{downs}\n{ups}")

    # ---------------------------------------------------------------------------------------------
    def test_outlier_passive_ejection(self):
        a = self.origin("a")
        bad = self.origin("bad", wt.fixed("broken", status=500))
        c = self.origin("c")
        admin = wt.free_port()
        w = self.start_weir(health_config(
            [a.address, bad.address, c.address], admin_port=admin,
            health='{ use = "outlier", consecutive-5xx = 3, base-ejection-time = "1s" }'))
        statuses = []
        down = None
        for i in range(30):
            status, origin, _ = get(w.addr(), f"/o/{i}")
            statuses.append((status, origin))
            self.assertEqual(status, 500 if origin == "bad" else 200)
            down = self.line_after(w, self.health_line(bad.address, "unhealthy"), 0.05)
            if down:
                break
        self.assertIsNotNone(down, f"not ejected after 30 requests: {statuses}")
        self.assertIn("3 consecutive 5xx", down[2])
        # Round robin over 3 targets: the 3rd 5xx of bad comes with request 7, 8 or 9.
        self.assertLessEqual(bad.request_count, 4, f"ejected only after {bad.request_count} "
                                                   f"requests to it: {statuses}")
        view = admin_targets(admin)
        self.assertFalse(view[bad.address]["healthy"], f"admin: {view[bad.address]}")
        self.assertIn("outlier", view[bad.address]["unhealthy-because"][0]["checker"])
        self.assertIn("3 consecutive 5xx", view[bad.address]["unhealthy-because"][0]["reason"])
        # The others take the traffic.
        before = bad.request_count
        for i in range(12):
            status, origin, _ = get(w.addr(), f"/after/{i}")
            self.assertEqual((status, origin in ("a", "c")), (200, True), f"request {i}: {origin}")
        self.assertEqual(bad.request_count, before)
        # After base-ejection-time it is back by itself.
        up = self.line_after(w, self.health_line(bad.address, "healthy"), 3.0, start=down[0] + 1)
        self.assertIsNotNone(up, "the ejection did not end")
        self.assertGreater(up[1] - down[1], 0.8, "ejection ended before base-ejection-time")
        self.assertLess(up[1] - down[1], 1.8, f"ejection lasted {up[1] - down[1]:.2f}s")
        self.assertIn("ejection of", up[2])
        self.assertTrue(admin_targets(admin)[bad.address]["healthy"])
        again = None
        for i in range(30):
            get(w.addr(), f"/back/{i}")
            again = self.line_after(w, self.health_line(bad.address, "unhealthy"), 0.05,
                                    start=up[0] + 1)
            if again:
                break
        self.assertGreater(bad.request_count, before, "the origin got nothing after its return")
        # Still failing: ejected again, the second time for twice base-ejection-time.
        self.assertIsNotNone(again, "not ejected a second time")
        self.assertIn("ejected for 2s", again[2])

    def test_outlier_ejects_on_connect_failures(self):
        a = self.origin("a")
        c = self.origin("c")
        dead = f"127.0.0.1:{wt.free_port()}"
        w = self.start_weir(health_config(
            [a.address, dead, c.address],
            health='{ use = "outlier", consecutive-failures = 2, base-ejection-time = "5s" }'))
        down = None
        for i in range(20):
            status, origin, _ = get(w.addr(), f"/f/{i}")
            self.assertEqual(status, 200, f"request {i}: the connect failure was not retried")
            down = self.line_after(w, self.health_line(dead, "unhealthy"), 0.05)
            if down:
                break
        self.assertIsNotNone(down, "a target refusing connections was not ejected")
        self.assertRegex(down[2], r"2 consecutive (connection )?failures")
        tries = len([x for x in w.text_lines() if f"connect to {dead}" in x])
        self.assertLessEqual(tries, 3)
        for i in range(12):
            self.assertEqual(get(w.addr(), f"/g/{i}")[0], 200)
        self.assertEqual(len([x for x in w.text_lines() if f"connect to {dead}" in x]), tries,
                         "weir still connects to the ejected target")

    # ---------------------------------------------------------------------------------------------
    def test_health_array_every_checker_must_agree(self):
        a = self.origin("a")
        flaky = self.origin("flaky", wt.fixed("broken", status=500))  # /healthz too
        c = self.origin("c")
        admin = wt.free_port()
        w = self.start_weir(health_config(
            [a.address, flaky.address, c.address], admin_port=admin,
            health='[{ use = "outlier", consecutive-5xx = 2, base-ejection-time = "1s" }, '
                   '{ use = "http", path = "/healthz", interval = "300ms", timeout = "100ms", '
                   'fall = 3, rise = 1 }]'))
        # The outlier checker must eject first (then the HTTP checker's failures are the "also
        # failed by" note): 3 failed checks 300 ms apart take >= 0.6 s, two requests to flaky
        # (within the first six, round robin) take milliseconds even under a sanitizer.
        view = admin_targets(admin)
        self.assertEqual(len(view["__group__"]["health-checkers"]), 2, f"admin: {view}")
        for i in range(12):  # the outlier checker ejects flaky after its 2nd 500
            get(w.addr(), f"/x/{i}")
            if w.wait_for_line(self.health_line(flaky.address, "unhealthy"), 0.02):
                break
        down = self.line_after(w, self.health_line(flaky.address, "unhealthy"), 1.0)
        self.assertIsNotNone(down)
        self.assertIn('"outlier"', down[2])
        # The HTTP checker fails it too while it is held down: no second transition, a note.
        also = self.line_after(w, lambda s: f"target {flaky.address} also failed by" in s, 2.0)
        self.assertIsNotNone(also, "no 'also failed by' line from the http checker")
        self.assertIn("status 500", also[2])
        view = admin_targets(admin)
        because = view[flaky.address]["unhealthy-because"]
        self.assertEqual(sorted('"outlier"' in b["checker"] for b in because), [False, True],
                         f"admin: {because}")
        # The ejection ends, but the HTTP checker still holds it down.
        cleared = self.line_after(w, lambda s: f"target {flaky.address} cleared by" in s, 3.0)
        self.assertIsNotNone(cleared, "the outlier ejection did not end")
        self.assertIn("(still unhealthy)", cleared[2])
        view = admin_targets(admin)
        self.assertFalse(view[flaky.address]["healthy"])
        self.assertEqual(len(view[flaky.address]["unhealthy-because"]), 1)
        self.assertIn('"http"', view[flaky.address]["unhealthy-because"][0]["checker"])
        before = flaky.request_count
        for i in range(6):
            self.assertEqual(get(w.addr(), f"/y/{i}")[0], 200)
        self.assertEqual(len([r for r in flaky.snapshot()[before:] if r.path != "/healthz"]), 0)
        # Fixed: the HTTP checker lets it back.
        flaky.behaviour = wt.fixed("flaky")
        up = self.line_after(w, self.health_line(flaky.address, "healthy"), 2.0, start=down[0])
        self.assertIsNotNone(up)
        self.assertIn('"http"', up[2])
        self.assertTrue(admin_targets(admin)[flaky.address]["healthy"])
        self.assertEqual(len([x for x in w.text_lines() if "is now unhealthy" in x]), 1)

        # The admin endpoint's other answers.
        base = f"http://127.0.0.1:{admin}"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            self.assertEqual((r.status, r.read()), (200, b"ok\n"))
        with urllib.request.urlopen(base + "/", timeout=5) as r:
            self.assertEqual(json.loads(r.read()), {"endpoints": ["/healthz", "/upstreams"]})
        for method, path, code in (("GET", "/nope", 404), ("POST", "/upstreams", 405)):
            req = urllib.request.Request(base + path, method=method, data=b"" if method == "POST"
                                         else None)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(req, timeout=5)
            self.assertEqual(cm.exception.code, code, f"{method} {path}")

    # ---------------------------------------------------------------------------------------------
    def test_post_never_delivered_twice_get_retried(self):
        g1 = self.origin("g1")
        g2 = self.origin("g2")
        dropper = self.origin("dropper", wt.close_conn())  # reads the request, closes, no answer
        w = self.start_weir(health_config([g1.address, dropper.address, g2.address],
                                          upstream_extra="max-tries = 3\n"))

        def deliveries(method: str) -> list[wt.RequestRecord]:
            return [r for r in dropper.snapshot() if r.method == method]

        # Round robin over 3 targets: of 3 POSTs exactly one goes to the dropper.
        results = [get(w.addr(), f"/post/{i}", "POST", b"payload-%d" % i) for i in range(3)]
        time.sleep(0.3)  # a second delivery, if any, would arrive meanwhile
        self.assertEqual(sorted(r[0] for r in results), [200, 200, 502], f"{results}")
        posts = deliveries("POST")
        self.assertEqual(len(posts), 1, "the POST was delivered to the dropper "
                                        f"{len(posts)} times")
        self.assertTrue(posts[0].body_complete)
        bad_i = [i for i, r in enumerate(results) if r[0] == 502][0]
        self.assertEqual(posts[0].body, b"payload-%d" % bad_i)
        others = [r for o in (g1, g2) for r in o.snapshot() if r.method == "POST"]
        self.assertEqual(sorted(r.body for r in others),
                         sorted(b"payload-%d" % i for i in range(3) if i != bad_i),
                         "the failed POST went to another origin")
        self.assertTrue(w.wait_for_line(lambda s: "connection closed before a response to POST"
                                        in s, 2), "no log line for the dropped POST")

        # A PUT is idempotent: one whose whole body came with its head (weir keeps it) goes to
        # another target, with the same body.
        results = [get(w.addr(), f"/put/{i}", "PUT", b"put-%d" % i) for i in range(3)]
        time.sleep(0.3)
        self.assertEqual([r[0] for r in results], [200, 200, 200], f"{results}")
        self.assertEqual(len(deliveries("PUT")), 1)
        others = [r for o in (g1, g2) for r in o.snapshot() if r.method == "PUT"]
        self.assertEqual(sorted(r.body for r in others), [b"put-0", b"put-1", b"put-2"])
        self.assertTrue(w.wait_for_line(lambda s: "(safe to send again)" in s and "PUT" in s, 2))

        # A body longer than weir keeps is streamed to the target, so that PUT is not sent again.
        big = bytes(range(256)) * 1024  # 256 KiB
        results = [get(w.addr(), f"/bigput/{i}", "PUT", big) for i in range(3)]
        time.sleep(0.3)
        self.assertEqual(sorted(r[0] for r in results), [200, 200, 502], f"{results}")
        self.assertEqual(len([r for r in deliveries("PUT") if r.path.startswith("/bigput/")]), 1)

        # A GET without a body is retried on another target and succeeds.
        for i in range(6):
            status, origin, body = get(w.addr(), f"/get/{i}")
            self.assertEqual((status, origin in ("g1", "g2")), (200, True),
                             f"GET {i}: {status} from {origin}: {body[:200]!r}")
            if deliveries("GET"):
                break
        self.assertEqual(len(deliveries("GET")), 1, "the dropper did not get exactly one GET")
        self.assertTrue(w.wait_for_line(lambda s: "(safe to send again)" in s, 2))

    # ---------------------------------------------------------------------------------------------
    def test_connect_failure_retried_up_to_max_tries(self):
        a = self.origin("a")
        b = self.origin("b")
        dead = f"127.0.0.1:{wt.free_port()}"
        routes = ('[[services.web.routes]]\npath-prefix = "/once"\nupstream = "app"\n'
                  'max-tries = 1\n')
        w = self.start_weir(health_config([a.address, dead, b.address],
                                          upstream_extra="max-tries = 3\n", routes=routes))
        for i in range(15):
            status, origin, body = get(w.addr(), f"/get/{i}")
            self.assertEqual(status, 200, f"GET {i}: {body[:200]!r}")
        # Nothing reached the dead target, so even a POST with a body may go elsewhere.
        for i in range(9):
            status, origin, body = get(w.addr(), f"/post/{i}", "POST", b"x" * 100)
            self.assertEqual(status, 200, f"POST {i}: {body[:200]!r}")
        self.assertEqual(a.request_count + b.request_count, 24)
        self.assertTrue(w.wait_for_line(lambda s: f"connect to {dead}" in s, 2))
        # max-tries = 1 on a route: a request whose one try hits the dead target gets 502.
        # Round robin over 3 targets, one worker: about every third request (the retries above
        # left the smooth round robin's state somewhere in a cycle, so allow one off each way).
        got = [get(w.addr(), f"/once/{i}")[0] for i in range(30)]
        self.assertEqual(sorted(set(got)), [200, 502], f"statuses: {got}")
        self.assertTrue(9 <= got.count(502) <= 11, f"statuses: {got}")
        once = [r for o in (a, b) for r in o.snapshot() if r.path.startswith("/once/")]
        self.assertEqual(len(once), got.count(200), "a request of the max-tries = 1 route was "
                                                    "retried")
        self.assertTrue(w.wait_for_line(lambda s: "failed after 1 try (max-tries)" in s, 2))

    def test_max_tries_exhausted_and_retry_timeout(self):
        dead = [f"127.0.0.1:{wt.free_port()}" for _ in range(3)]
        good = self.origin("good")
        # Reads the request, waits 300 ms, closes without an answer: a GET may go elsewhere.
        hangup = self.origin("hangup", wt.Behaviour("close", delay=0.3))
        config = (
            "[system]\nworkers = 1\nshutdown-grace = \"2s\"\n\n[log]\nformat = \"json\"\n\n"
            "[upstreams.dead]\n"
            f"discovery = {{ use = \"static\", targets = [{', '.join(map(wt.toml_str, dead))}] }}\n"
            "max-tries = 2\n\n"
            "[upstreams.app]\n"
            f"discovery = {{ use = \"static\", targets = [{wt.toml_str(hangup.address)}, "
            f"{wt.toml_str(good.address)}] }}\n\n"
            "[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\nupstream = \"app\"\n\n"
            "[[services.web.routes]]\npath-prefix = \"/dead\"\nupstream = \"dead\"\n\n"
            "[[services.web.routes]]\npath-prefix = \"/rt\"\nupstream = \"app\"\n"
            "retry-timeout = \"200ms\"\n")
        w = self.start_weir(config)
        # Three dead targets, max-tries = 2: two connection attempts, then 502.
        status, _, _ = get(w.addr(), "/dead/x")
        self.assertEqual(status, 502)
        self.assertTrue(w.wait_for_line(lambda s: "GET /dead/x failed after 2 tries (max-tries)"
                                        in s, 2), "no max-tries line")
        tried = [x for x in w.text_lines() if "connect to" in x and "(upstream dead)" in x]
        self.assertEqual(len(tried), 2, f"connection attempts: {tried}")

        # Without retry-timeout, the GET the hangup target dropped goes to the other target.
        for i in range(2):  # round robin: one of two hits the hangup target
            status, origin, _ = get(w.addr(), f"/x/{i}")
            self.assertEqual((status, origin), (200, "good"), f"GET /x/{i}")
        self.assertEqual(len([r for r in hangup.snapshot() if r.path.startswith("/x/")]), 1)
        # With retry-timeout = 200ms, no second try after the first took 300 ms: 502.
        results = []
        for i in range(2):
            t0 = time.monotonic()
            status, origin, _ = get(w.addr(), f"/rt/{i}")
            results.append((status, origin, time.monotonic() - t0))
        self.assertEqual(sorted((s, o) for s, o, _ in results), [(200, "good"), (502, None)],
                         f"{results}")
        self.assertEqual(len([r for r in good.snapshot() if r.path.startswith("/rt/")]), 1,
                         "the request was retried after retry-timeout")
        # The log line reaches us through a pipe: it may arrive just after the response.
        self.assertTrue(w.wait_for_line(lambda s: "no further try after 200ms (retry-timeout)"
                                        in s, 2), "no retry-timeout line")

    # ---------------------------------------------------------------------------------------------
    def test_request_timeout(self):
        o = self.origin("sleepy", wt.fixed("late", delay=2.0))
        w = self.start_weir(health_config([o.address], upstream_extra='request-timeout = "500ms"\n'))
        t0 = time.monotonic()
        status, origin, body = get(w.addr(), "/slow")
        dt = time.monotonic() - t0
        self.assertEqual(status, 504, f"{body[:200]!r}")
        self.assertGreaterEqual(dt, 0.45, f"504 after {dt:.2f}s, before the request-timeout")
        self.assertLess(dt, 1.2, f"504 after {dt:.2f}s with request-timeout = 500ms, origin 2 s")
        self.assertEqual(o.request_count, 1, "a timed-out request was retried")
        logs = [x for x in w.wait_access_logs(1) if x.get("path") == "/slow"]
        self.assertEqual([x["status"] for x in logs], [504])

    # ---------------------------------------------------------------------------------------------
    def test_admin_endpoint_serves_at_most_64_connections(self):
        a = self.origin("a")
        admin = wt.free_port()
        w = self.start_weir(health_config([a.address], admin_port=admin))

        def healthz() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/healthz", timeout=2) as r:
                    return r.status == 200 and r.read() == b"ok\n"
            except OSError:
                return False

        held: list[socket.socket] = []
        self.addCleanup(lambda: [c.close() for c in held])
        for _ in range(64):
            held.append(socket.create_connection(("127.0.0.1", admin), timeout=5))
        time.sleep(0.5)  # every one accepted and waiting for its request
        extra = socket.create_connection(("127.0.0.1", admin), timeout=5)
        extra.settimeout(3)
        self.assertEqual(extra.recv(100), b"", "the 65th connection was not closed at once")
        extra.close()
        line = w.wait_for_line(lambda l: "are being served already" in l, 5)
        self.assertIsNotNone(line, w.log_text(10))
        self.assertIn("64", line)
        for c in held[:8]:
            c.close()
        del held[:8]
        self.assertTrue(wt.wait_until(healthz, 5), "the endpoint did not serve again")
        self.assertTrue(w.alive())

    def test_tcp_check_marks_dead_target(self):
        a = self.origin("a")
        dead = f"127.0.0.1:{wt.free_port()}"
        admin = wt.free_port()
        w = self.start_weir(health_config(
            [a.address, dead], admin_port=admin,
            health='{ use = "tcp", interval = "100ms", timeout = "100ms", fall = 2, rise = 2 }'))
        t0 = time.monotonic()
        down = self.line_after(w, self.health_line(dead, "unhealthy"), 5.0)
        self.assertIsNotNone(down, f"{dead} not marked unhealthy")
        self.assertLess(down[1] - t0, 1.5)
        self.assertIn("TCP check", down[2])
        time.sleep(0.5)
        view = admin_targets(admin)
        self.assertFalse(view[dead]["healthy"])
        self.assertIn("TCP check", view[dead]["unhealthy-because"][0]["reason"])
        self.assertTrue(view[a.address]["healthy"], f"the live origin: {view[a.address]}")
        self.assertGreater(a.accepted, 3, "the live origin was not checked")
        self.assertFalse(any(f"target {a.address} is now" in x for x in w.text_lines()))
        for i in range(6):
            self.assertEqual(get(w.addr(), f"/t/{i}")[:2], (200, "a"))
        self.assertFalse(any(f"connect to {dead}" in x for x in w.text_lines()),
                         "a request was sent to the unhealthy target")

    def test_tls_check_marks_dead_and_non_tls_targets(self):
        pki = tlsutil.Pki(self.tmp)
        cert, key = pki.leaf("origin", "origin.test", dns=["origin.test"], ips=["127.0.0.1"])
        tls_origin = tlsutil.TlsOrigin(cert, key, name="tls")
        self.addCleanup(tls_origin.stop)
        plain = self.origin("plain")  # speaks HTTP, not TLS: the handshake fails
        # A certificate the upstream's CA did not sign: the handshake fails verification.
        rogue_cert, rogue_key = tlsutil.self_signed(self.tmp, "rogue", "rogue.test",
                                                    ips=["127.0.0.1"])
        rogue = tlsutil.TlsOrigin(rogue_cert, rogue_key, name="rogue")
        self.addCleanup(rogue.stop)
        dead = f"127.0.0.1:{wt.free_port()}"
        admin = wt.free_port()
        w = self.start_weir(health_config(
            [tls_origin.address, plain.address, dead, rogue.address], admin_port=admin,
            health='{ use = "tls", interval = "100ms", timeout = "100ms", fall = 2, rise = 2 }',
            upstream_extra=f"tls = {{ ca-file = {wt.toml_str(pki.ca)} }}\n"))
        t0 = time.monotonic()
        for addr in (dead, plain.address, rogue.address):
            down = self.line_after(w, self.health_line(addr, "unhealthy"), 5.0)
            self.assertIsNotNone(down, f"{addr} not marked unhealthy")
            self.assertLess(down[1] - t0, 1.5)
            self.assertIn("TLS check", down[2])
            if addr == rogue.address:
                # docs/health.md: "TLS check: certificate verify failed"; weir says "TLS check:
                # TLS handshake: certificate verification failed: self-signed certificate".
                self.assertIn("certificate verif", down[2])
        time.sleep(0.5)
        view = admin_targets(admin)
        self.assertFalse(view[dead]["healthy"])
        self.assertFalse(view[plain.address]["healthy"])
        self.assertFalse(view[rogue.address]["healthy"])
        self.assertGreater(len(rogue.handshakes_failed()), 1, "the rogue origin saw no handshake")
        self.assertTrue(view[tls_origin.address]["healthy"], f"{view[tls_origin.address]}")
        self.assertFalse(any(f"target {tls_origin.address} is now" in x for x in w.text_lines()))
        self.assertGreaterEqual(len(tls_origin.handshakes_ok()), 3,
                                "the TLS origin saw no successful check handshakes")
        for i in range(4):
            status, origin, body = get(w.addr(), f"/tls/{i}")
            self.assertEqual((status, origin), (200, "tls"), f"{body[:200]!r}")
        self.assertEqual(plain.request_count, 0)
        self.assertEqual(rogue.requests(), [])


    def test_checks_of_a_host_name_resolve_without_blocking(self):
        """Targets published by name: their checks look the name up each time with weir's own
        resolver (c-ares). When DNS stops answering for one name, its checks fail with "cannot
        resolve" after their timeout, while the other name's target stays healthy and the control
        thread (the admin endpoint here) goes on serving; the checks of the hanging name share
        one lookup; when DNS answers again the target comes back. Needs root: weir runs in a mount
        namespace where /etc/resolv.conf names the test's DNS server on 127.0.0.2:53."""
        wrap, why = private_resolv_conf(self.tmp, DnsServer.HOST)
        if wrap is None:
            self.skipTest(why)
        try:
            dns = DnsServer({"app.weir.test": "127.0.0.1", "other.weir.test": "127.0.0.1"})
        except OSError as e:
            self.skipTest(f"cannot listen on {DnsServer.HOST}:53: {e}")
        self.addCleanup(dns.stop)
        a = self.origin("a")
        b = self.origin("b")
        name = f"app.weir.test:{a.address.rsplit(':', 1)[1]}"
        other = f"other.weir.test:{b.address.rsplit(':', 1)[1]}"
        admin = wt.free_port()
        # A lookup that hangs ends after 1.5 s + 3 s (c-ares doubles the wait on its second try).
        conf = health_config(
            [name, other], admin_port=admin,
            health='{ use = "tcp", interval = "300ms", timeout = "300ms", fall = 2, rise = 2 }')
        conf += '\n[dns]\ntimeout = "1500ms"\ntries = 2\n'
        w = self.start_weir(conf, prefix=wrap)
        self.assertTrue(wt.wait_until(lambda: a.accepted >= 3 and b.accepted >= 3, 5),
                        "no check reached the origins")
        view = admin_targets(admin)
        self.assertTrue(view[name]["healthy"] and view[other]["healthy"], str(view))

        dns.silent.add("app.weir.test")
        t0 = time.monotonic()
        slowest = 0.0
        down = None
        b_checks = b.accepted
        while time.monotonic() - t0 < 8 and down is None:
            t = time.monotonic()
            view = admin_targets(admin)
            slowest = max(slowest, time.monotonic() - t)
            self.assertTrue(view[other]["healthy"], f"the other name's target: {view[other]}")
            if not view[name]["healthy"]:
                down = view[name]
            time.sleep(0.1)
        self.assertIsNotNone(down, "the target stayed healthy while its name did not resolve")
        reason = down["unhealthy-because"][0]["reason"]
        self.assertIn('cannot resolve "app.weir.test": no answer within 300ms', reason)
        self.assertLess(slowest, 1.0, "the admin endpoint stalled behind a DNS lookup")
        # The other name's checks went on meanwhile.
        self.assertGreater(b.accepted, b_checks)
        # About one lookup of the name every 3 s (checks join a younger one), each 2 queries (A
        # and AAAA) and 2 more on its retry 1.5 s later: at most about 6 in 3 s, where a lookup
        # per check (one every 600 ms) would make some 16.
        n0, s0 = dns.unanswered, time.monotonic()
        time.sleep(3.0)
        self.assertLessEqual(dns.unanswered - n0, 8,
                             f"{dns.unanswered - n0} queries in {time.monotonic() - s0:.1f} s")
        self.assertTrue(admin_targets(admin)[other]["healthy"])

        dns.silent.clear()
        self.assertTrue(wt.wait_until(lambda: admin_targets(admin)[name]["healthy"], 10),
                        "the target did not come back once its name resolved again")
        self.assertEqual(get(w.addr(), "/by-name")[:2][0], 200)
        self.assertTrue(w.alive())

if __name__ == "__main__":
    wt.main()
