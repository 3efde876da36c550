#!/usr/bin/env python3
"""Proxying behaviour: load balancing, forwarded headers, hop-by-hop removal, routes and filters,
HEAD, request bodies, Expect: 100-continue, pipelining, HTTP/1.0, JSON access logs."""

import hashlib
import json
import os
import signal
import socket
import time

import weirtest as wt
from dnsserver import DnsServer, private_resolv_conf

HOP_BY_HOP_REQUEST = [
    ("Connection", "keep-alive, x-drop-me"),
    ("x-drop-me", "1"),
    ("Keep-Alive", "timeout=5, max=100"),
    ("TE", "trailers"),
    ("Trailer", "x-checksum"),
    ("Upgrade", "websocket"),
    ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
    ("Proxy-Connection", "keep-alive"),
]
HOP_BY_HOP_NAMES = ["x-drop-me", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
                    "proxy-connection"]


def nginx_smooth_wrr(weights: list[int], n: int) -> list[int]:
    """nginx's smooth weighted round robin (ngx_http_upstream_get_peer): indexes of n picks."""
    current = [0] * len(weights)
    total = sum(weights)
    picks = []
    for _ in range(n):
        best = None
        for i, w in enumerate(weights):
            current[i] += w
            if best is None or current[i] > current[best]:
                best = i
        current[best] -= total
        picks.append(best)
    return picks


