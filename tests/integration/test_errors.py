#!/usr/bin/env python3
"""Error responses: 502, 504, 404, 414, 431, request smuggling refused with 400 (never forwarded),
bad chunk syntax. weir keeps serving afterwards."""

import json
import os
import subprocess
import sys
import time

import weirtest as wt

LIMITS = """
[services.web.limits]
max-request-line = 1024
max-header-bytes = 4096
max-headers = 20
"""

# name -> raw request. Each must be answered 400 and never reach the origin.
SMUGGLING = {
    "cl-and-te": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te-and-cl": "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Length: 5\r\n\r\n0\r\n\r\n",
    "duplicate-differing-cl": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                              "Content-Length: 6\r\n\r\nhello!",
    "cl-abc": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\nhello",
    "cl-minus-1": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\nhello",
    "cl-plus-5": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: +5\r\n\r\nhello",
    "obs-fold-space": "GET /s HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n b\r\n\r\n",
    "obs-fold-tab": "GET /s HTTP/1.1\r\nHost: t\r\nX-Folded: a\r\n\tb\r\n\r\n",
    "te-gzip": "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "te-chunked-gzip": "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
                       "0\r\n\r\n",
    "te-xchunked": "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "missing-host-http11": "GET /s HTTP/1.1\r\nUser-Agent: t\r\n\r\n",
}

BAD_CHUNKS = {
    "non-hex-size": "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "zz\r\nhello\r\n0\r\n\r\n",
    "missing-crlf-after-data": "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                               "5\r\nhelloXX0\r\n\r\n",
    "size-overflow": "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "fffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
}