class ProxyTest(wt.WeirTestCase):

    # ---------------------------------------------------------------------------------------------
    def test_weighted_round_robin(self):
        names = ["a", "b", "c"]
        origins = [self.origin(n, wt.fixed(n)) for n in names]
        targets = [f'{{ address = "{o.address}", weight = {w} }}' for o, w in zip(origins, [1, 2, 3])]
        w = self.start_weir(wt.basic_config({"app": targets}))
        urls = [w.url(f"/rr/{i}") for i in range(60)]
        p = wt.curl_raw("-w", " %{http_code} %{num_connects}\n", *urls, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.decode().splitlines()
        self.assertEqual(len(lines), 60, p.stdout)
        seq, connects = [], 0
        for line in lines:
            body, code, nconn = line.split()
            self.assertEqual(code, "200", line)
            seq.append(body)
            connects += int(nconn)
        counts = {n: seq.count(n) for n in names}
        self.assertEqual(counts, {"a": 10, "b": 20, "c": 30}, f"sequence: {''.join(seq)}")
        self.assertEqual([o.request_count for o in origins], [10, 20, 30])
        for k in range(10):
            cycle = seq[6 * k:6 * k + 6]
            self.assertEqual({n: cycle.count(n) for n in names}, {"a": 1, "b": 2, "c": 3},
                             f"cycle {k} is {''.join(cycle)}; whole sequence {''.join(seq)}")
        # curl reused its one keep-alive connection to weir for all 60 requests.
        self.assertEqual(connects, 1, "client keep-alive: curl opened more than one connection")

    def test_round_robin_is_nginx_smooth(self):
        """Smooth WRR (nginx's algorithm) never sends a burst: with weights 1,2,3 the picks are
        exactly nginx's sequence c b a c b c."""
        names = ["a", "b", "c"]
        origins = [self.origin(n, wt.fixed(n)) for n in names]
        targets = [f'{{ address = "{o.address}", weight = {w} }}' for o, w in zip(origins, [1, 2, 3])]
        w = self.start_weir(wt.basic_config({"app": targets}))
        urls = [w.url("/smooth") for _ in range(12)]
        p = wt.curl_raw("-w", "\n", *urls, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        seq = p.stdout.decode().split()
        expected = [names[i] for i in nginx_smooth_wrr([1, 2, 3], 12)]
        self.assertEqual("".join(seq), "".join(expected))

    def test_unweighted_round_robin_alternates(self):
        origins = [self.origin(n, wt.fixed(n)) for n in ["a", "b"]]
        w = self.start_weir(wt.basic_config({"app": [o.address for o in origins]}))
        p = wt.curl_raw("-w", "\n", *[w.url("/x") for _ in range(10)], timeout=60)
        seq = p.stdout.decode().split()
        self.assertEqual(len(seq), 10, p.stderr)
        for i in range(1, 10):
            self.assertNotEqual(seq[i], seq[i - 1], f"sequence {''.join(seq)}")

    # ---------------------------------------------------------------------------------------------
    def test_forwarded_headers_and_hop_by_hop_removed(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        args = ["-H", "Host: app.example.test", "-H", "x-keep-me: yes"]
        for k, v in HOP_BY_HOP_REQUEST:
            args += ["-H", f"{k}: {v}"]
        r = wt.curl(*args, w.url("/hdr?q=1"))
        self.assertStatus(r, 200, "GET /hdr through weir")
        rec = o.last()
        self.assertEqual(rec.target, "/hdr?q=1")
        seen = {k.lower(): v for k, v in rec.headers}
        self.assertEqual(rec.header("x-keep-me"), "yes", f"origin saw {rec.headers}")
        self.assertEqual(rec.header("x-forwarded-for"), "127.0.0.1", f"origin saw {rec.headers}")
        self.assertEqual(rec.header("x-forwarded-proto"), "http", f"origin saw {rec.headers}")
        self.assertEqual(rec.header("x-forwarded-host"), "app.example.test",
                         f"origin saw {rec.headers}")
        leaked = [n for n in HOP_BY_HOP_NAMES if n in seen]
        self.assertEqual(leaked, [], f"hop-by-hop headers forwarded to the origin: {rec.headers}")
        for v in rec.header_all("connection"):
            self.assertNotIn("x-drop-me", v.lower(), f"client's Connection forwarded: {rec.headers}")

    def test_x_forwarded_for_is_appended(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        r = wt.curl("-H", "X-Forwarded-For: 10.1.2.3", "-H", "x-forwarded-proto: https",
                    "-H", "X-FORWARDED-HOST: spoofed.test", "-H", "Host: real.test", w.url("/xff"))
        self.assertStatus(r, 200, "GET /xff")
        rec = o.last()
        xff = rec.header_all("x-forwarded-for")
        self.assertEqual(len(xff), 1, f"origin saw {rec.headers}")
        self.assertRegex(xff[0], r"^10\.1\.2\.3,\s*127\.0\.0\.1$")
        # The client's own X-Forwarded-Proto and -Host are replaced, whatever their case.
        self.assertEqual(rec.header_all("x-forwarded-proto"), ["http"], f"origin saw {rec.headers}")
        self.assertEqual(rec.header_all("x-forwarded-host"), ["real.test"],
                         f"origin saw {rec.headers}")

    def test_response_hop_by_hop_removed(self):
        o = self.origin("a", wt.fixed("resp", headers=[("Connection", "x-resp-drop"),
                                                       ("x-resp-drop", "1"),
                                                       ("Keep-Alive", "timeout=99"),
                                                       ("x-resp-keep", "yes")]))
        w = self.start_weir(wt.basic_config({"app": o.address}))
        r = wt.curl(w.url("/resp"))
        self.assertStatus(r, 200, "GET /resp")
        self.assertEqual(r.body, b"resp")
        self.assertEqual(r.header("x-resp-keep"), "yes", str(r))
        self.assertIsNone(r.header("x-resp-drop"), f"header named by the origin's Connection "
                                                   f"reached the client:\n{r}")
        for v in wt.hall(r.headers, "keep-alive"):
            self.assertNotIn("timeout=99", v, f"origin's Keep-Alive reached the client:\n{r}")
        for v in wt.hall(r.headers, "connection"):
            self.assertNotIn("x-resp-drop", v.lower(), f"origin's Connection reached the client:\n{r}")

    # ---------------------------------------------------------------------------------------------
    def _route_setup(self):
        a = self.origin("a", wt.echo())
        s = self.origin("s", wt.echo())
        extra = """
[[services.web.routes]]
path-prefix = "/static"
upstream = "st"
filters = [{ use = "headers", request-set = { "x-env" = "test" }, response-remove = ["server"] }]
"""
        w = self.start_weir(wt.basic_config({"app": a.address, "st": s.address}, extra=extra))
        return w, a, s

    def test_route_prefix_and_headers_filter(self):
        w, a, s = self._route_setup()
        for path, want in [("/static", "s"), ("/static/", "s"), ("/static/css/x.css", "s"),
                           ("/static?v=1", "s"), ("/staticx", "a"), ("/staticx/y", "a"),
                           ("/stat", "a"), ("/", "a"), ("/other/static", "a")]:
            with self.subTest(path=path):
                r = wt.curl(w.url(path))
                self.assertStatus(r, 200, f"GET {path}")
                self.assertEqual(r.header("x-origin"), want, f"GET {path} went to the wrong "
                                                             f"upstream:\n{r}")
                body = json.loads(r.body)
                self.assertEqual(body["target"], path)
                env = [v for k, v in body["headers"] if k.lower() == "x-env"]
                if want == "s":
                    self.assertEqual(env, ["test"], f"headers filter request-set on {path}")
                    self.assertIsNone(r.header("server"),
                                      f"headers filter response-remove server on {path}:\n{r}")
                else:
                    self.assertEqual(env, [], f"route filter leaked to the default route ({path})")

    def test_request_set_replaces_client_value(self):
        w, a, s = self._route_setup()
        r = wt.curl("-H", "x-env: prod", w.url("/static/a"))
        self.assertStatus(r, 200, "GET /static/a")
        self.assertEqual(s.last().header_all("x-env"), ["test"], f"origin saw {s.last().headers}")

    def test_respond_filter_answers_locally(self):
        o = self.origin("a", wt.echo())
        extra = """
[[services.web.routes]]
path-exact = "/health"
upstream = "app"
filters = [{ use = "respond", status = 200, body = "hi", content-type = "text/plain" }]
"""
        w = self.start_weir(wt.basic_config({"app": o.address}, extra=extra))
        r = wt.curl(w.url("/health"))
        self.assertStatus(r, 200, "GET /health (respond filter)")
        self.assertEqual(r.body, b"hi")
        self.assertTrue((r.header("content-type") or "").startswith("text/plain"), str(r))
        self.assertEqual(o.request_count, 0, "the respond filter forwarded the request")
        r = wt.curl(w.url("/health/x"))  # path-exact: not this route
        self.assertStatus(r, 200, "GET /health/x (default route)")
        self.assertEqual(json.loads(r.body)["target"], "/health/x")

    # ---------------------------------------------------------------------------------------------
    def test_head(self):
        o = self.origin("a", wt.fixed("hello world"))
        w = self.start_weir(wt.basic_config({"app": o.address}))
        r = wt.curl("-I", w.url("/head"))
        self.assertStatus(r, 200, "HEAD /head (curl -I)")
        self.assertEqual(r.header("content-length"), "11", str(r))
        self.assertEqual(o.last().method, "HEAD")
        # On one connection: HEAD then GET. If weir sent a body after the HEAD response, the GET
        # response would not parse.
        with wt.RawConn(w.addr()) as c:
            c.send(f"HEAD /head HTTP/1.1\r\nHost: t\r\n\r\n")
            h, _ = c.read_final_response(head_request=True)
            self.assertStatus(h, 200, "raw HEAD")
            self.assertEqual(h.header("content-length"), "11", str(h))
            c.send(f"GET /head HTTP/1.1\r\nHost: t\r\n\r\n")
            g, _ = c.read_final_response()
            self.assertStatus(g, 200, "GET after HEAD on the same connection")
            self.assertEqual(g.body, b"hello world")

    def test_content_length_request_body(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        data = os.urandom(300_000)
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(data)
        r = wt.curl("--data-binary", f"@{path}", w.url("/cl"))
        self.assertStatus(r, 200, "POST /cl with 300000 bytes")
        body = json.loads(r.body)
        self.assertEqual(body["body_len"], len(data))
        self.assertEqual(body["body_sha256"], hashlib.sha256(data).hexdigest())

    def test_chunked_request_body(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        data = os.urandom(200_000)
        path = os.path.join(self.tmp, "body.bin")
        with open(path, "wb") as f:
            f.write(data)
        with open(path, "rb") as stdin:
            r = wt.curl("-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-",
                        w.url("/chunked"), stdin=stdin)
        self.assertStatus(r, 200, "POST /chunked (curl, chunked)")
        body = json.loads(r.body)
        self.assertEqual(body["body_len"], len(data))
        self.assertEqual(body["body_sha256"], hashlib.sha256(data).hexdigest())
        # Raw: several chunks, then an empty trailer section.
        resp = wt.raw_exchange(w.addr(), "POST /chunked2 HTTP/1.1\r\nHost: t\r\n"
                                         "Transfer-Encoding: chunked\r\n\r\n"
                                         "5\r\nhello\r\n6\r\n world\r\nA\r\n0123456789\r\n0\r\n\r\n")
        self.assertStatus(resp, 200, "raw chunked POST")
        self.assertEqual(o.last().body, b"hello world0123456789")
        # The origin parsed exactly the two requests sent: no body bytes were taken for requests.
        self.assertEqual([(r.method, r.target) for r in o.snapshot()],
                         [("POST", "/chunked"), ("POST", "/chunked2")], f"origin errors: {o.errors}")
        self.assertEqual([e for e in o.errors if "bad request line" in e], [])

    def test_chunked_response(self):
        o = self.origin("a", wt.fixed("after"), paths={"/cr": wt.stream(300_000, chunked=True)})
        w = self.start_weir(wt.basic_config({"app": o.address}))
        r = wt.curl(w.url("/cr"))
        self.assertEqual(r.rc, 0, str(r))
        self.assertStatus(r, 200, "GET of a 300000-byte chunked origin response")
        self.assertEqual(len(r.body), 300_000, str(r))
        self.assertEqual(r.body, b"x" * 300_000)
        # Raw: the chunked framing parses exactly, and the connection stays usable.
        with wt.RawConn(w.addr()) as c:
            c.send("GET /cr HTTP/1.1\r\nHost: t\r\n\r\n")
            r, _ = c.read_final_response()
            self.assertStatus(r, 200, "raw GET /cr")
            self.assertEqual(len(r.body), 300_000)
            c.send("GET /after HTTP/1.1\r\nHost: t\r\n\r\n")
            r2, _ = c.read_final_response()
            self.assertStatus(r2, 200, "GET after a chunked response on the same connection")
            self.assertEqual(r2.body, b"after")

    def test_request_head_is_not_held_for_more_body(self):
        # Body bytes that came with the head go upstream with it; weir must not wait for more of
        # the body first. The client sends the head and the first chunk, then the last chunk
        # 0.6 s later: the origin must see the head (and the first chunk) long before that.
        import socket
        import threading
        srv = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(srv.close)
        seen = {}

        def origin():
            c, _ = srv.accept()
            with c:
                c.settimeout(10)
                data = b""
                while b"\r\n\r\n" not in data:
                    data += c.recv(65536)
                seen["head_at"] = time.monotonic()
                while not data.endswith(b"0\r\n\r\n"):
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                seen["request"] = data
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

        t = threading.Thread(target=origin, daemon=True)
        t.start()
        w = self.start_weir(wt.basic_config({"app": f"127.0.0.1:{srv.getsockname()[1]}"}))
        for first in (b"5\r\nhello\r\n", b"5\r\nhel", b"5"):
            with self.subTest(first=first):
                seen.clear()
                if not t.is_alive():
                    t = threading.Thread(target=origin, daemon=True)
                    t.start()
                with wt.RawConn(w.addr(), timeout=10) as c:
                    t0 = time.monotonic()
                    c.send(b"POST /dup HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n" + first)
                    time.sleep(0.6)
                    c.send(b"5\r\nhello\r\n"[len(first):] + b"0\r\n\r\n")
                    r, _ = c.read_final_response()
                    self.assertStatus(r, 200, "chunked POST")
                t.join(5)
                self.assertLess(seen["head_at"] - t0, 0.4, "weir held the request head back "
                                                           "until more of the body came")
                rest, decoded = seen["request"].partition(b"\r\n\r\n")[2], b""
                while True:  # weir frames the chunks as its reads cut them
                    size_line, _, rest = rest.partition(b"\r\n")
                    size = int(size_line, 16)
                    if size == 0:
                        break
                    decoded, rest = decoded + rest[:size], rest[size + 2:]
                self.assertEqual(decoded, b"hello")

    def test_expect_100_continue(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send("POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n"
                   "Expect: 100-continue\r\n\r\n")
            first = c.read_response()
            self.assertEqual(first.status, 100, f"expected 100 Continue before sending the body, "
                                                f"got:\n{first}")
            c.send("hello world")
            final, _ = c.read_final_response()
            self.assertStatus(final, 200, "final response after 100 Continue")
            self.assertEqual(json.loads(final.body)["body_len"], 11)
        self.assertEqual(o.last().body, b"hello world")

    def test_pipelined_requests_in_order(self):
        o = self.origin("a", wt.echo(), paths={"/p1": wt.echo(delay=0.3)})
        w = self.start_weir(wt.basic_config({"app": o.address}))
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send("".join(f"GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n" for i in (1, 2, 3)))
            targets = []
            for i in (1, 2, 3):
                r, _ = c.read_final_response()
                self.assertStatus(r, 200, f"pipelined response {i}")
                targets.append(json.loads(r.body)["target"])
        self.assertEqual(targets, ["/p1", "/p2", "/p3"])

    def test_bad_body_before_anything_sent_is_a_502(self):
        # The origin's head and a broken chunked body arrive together: weir had not sent a byte
        # of the response yet (the head waits for the first body bytes), so the client gets a
        # 502, not a connection closed on it with nothing said.
        o = wt.ScriptedOrigin(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                              b"zz\r\nhello\r\n0\r\n\r\n", 0.5)
        self.addCleanup(o.stop)
        w = self.start_weir(wt.basic_config({"app": o.address}))
        with wt.RawConn(w.addr()) as c:
            c.send("GET /broken HTTP/1.1\r\nHost: x\r\n\r\n")
            head = c.reader.read_until(b"\r\n\r\n", 1 << 16)
            self.assertTrue(head.startswith(b"HTTP/1.1 502 "), head)
        self.assertIsNotNone(w.wait_for_line(lambda l: "response body failed" in l, 5),
                             w.log_text())
        logs = [l for l in w.wait_access_logs(1) if l.get("path") == "/broken"]
        self.assertEqual([l.get("status") for l in logs], [502], w.log_text())
        w.stop()

    def test_head_sent_before_a_slow_body(self):
        # weir holds a response head back to send it with the first body bytes (one write for a
        # small response), but never waits for a slow body to send it; the reason phrase is
        # relayed as the origin wrote it.
        for framing in ("content-length", "chunked"):
            with self.subTest(framing=framing):
                head = ("content-length: 5\r\n" if framing == "content-length"
                        else "transfer-encoding: chunked\r\n")
                want = b"hello" if framing == "content-length" else b"5\r\nhello\r\n0\r\n\r\n"
                o = wt.ScriptedOrigin(f"HTTP/1.1 200 Fine Thanks\r\n{head}\r\n".encode(), 1.0,
                                      want, 0.5)
                self.addCleanup(o.stop)
                w = self.start_weir(wt.basic_config({"app": o.address}))
                with wt.RawConn(w.addr()) as c:
                    t0 = time.monotonic()
                    c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
                    got = c.reader.read_until(b"\r\n\r\n", 1 << 16)
                    t_head = time.monotonic() - t0
                    self.assertTrue(got.startswith(b"HTTP/1.1 200 Fine Thanks\r\n"), got)
                    self.assertLess(t_head, 0.7, f"the head came after {t_head:.2f}s: it waited "
                                                 "for the body")
                    body = c.reader.read_exact(len(want))
                    t_body = time.monotonic() - t0
                    self.assertEqual(body, want)
                    self.assertGreater(t_body, 0.9)
                w.stop()

    def test_body_bytes_are_not_held_while_the_upstream_pauses(self):
        # While it relays a body weir lets the kernel gather pieces into full packets (MSG_MORE):
        # on loopback a packet holds 64 KiB. Without a push before weir waits for the upstream,
        # the 20 KiB the origin sent first would sit in weir's socket until the kernel's probe
        # timer (200 ms) or the rest of the body released them; without one at the end, the last
        # piece would wait for that timer too. A slow run can take that long once; a held piece
        # takes it every time, so a case fails only if three tries do.
        first = bytes(range(256)) * 80  # 20,480 bytes
        rest = b"z" * 1000
        n = len(first) + len(rest)
        cases = {
            "content-length": (f"content-length: {n}\r\n", first, rest, b""),
            "chunked": ("transfer-encoding: chunked\r\n", f"{len(first):x}\r\n".encode() + first
                        + b"\r\n", f"{len(rest):x}\r\n".encode() + rest + b"\r\n", b"0\r\n\r\n"),
            "close-delimited": ("connection: close\r\n", first, rest, b""),
        }
        for framing, (field, part1, part2, end) in cases.items():
            with self.subTest(framing=framing):
                def once() -> tuple[float, float]:
                    o = wt.ScriptedOrigin(f"HTTP/1.1 200 OK\r\n{field}\r\n".encode() + part1,
                                          1.0, part2 + end)
                    self.addCleanup(o.stop)
                    w = self.start_weir(wt.basic_config({"app": o.address}))
                    with wt.RawConn(w.addr(), timeout=10) as c:
                        t0 = time.monotonic()
                        c.send("GET /pause HTTP/1.1\r\nHost: x\r\n\r\n")
                        head = c.reader.read_until(b"\r\n\r\n", 1 << 16)
                        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
                        chunked = b"transfer-encoding: chunked" in head.lower()

                        def read_body(count: int) -> bytes:
                            if not chunked:
                                return c.reader.read_exact(count)
                            out = b""
                            while len(out) < count:  # weir's chunks follow its reads
                                size = int(c.reader.read_until(b"\r\n", 64).strip(), 16)
                                self.assertGreater(size, 0)
                                out += c.reader.read_exact(size)
                                self.assertEqual(c.reader.read_exact(2), b"\r\n")
                            return out

                        body = read_body(len(first))
                        t_first = time.monotonic() - t0
                        body += read_body(len(first) + len(rest) - len(body))
                        if chunked:
                            self.assertEqual(c.reader.read_exact(5), b"0\r\n\r\n")
                        t_rest = time.monotonic() - t0 - 1.0  # after the origin's pause
                        self.assertEqual(body, first + rest)
                    w.stop()
                    return t_first, t_rest

                self.assertBodyNotHeld(once, len(first))

    def test_http10(self):
        o = self.origin("a", wt.fixed("ten"), paths={"/chunked": wt.stream(5000, chunked=True)})
        w = self.start_weir(wt.basic_config({"app": o.address}))
        # No keep-alive: weir answers and closes.
        with wt.RawConn(w.addr()) as c:
            c.send("GET /ten HTTP/1.0\r\n\r\n")
            r, _ = c.read_final_response()
            self.assertStatus(r, 200, "HTTP/1.0 GET")
            self.assertEqual(r.body, b"ten")
            self.assertTrue(r.version.startswith("HTTP/1."), r.version)
            if not r.close_delimited:
                self.assertTrue(c.peer_closed(3.0), "weir kept an HTTP/1.0 connection without "
                                                    "keep-alive open")
        # Keep-alive requested: two requests on one connection.
        with wt.RawConn(w.addr()) as c:
            for i in range(2):
                c.send("GET /ten HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                r, _ = c.read_final_response()
                self.assertStatus(r, 200, f"HTTP/1.0 keep-alive request {i + 1}")
                self.assertEqual(r.body, b"ten")
                self.assertFalse(r.close_delimited, f"keep-alive response without length:\n{r}")
        # A chunked origin response must not reach an HTTP/1.0 client chunked.
        with wt.RawConn(w.addr()) as c:
            c.send("GET /chunked HTTP/1.0\r\n\r\n")
            r, _ = c.read_final_response()
            self.assertStatus(r, 200, "HTTP/1.0 GET of a chunked origin response")
            self.assertFalse(r.chunked, f"chunked response sent to an HTTP/1.0 client:\n{r}")
            self.assertEqual(len(r.body), 5000)

    def test_large_header_values_pass(self):
        o = self.origin("a", wt.echo())
        w = self.start_weir(wt.basic_config({"app": o.address}))
        value = "v" * 4000
        r = wt.curl("-H", f"x-big: {value}", w.url("/big"))
        self.assertStatus(r, 200, "GET with a 4000-byte header")
        self.assertEqual(o.last().header("x-big"), value)

    # ---------------------------------------------------------------------------------------------
    def test_access_log_json(self):
        o = self.origin("a", wt.fixed("0123456789abcdef"))
        w = self.start_weir(wt.basic_config({"app": o.address}))
        r = wt.curl(w.url("/logme?x=1"))
        self.assertStatus(r, 200, "GET /logme")
        logs = w.wait_access_logs(1)
        mine = [l for l in logs if str(l.get("path", "")).startswith("/logme")]
        self.assertEqual(len(mine), 1, f"access log lines: {logs}\noutput:\n{w.log_text()}")
        a = mine[0]
        for key in ("ts", "level", "logger", "msg", "client", "method", "path", "status", "bytes",
                    "duration_ms", "upstream", "service"):
            self.assertIn(key, a, f"access log line lacks {key!r}: {a}")
        self.assertRegex(a["client"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(a["method"], "GET")
        self.assertEqual(a["status"], 200)
        self.assertIsInstance(a["status"], int)
        self.assertEqual(a["bytes"], 16)
        self.assertIsInstance(a["bytes"], int)
        self.assertIsInstance(a["duration_ms"], (int, float))
        self.assertGreaterEqual(a["duration_ms"], 0)
        self.assertEqual(a["upstream"], o.address)
        self.assertEqual(a["service"], "web")
        # With format = "json" every stdout line is one JSON object with ts, level, logger, msg.
        for line in w.text_lines("out"):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                self.fail(f"non-JSON stdout line with format = \"json\": {line!r}")
            self.assertIsInstance(obj, dict, line)
            for key in ("ts", "level", "logger", "msg"):
                self.assertIn(key, obj, f"log line lacks {key!r}: {line}")


class HostNameTargetsTest(wt.WeirTestCase):
    """Targets named by host name, looked up with the system's DNS servers (here the test's own,
    through a private /etc/resolv.conf; root only): static ones, and those of a discovery that
    publishes again (tests/plugins/file-targets)."""

    def dns_server(self, host: str, names: dict[str, str],
                   copies: int = 1) -> tuple[list[str], DnsServer]:
        """The test's DNS server on `host` and the prefix that runs weir with it as the system's
        resolver (`copies` nameserver lines); skips the test where that cannot be had."""
        wrap, why = private_resolv_conf(self.tmp, host, copies)
        if wrap is None:
            self.skipTest(why)
        try:
            dns = DnsServer(names, host)
        except OSError as e:
            self.skipTest(f"cannot listen on {host}:53: {e}")
        self.addCleanup(dns.stop)
        return wrap, dns

    def test_names_are_answered_before_serving_and_asked_again_until_they_resolve(self):
        host = "127.0.0.3"  # (test_health's server is on 127.0.0.2)
        wrap, dns = self.dns_server(host, {"near.weir.test": "127.0.0.1"})
        dns.delay["near.weir.test"] = 0.6  # a slow answer: weir must wait for it before serving
        a, b = self.origin("a"), self.origin("b")
        admin = wt.free_port()
        conf = wt.basic_config(
            {"app": [f"near.weir.test:{a.addr[1]}", f"later.weir.test:{b.addr[1]}"]},
            log_format="text", extra='[dns]\ntimeout = "1500ms"\ntries = 1\n'
                                     f'[admin]\nlisten = "127.0.0.1:{admin}"\n')

        def upstream() -> dict:
            r = wt.curl(f"http://127.0.0.1:{admin}/upstreams")
            self.assertStatus(r, 200, "admin /upstreams")
            return json.loads(r.body)["upstreams"][0]
        w = self.start_weir(conf, prefix=wrap)
        r = wt.curl(w.url("/first"))
        self.assertStatus(r, 200, "the first request, right after start: the slow name's answer "
                                  "came before weir served")
        self.assertEqual(r.header("x-origin"), "a")
        self.assertIsNotNone(
            w.wait_for_line(lambda s: f"target later.weir.test:{b.addr[1]} skipped: cannot "
                            'resolve "later.weir.test"' in s and "asked again" in s, 5),
            w.log_text(20))
        for i in range(4):
            r = wt.curl(w.url(f"/only-a-{i}"))
            self.assertStatus(r, 200, f"request {i} while one name does not resolve")
            self.assertEqual(r.header("x-origin"), "a")
        u = upstream()
        self.assertEqual([t["resolved"] for t in u["targets"]], [f"127.0.0.1:{a.addr[1]}"], u)
        self.assertEqual([s["address"] for s in u.get("skipped", [])],
                         [f"later.weir.test:{b.addr[1]}"], u)
        self.assertIn('cannot resolve "later.weir.test"', u["skipped"][0]["reason"])
        dns.names["later.weir.test"] = "127.0.0.1"
        self.assertIsNotNone(
            w.wait_for_line(lambda s: "added: [later.weir.test:" in s, 10),
            f"the name was not asked again:\n{w.log_text(20)}")
        seen = {wt.curl(w.url(f"/both-{i}")).header("x-origin") for i in range(4)}
        self.assertEqual(seen, {"a", "b"}, "round robin over both once the name resolves")
        self.assertNotIn("skipped", upstream())
        # The control loop survived the startup wait: SIGTERM drains and exits.
        self.assertEqual(w.stop(signal.SIGTERM, timeout=10), 0, w.log_text(10))

    def test_a_republished_name_follows_its_address_and_outlives_a_dns_failure(self):
        plugin_dir = os.path.join(wt.build_dir(), "tests", "plugins", "file-targets")
        if not os.path.isfile(os.path.join(plugin_dir, "test-file-targets.so")):
            self.skipTest(f"test-file-targets.so is not built in {plugin_dir}")
        host = "127.0.0.4"  # (test_health's server is on 127.0.0.2, the other test's on .3)
        wrap, dns = self.dns_server(host, {"svc.weir.test": "127.0.0.1"})
        a = self.origin("a")
        port = a.addr[1]
        b = wt.Origin("b", host="127.0.0.5", port=port, wait_free=2.5)  # the name's next address
        self.addCleanup(b.stop)
        c = self.origin("c")
        targets = os.path.join(self.tmp, "targets")

        def publish(*lines: str) -> None:
            with open(targets + ".new", "w") as f:
                f.write("".join(line + "\n" for line in lines))
            os.replace(targets + ".new", targets)

        publish(f"svc.weir.test:{port}")
        admin = wt.free_port()
        conf = f"""
[system]
workers = 1
plugin-dirs = [{wt.toml_str(plugin_dir)}]

[admin]
listen = "127.0.0.1:{admin}"

[log]
level = "info"
format = "text"

[dns]
timeout = "300ms"
tries = 1

[upstreams.app]
discovery = {{ use = "file-targets", file = {wt.toml_str(targets)}, poll = "50ms" }}

[services.web]
listeners = [{{ address = "127.0.0.1:0" }}]
upstream = "app"
"""
        w = self.start_weir(conf, prefix=wrap)

        def version() -> int:  # how many sets the workers were handed
            r = wt.curl(f"http://127.0.0.1:{admin}/upstreams")
            self.assertStatus(r, 200, "admin /upstreams")
            return json.loads(r.body)["upstreams"][0]["version"]

        def origins(n: int, tag: str) -> set:
            seen = set()
            for i in range(n):
                r = wt.curl(w.url(f"/{tag}-{i}"))
                self.assertStatus(r, 200, f"{tag} request {i}")
                seen.add(r.header("x-origin"))
            return seen

        self.assertEqual(origins(3, "first"), {"a"})
        # The same set published again while the name moved: the background lookup of the new
        # publication finds the new address, and the pooled connection to the old one is closed.
        dns.names["svc.weir.test"] = "127.0.0.5"
        mark = len(w.text_lines())
        publish("# the same target, published again", f"svc.weir.test:{port}")
        self.assertIsNotNone(
            w.wait_for_line(lambda s: f"changed: [svc.weir.test:{port} resolved 127.0.0.1:{port}"
                            f"->127.0.0.5:{port}]" in s, 5, start_index=mark), w.log_text(20))
        self.assertEqual(origins(4, "moved"), {"b"}, "requests still reach the old address")

        # DNS stops answering for the name; a publication that adds a target still applies at
        # once (the name has an answer already), and the name keeps its last address.
        dns.silent.add("svc.weir.test")
        mark = len(w.text_lines())
        publish(f"svc.weir.test:{port}", f"127.0.0.1:{c.addr[1]}")
        added = w.wait_for_line(lambda s: f"added: [127.0.0.1:{c.addr[1]}]" in s, 5,
                                start_index=mark)
        self.assertIsNotNone(added, w.log_text(20))
        kept = w.wait_for_line(lambda s: 'cannot resolve "svc.weir.test"' in s
                               and "keep the last address, 127.0.0.5" in s, 5, start_index=mark)
        self.assertIsNotNone(kept, w.log_text(20))
        lines = w.text_lines()
        self.assertLess(lines.index(added, mark), lines.index(kept, mark),
                        "the publication waited for the lookup of a name it already had")
        self.assertEqual(origins(4, "silent"), {"b", "c"})
        time.sleep(2.5)  # a retry after 1 s (the next after 2 more): still failing, not logged again
        self.assertEqual(sum("keep the last address" in t for t in w.text_lines()[mark:]), 1,
                         w.log_text(20))

        # DNS answers again, with the same address: logged once, and nothing is published.
        before = version()
        dns.silent.discard("svc.weir.test")
        self.assertIsNotNone(
            w.wait_for_line(lambda s: '"svc.weir.test" resolves again (127.0.0.5)' in s, 10,
                            start_index=mark), w.log_text(20))
        self.assertEqual(version(), before, "an answer that changed nothing was published")
        self.assertEqual(origins(4, "back"), {"b", "c"})

    def test_a_name_unanswered_past_the_startup_wait_does_not_hold_the_others(self):
        host = "127.0.0.6"
        # Six servers that never answer: a lookup waits 6 x 300 ms, past the startup wait's
        # 300 ms + 1 s.
        wrap, dns = self.dns_server(host, {}, copies=6)
        dns.silent.add("slow.weir.test")
        o = self.origin("literal")
        conf = wt.basic_config({"app": [f"127.0.0.1:{o.addr[1]}", "slow.weir.test:80"]},
                               log_format="text", extra='[dns]\ntimeout = "300ms"\ntries = 1\n')
        w = self.start_weir(conf, prefix=wrap)
        r = wt.curl(w.url("/"))
        self.assertStatus(r, 200, "the target by address, while the name is still unanswered")
        self.assertEqual(r.header("x-origin"), "literal")
        self.assertIsNotNone(w.wait_for_line(
            lambda s: "upstream app: host names not answered yet" in s, 1), w.log_text(10))
        self.assertIsNotNone(w.wait_for_line(
            lambda s: 'target slow.weir.test:80 skipped: cannot resolve "slow.weir.test"' in s, 5),
            w.log_text(10))

    def test_sigterm_after_start_with_names_from_etc_hosts(self):
        """A name /etc/hosts answers (no socket, no timer in flight) and nothing else running on
        the control thread: its loop must still be there for the signals."""
        try:
            socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)
        except socket.gaierror as e:  # a bare chroot may have no /etc/hosts
            self.skipTest(f"the name localhost does not resolve here: {e}")
        o = self.origin("o")
        w = self.start_weir(wt.basic_config({"app": [f"localhost:{o.addr[1]}"]}))
        # (200, or 502 where /etc/hosts gives ::1 first: the origin listens on 127.0.0.1 only.)
        self.assertIn(wt.curl(w.url("/")).status, (200, 502))
        self.assertIsNotNone(w.wait_for_line(lambda s: "added: [localhost:" in s, 5))
        self.assertEqual(w.stop(signal.SIGTERM, timeout=10), 0, w.log_text(10))


if __name__ == "__main__":
    wt.main()