class ErrorsTest(wt.WeirTestCase):

    def setUp(self):
        super().setUp()
        self.o = self.origin("a", wt.echo(), paths={"/stall": wt.stall()})

    def start(self, **kw):
        return self.start_weir(wt.basic_config({"app": self.o.address}, extra=LIMITS, **kw))

    def assert_still_serves(self, w, context: str):
        def goods():
            return sum(1 for x in self.o.snapshot() if x.target == "/good")
        before = goods()
        r = wt.curl(w.url("/good"))
        self.assertStatus(r, 200, f"good request after {context}")
        self.assertEqual(json.loads(r.body)["target"], "/good")
        self.assertEqual(goods(), before + 1)

    # ---------------------------------------------------------------------------------------------
    def test_502_dead_origin(self):
        dead = wt.free_port()
        w = self.start_weir(wt.basic_config({"app": f"127.0.0.1:{dead}"},
                                            upstream_extra='connect-timeout = "2s"'))
        t0 = time.monotonic()
        r = wt.curl(w.url("/dead"))
        self.assertStatus(r, 502, "GET to an origin port with nothing listening")
        self.assertLess(time.monotonic() - t0, 5.0)
        self.assertGreater(len(r.body), 0, "502 without a body")
        self.assertLess(len(r.body), 4096, "502 body is not short")
        # weir survives and answers again.
        r = wt.curl(w.url("/dead"))
        self.assertStatus(r, 502, "second GET to the dead origin")
        logs = [a for a in w.wait_access_logs(2) if a.get("path") == "/dead"]
        self.assertEqual([a["status"] for a in logs], [502, 502], f"access log lines: {logs}")

    def test_a_connection_that_reaches_itself_is_refused(self):
        """A connect to a port of this host where nothing listens can reach itself when the kernel
        picks that same port as the source (TCP simultaneous open): the request then came back as
        its own "response". weir treats such a connection as refused: the request is retried on
        another target, and a TCP health check fails. To make it happen on every connect, weir runs
        in a network namespace whose ephemeral port range is that one port. Needs root."""
        if os.geteuid() != 0:
            self.skipTest("needs root (a network namespace)")
        wrapper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "one_port_netns.py")
        dead, web, dead_service, any_service, live, admin = (wt.free_port() for _ in range(6))
        wrap = ["unshare", "-n", sys.executable, wrapper, str(dead), "--"]
        try:
            pre = subprocess.run(wrap + ["nsenter", "--version"], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            self.skipTest(f"cannot run unshare: {e}")
        if pre.returncode != 0:
            self.skipTest("cannot set up a network namespace: "
                          f"{pre.stderr.decode(errors='replace').strip()}")
        conf = f"""
[system]
workers = 1

[log]
level = "info"

[admin]
listen = "127.0.0.1:{admin}"

[upstreams.mixed]
discovery = {{ use = "static", targets = ["127.0.0.1:{dead}", "127.0.0.1:{live}"] }}
lb = {{ use = "round-robin" }}

[upstreams.dead]
discovery = {{ use = "static", targets = ["127.0.0.1:{dead}"] }}
health = {{ use = "tcp", interval = "300ms", timeout = "300ms", fall = 1, rise = 1 }}

[upstreams.any]
discovery = {{ use = "static", targets = ["0.0.0.0:{dead}"] }}

[services.web]
listeners = [{{ address = "127.0.0.1:{web}" }}]
upstream = "mixed"

[services.any]
listeners = [{{ address = "127.0.0.1:{any_service}" }}]
upstream = "any"

[services.dead]
listeners = [{{ address = "127.0.0.1:{dead_service}" }}]
upstream = "dead"

[services.live]
listeners = [{{ address = "127.0.0.1:{live}" }}]
filters = [{{ use = "respond", status = 200, body = "live\\n" }}]
"""
        w = self.start_weir(conf, prefix=wrap)

        def get(port: int, path: str = "/") -> wt.CurlResult:
            # Inside weir's namespace, from source ports outside its one ephemeral port.
            return wt.curl("--local-port", "2000-2100", f"http://127.0.0.1:{port}{path}",
                           prefix=["nsenter", "-t", str(w.pid), "-n"])

        def dead_state() -> dict:
            r = get(admin, "/upstreams")
            if r.status != 200:
                return {}
            for u in json.loads(r.body)["upstreams"]:
                if u["name"] == "dead":
                    return u["targets"][0]
            return {}
        # The health check first, alone: two connects at once from the one ephemeral port would
        # fail with "Cannot assign requested address" instead.
        self.assertTrue(wt.wait_until(lambda: dead_state().get("healthy") is False, 5, 0.2),
                        f"the TCP check of a port that reaches itself passed: {dead_state()}")
        self.assertIn("reached itself", json.dumps(dead_state()))
        mark = len(w.text_lines())
        for i in range(6):  # round robin: every other request picks the dead target first
            r = get(web)
            self.assertStatus(r, 200, f"request {i} through an upstream with one dead target")
            self.assertEqual(r.body, b"live\n")
        self.assertIsNotNone(
            w.wait_for_line(lambda s: "(upstream mixed) failed: Connection refused (the connection "
                            "reached itself" in s, 5, start_index=mark),
            "no proxied connect to the dead target was refused as reaching itself")
        self.assertNotIn("malformed status line", w.log_text())

        t0 = time.monotonic()
        r = get(dead_service)
        self.assertStatus(r, 502, "the only target reaches itself")
        self.assertLess(time.monotonic() - t0, 5.0)
        # A target of 0.0.0.0 reaches 127.0.0.1: the same connection to itself. (A try that met
        # the health check's connect on the one port is refused otherwise: up to three tries.)
        def any_reaches_itself() -> bool:
            mark = len(w.text_lines())
            r = get(any_service)
            self.assertStatus(r, 502, "0.0.0.0 as the target: the connection reaches itself")
            return wt.wait_until(lambda: any("0.0.0.0" in t and "reached itself" in t
                                             for t in w.text_lines()[mark:]), 2)
        self.assertTrue(any(any_reaches_itself() for _ in range(3)), w.log_text(10))

    def test_504_stalled_origin(self):
        w = self.start_weir(wt.basic_config({"app": self.o.address},
                                            upstream_extra='response-timeout = "500ms"'))
        t0 = time.monotonic()
        r = wt.curl(w.url("/stall"), timeout=20)
        dt = time.monotonic() - t0
        self.assertStatus(r, 504, "GET to an origin that never answers, response-timeout 500ms")
        self.assertGreaterEqual(dt, 0.4, f"504 after {dt:.2f}s, before the response-timeout")
        self.assertLess(dt, 5.0, f"504 only after {dt:.2f}s with response-timeout = 500ms")
        self.assertGreater(len(r.body), 0, "504 without a body")
        self.assertLess(len(r.body), 4096, "504 body is not short")
        self.assert_still_serves(w, "504")
        logs = [a for a in w.wait_access_logs(2) if a.get("path") == "/stall"]
        self.assertEqual([a["status"] for a in logs], [504], f"access log lines: {logs}")

    def test_slow_upload_on_a_reused_connection_gets_its_whole_response_timeout(self):
        # The wait for the response head starts when the request has gone out: a body that
        # takes longer to arrive than response-timeout must not eat into that wait, also on a
        # connection taken from the pool (whose first wait may start before the request only
        # when the request left in one write).
        w = self.start_weir(wt.basic_config({"app": self.o.address},
                                            upstream_extra='response-timeout = "500ms"'))
        self.assertStatus(wt.curl(w.url("/warm")), 200, "a GET that leaves a pooled connection")
        body = b"0123456789"
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(f"POST /slow-upload HTTP/1.1\r\nHost: t\r\n"
                   f"Content-Length: {len(body)}\r\n\r\n")
            for i in range(len(body)):  # 10 bytes over about 1.2 s
                time.sleep(0.12)
                c.send(body[i:i + 1])
            r, _ = c.read_final_response()
        self.assertStatus(r, 200, "POST whose body took 1.2 s, response-timeout 500ms")
        seen = {x.target: x for x in self.o.snapshot()}
        self.assertEqual(seen["/slow-upload"].body, body)
        self.assertEqual(seen["/slow-upload"].conn_id, seen["/warm"].conn_id,
                         "the POST did not go over the pooled connection: the test misses its aim")

    def test_404_no_route(self):
        extra = """
[[services.web.routes]]
path-prefix = "/only"
upstream = "app"
"""
        w = self.start_weir(wt.basic_config({"app": self.o.address}, service_upstream=None,
                                            extra=extra))
        r = wt.curl(w.url("/other"))
        self.assertStatus(r, 404, "GET /other with no default upstream and no matching route")
        self.assertEqual(self.o.request_count, 0)
        r = wt.curl(w.url("/only/x"))
        self.assertStatus(r, 200, "GET /only/x (matching route)")

    # ---------------------------------------------------------------------------------------------
    def test_414_request_line_too_long(self):
        w = self.start()
        ok_path = "/" + "a" * 900
        r = wt.raw_exchange(w.addr(), f"GET {ok_path} HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertStatus(r, 200, "request line of ~915 bytes with max-request-line = 1024")
        before = self.o.request_count
        r = wt.raw_exchange(w.addr(), f"GET /{'a' * 2000} HTTP/1.1\r\nHost: t\r\n\r\n")
        self.assertStatus(r, 414, "request line of ~2015 bytes with max-request-line = 1024")
        self.assertEqual(self.o.request_count, before, "the too-long request was forwarded")
        self.assert_still_serves(w, "414")

    def test_431_headers_too_large(self):
        w = self.start()
        before = self.o.request_count
        r = wt.raw_exchange(w.addr(), f"GET /h HTTP/1.1\r\nHost: t\r\nX-Big: {'b' * 8000}\r\n\r\n")
        self.assertStatus(r, 431, "8000-byte header with max-header-bytes = 4096")
        self.assertEqual(self.o.request_count, before)
        # Many small headers adding up past the byte limit (each under it).
        many = "".join(f"X-H{i}: {'c' * 300}\r\n" for i in range(18))
        r = wt.raw_exchange(w.addr(), f"GET /h HTTP/1.1\r\nHost: t\r\n{many}\r\n")
        self.assertStatus(r, 431, "18 headers of ~306 bytes with max-header-bytes = 4096")
        self.assertEqual(self.o.request_count, before)
        self.assert_still_serves(w, "431 (too large)")

    def test_431_too_many_headers(self):
        w = self.start()
        ok = "".join(f"X-H{i}: v\r\n" for i in range(10))
        r = wt.raw_exchange(w.addr(), f"GET /h HTTP/1.1\r\nHost: t\r\n{ok}\r\n")
        self.assertStatus(r, 200, "11 headers with max-headers = 20")
        before = self.o.request_count
        many = "".join(f"X-H{i}: v\r\n" for i in range(40))
        r = wt.raw_exchange(w.addr(), f"GET /h HTTP/1.1\r\nHost: t\r\n{many}\r\n")
        self.assertStatus(r, 431, "41 headers with max-headers = 20")
        self.assertEqual(self.o.request_count, before)
        self.assert_still_serves(w, "431 (too many)")

    def test_413_max_body(self):
        w = self.start_weir(wt.basic_config({"app": self.o.address},
                                            extra="[services.web.limits]\nmax-body = 1000\n"))
        r = wt.raw_exchange(w.addr(), "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n"
                            + "x" * 500)
        self.assertStatus(r, 200, "500-byte body with max-body = 1000")
        before = self.o.request_count
        r = wt.raw_exchange(w.addr(), "POST /b HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
                            + "x" * 5000)
        self.assertStatus(r, 413, "5000-byte Content-Length body with max-body = 1000")
        self.assertEqual(self.o.request_count, before, "a request over max-body was forwarded")
        self.assert_still_serves(w, "413")

    # ---------------------------------------------------------------------------------------------
    def test_smuggling_refused_and_never_forwarded(self):
        w = self.start()
        for name, raw in SMUGGLING.items():
            with self.subTest(case=name):
                before = self.o.request_count
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(raw)
                    try:
                        r, _ = c.read_final_response()
                    except wt.PeerClosed:
                        self.fail(f"{name}: weir closed the connection without a 400\n"
                                  f"request: {raw!r}")
                    self.assertStatus(r, 400, f"{name}: request {raw!r}")
                    # After refusing a request whose body framing is unknown, weir must close
                    # (RFC 9112 6.3): reading on would parse attacker-chosen bytes as a request.
                    if name.startswith(("cl-", "te-", "duplicate-")):
                        self.assertTrue(c.peer_closed(3.0),
                                        f"{name}: connection left open after the 400")
                time.sleep(0.2)
                got = self.o.snapshot()[before:]
                self.assertEqual(got, [], f"{name}: the origin received {len(got)} request(s): "
                                          f"{[(x.method, x.target, x.headers) for x in got]}")
        self.assert_still_serves(w, "the smuggling attempts")

    def test_bad_chunk_syntax(self):
        w = self.start()
        for name, raw in BAD_CHUNKS.items():
            with self.subTest(case=name):
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(raw)
                    try:
                        r, _ = c.read_final_response()
                    except wt.PeerClosed:
                        self.fail(f"{name}: weir closed the connection without a 400\n"
                                  f"request: {raw!r}")
                    self.assertStatus(r, 400, f"{name}: request {raw!r}")
        self.assert_still_serves(w, "bad chunk syntax")
        # one access log line per request
        logs = [a for a in w.wait_access_logs(len(BAD_CHUNKS) + 1) if a.get("path") == "/c"]
        self.assertEqual(len(logs), len(BAD_CHUNKS),
                         "access log lines for the bad chunk requests (one each expected):\n"
                         + "\n".join(map(json.dumps, logs)))
        self.assertTrue(all(a["status"] == 400 for a in logs), logs)


if __name__ == "__main__":
    wt.main()
