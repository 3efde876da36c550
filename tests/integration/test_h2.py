"""Downstream HTTP/2 (docs/http2.md): real clients (curl, nghttp, h2load) over TLS (ALPN h2) and h2c with prior
knowledge, bodies both ways, many streams on one connection, flow control and back-pressure,
graceful drain and idle close, and the abuse defences (rapid reset, SETTINGS/PING/empty-frame/
CONTINUATION floods, oversized header blocks, HPACK bombs) driven by h2raw.py. In every abuse
test weir stays up, its memory stays bounded, the offending connection ends (GOAWAY or EOF), and a
well-behaved client running at the same time sees no error.

Everything runs on 127.0.0.1 with peers started here; certificates are made per run.
"""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import h2raw
import tlsutil
import weirtest as wt
from h2raw import H2Conn

# Memory bounds for weir under attack: growth over the baseline measured after start-up, and an
# absolute ceiling (VmRSS, KiB).
RSS_GROWTH_KIB = 32 * 1024
RSS_CEILING_KIB = 128 * 1024

MIB = 1 << 20


class Certs:
    """A throw-away CA and one leaf for a.test (tlsutil, ECDSA P-256)."""

    def __init__(self, d: str):
        ca = tlsutil.Pki(d, "ca", "weir h2 CA")
        self.ca = ca.ca
        self.cert, self.key = ca.leaf("a", "a.test", dns=["a.test"])


class GoodClient(threading.Thread):
    """A well-behaved HTTP/2 client: sequential curl requests (h2c prior knowledge, a new
    connection each) until stopped; every failure is recorded."""

    def __init__(self, url: str, limit: int = 500):
        super().__init__(daemon=True)
        self.url = url
        self.limit = limit
        self.stop_event = threading.Event()
        self.ok = 0
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop_event.is_set() and self.ok + len(self.failures) < self.limit:
            p = wt.curl_raw("--http2-prior-knowledge", "-o", "/dev/null", "-w",
                            "%{http_code} %{http_version}", self.url, timeout=10)
            out = p.stdout.decode().strip()
            if p.returncode == 0 and out == "200 2":
                self.ok += 1
            else:
                self.failures.append(f"rc={p.returncode} out={out!r} err={p.stderr.decode()!r}")
            time.sleep(0.02)

    def finish(self) -> None:
        self.stop_event.set()
        self.join(timeout=20)


class H2Test(wt.WeirTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        for tool in ("curl", "nghttp", "h2load", "openssl"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(f"{tool} is not installed")
        cls.pki_dir = tempfile.mkdtemp(prefix="weir-h2-pki-")
        cls.certs = Certs(cls.pki_dir)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.pki_dir, ignore_errors=True)

    # -- set-up helpers
    def start(self, origin: wt.Origin | None = None, limits: str = "",
              access_log: bool = True, extra: str = "") -> wt.Weir:
        self.origin_ = origin or self.origin("o", wt.echo())
        c = self.certs
        tls = (f"tls = {{ certificates = [{{ cert = {wt.toml_str(c.cert)}, "
               f"key = {wt.toml_str(c.key)} }}] }}")
        text = f"""
[system]
workers = 1
shutdown-grace = "10s"
[log]
format = "json"
access-log = {"true" if access_log else "false"}
[upstreams.app]
discovery = {{ use = "static", targets = ["{self.origin_.address}"] }}
lb = {{ use = "round-robin" }}
[services.web]
listeners = [{{ address = "127.0.0.1:{wt.free_port()}", h2c = true }},
             {{ address = "127.0.0.1:{wt.free_port()}", {tls} }}]
upstream = "app"
[services.web.limits]
{limits}
{extra}
"""
        self.w = self.start_weir(text)
        self.h2c = self.w.addr("web", 0)
        self.tls = self.w.addr("web", 1)
        # Warm up (first-use allocations) before taking the memory baseline.
        r = wt.curl("--http2-prior-knowledge", wt.url(self.h2c, "/warmup"))
        self.assertEqual(r.status, 200, r)
        self.rss_base = self.w.vm_rss_kib()
        return self.w

    def good_client(self) -> GoodClient:
        g = GoodClient(wt.url(self.h2c, "/good"))
        g.start()
        self.addCleanup(g.finish)
        return g

    def check_good_client(self, g: GoodClient) -> None:
        time.sleep(0.3)  # a few requests after the attack too
        g.finish()
        self.assertEqual(g.failures, [], "the well-behaved client saw errors")
        self.assertGreater(g.ok, 0)

    def sanitized(self) -> bool:
        """Whether weir runs with AddressSanitizer (its shadow memory and quarantine make RSS
        meaningless as a bound)."""
        try:
            with open(f"/proc/{self.w.pid}/maps") as f:
                return "libasan" in f.read()
        except OSError:
            return False

    def check_memory(self) -> None:
        self.assertTrue(self.w.alive(), "weir died")
        if self.sanitized():
            return
        rss = self.w.vm_rss_kib()
        self.assertIsNotNone(rss)
        if os.environ.get("WEIR_TEST_VERBOSE"):
            sys.stderr.write(f"\n{self.id()}: VmRSS {self.rss_base} -> {rss} KiB\n")
        self.assertLess(rss - self.rss_base, RSS_GROWTH_KIB,
                        f"VmRSS grew from {self.rss_base} KiB to {rss} KiB")
        self.assertLess(rss, RSS_CEILING_KIB)

    def check_closed(self, c: H2Conn, code: int | None = h2raw.ENHANCE_YOUR_CALM,
                     timeout: float = 10) -> None:
        """The server ended the connection: GOAWAY (with `code`, if GOAWAY came) and EOF."""
        self.assertTrue(c.wait_closed(timeout) or c.goaway is not None,
                        "the offending connection was neither closed nor sent GOAWAY")
        if c.goaway is not None and code is not None:
            self.assertEqual(c.goaway.error_code, code, str(c.goaway))

    def log_lines(self, needle: str) -> list[str]:
        return [l for l in self.w.text_lines() if needle in l]

    def wait_log(self, needle: str, timeout: float = 5) -> str:
        line = self.w.wait_for_line(lambda l: needle in l, timeout)
        self.assertIsNotNone(line, f"no log line with {needle!r}\n{self.w.log_text(40)}")
        return line

    def block(self, method: str = "GET", path: str = "/", extra=()) -> bytes:
        return h2raw.request_block(method, path, f"127.0.0.1:{self.h2c[1]}", extra=extra)

    # -- real clients ------------------------------------------------------------------------
    def test_curl_over_tls_negotiates_h2(self):
        self.start()
        host, port = self.tls
        r = wt.curl("--http2", "-v", "--cacert", self.certs.ca, "--resolve",
                    f"a.test:{port}:{host}", "-H", "cookie: a=1", "-H", "cookie: b=2",
                    "-H", "x-custom: yes", f"https://a.test:{port}/path/x?q=1")
        self.assertEqual(r.status, 200, r)
        self.assertIn("ALPN: server accepted h2", r.stderr)
        self.assertRegex(r.stderr, r"< HTTP/2 200")
        seen = self.origin_.last()
        self.assertEqual(seen.version, "HTTP/1.1")
        self.assertEqual(seen.target, "/path/x?q=1")
        self.assertEqual(seen.header("host"), f"a.test:{port}")
        self.assertEqual(seen.header_all("cookie"), ["a=1; b=2"])
        self.assertEqual(seen.header("x-custom"), "yes")
        self.assertEqual(seen.header("x-forwarded-proto"), "https")
        logs = [a for a in self.w.wait_access_logs(2) if a.get("path") == "/path/x?q=1"]
        self.assertEqual(len(logs), 1, self.w.log_text(20))
        self.assertEqual(logs[0]["version"], "2.0")
        self.assertEqual(logs[0]["status"], 200)

    def test_h2c_prior_knowledge_and_http11_share_a_listener(self):
        self.start()
        p = wt.curl_raw("--http2-prior-knowledge", "-sS", "-o", "/dev/null", "-w",
                        "%{http_code} %{http_version}", wt.url(self.h2c, "/h2c"))
        self.assertEqual(p.stdout.decode(), "200 2", p.stderr)
        p = wt.curl_raw("--http1.1", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                        wt.url(self.h2c, "/h1"))
        self.assertEqual(p.stdout.decode(), "200 1.1", p.stderr)
        self.assertEqual([r.path for r in self.origin_.snapshot()][-2:], ["/h2c", "/h1"])

    def test_nghttp_and_request_headers(self):
        self.start()
        p = subprocess.run(["nghttp", "-v", "-H", "x-one: 1", "-H", "te: trailers",
                            "-H", "cookie: a=1", "-H", "cookie: b=2", "-H", "proxy-foo: 1",
                            wt.url(self.h2c, "/ng?x=y")],
                           capture_output=True, timeout=30, env=wt.clean_env())
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        self.assertRegex(out, r":status: 200")
        seen = self.origin_.last()
        self.assertEqual(seen.target, "/ng?x=y")
        self.assertEqual(seen.header("x-one"), "1")
        self.assertIsNone(seen.header("te"))  # hop-by-hop
        self.assertIsNone(seen.header("proxy-foo"))
        self.assertEqual(seen.header("cookie"), "a=1; b=2")  # crumbs joined (RFC 9113 8.2.3)
        self.assertEqual(seen.header("host"), f"127.0.0.1:{self.h2c[1]}")

    def test_many_concurrent_streams_on_one_connection(self):
        self.start(self.origin("o", wt.slow(0.5)))
        t0 = time.monotonic()
        p = subprocess.run(["nghttp", "-n", "-s", "-m", "100", wt.url(self.h2c, "/slow")],
                           capture_output=True, timeout=60, env=wt.clean_env())
        elapsed = time.monotonic() - t0
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        self.assertEqual(len(re.findall(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+200\s", out, re.M)), 100,
                         out)
        # 100 requests of 0.5 s each: concurrent, not one after the other.
        self.assertLess(elapsed, 10, out)
        logs = [a for a in self.w.wait_access_logs(101) if a.get("path") == "/slow"]
        self.assertEqual(len(logs), 100)
        self.assertEqual(len({a["client"] for a in logs}), 1, "not one connection")

    def test_h2load_20000_requests(self):
        self.start(access_log=False)
        p = subprocess.run(["h2load", "-n", "20000", "-c", "10", "-m", "10",
                            wt.url(self.h2c, "/load")],
                           capture_output=True, timeout=240, env=wt.clean_env())
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
        self.assertIsNotNone(m, out)
        total, started, done, ok, failed, errored, timeout = map(int, m.groups())
        self.assertEqual((total, done, ok, failed, errored, timeout), (20000, 20000, 20000, 0, 0, 0),
                         out)
        self.assertRegex(out, r"status codes: 20000 2xx")
        self.check_memory()

    def test_bodies_both_ways_5mib_over_tls(self):
        origin = self.origin("o", wt.echo(), paths={"/big": wt.stream(5 * MIB),
                                                     "/bigc": wt.stream(5 * MIB, chunked=True)})
        origin.KEEP_BODY = 8 * MIB  # hash whole bodies
        self.start(origin)
        host, port = self.tls
        common = ["--http2", "--cacert", self.certs.ca, "--resolve", f"a.test:{port}:{host}"]
        base = f"https://a.test:{port}"
        payload = os.urandom(5 * MIB)
        digest = hashlib.sha256(payload).hexdigest()
        path = os.path.join(self.tmp, "up.bin")
        with open(path, "wb") as f:
            f.write(payload)

        # Upload with Content-Length (POST), then without (PUT from stdin: chunked upstream).
        r = wt.curl(*common, "--data-binary", f"@{path}", f"{base}/up", timeout=60)
        self.assertEqual(r.status, 200, r)
        echo = json.loads(r.body)
        self.assertEqual((echo["body_len"], echo["body_sha256"]), (len(payload), digest))
        self.assertEqual(self.origin_.last().header("content-length"), str(len(payload)))
        with open(path, "rb") as stdin:
            r = wt.curl(*common, "-T", "-", f"{base}/up2", timeout=60, stdin=stdin)
        self.assertEqual(r.status, 200, r)
        echo = json.loads(r.body)
        self.assertEqual((echo["body_len"], echo["body_sha256"]), (len(payload), digest))
        self.assertEqual(self.origin_.last().header("transfer-encoding"), "chunked")

        # Downloads, with Content-Length and chunked upstream.
        want = hashlib.sha256(b"x" * (5 * MIB)).hexdigest()
        for p in ("/big", "/bigc"):
            with self.subTest(path=p):
                r = wt.curl(*common, f"{base}{p}", timeout=60)
                self.assertEqual(r.status, 200, r)
                self.assertEqual(hashlib.sha256(r.body).hexdigest(), want)
        self.check_memory()

    def test_oversized_header_block_gets_431_and_the_connection_survives(self):
        self.start()
        big = "a" * 40000  # over max-header-bytes (32 KiB), in HEADERS + CONTINUATION
        p = subprocess.run(["nghttp", "-v", "-H", f"x-big: {big}", wt.url(self.h2c, "/big")],
                           capture_output=True, timeout=30, env=wt.clean_env())
        self.assertRegex(p.stdout.decode()[-2000:], r":status: 431")
        # The same over raw frames; the connection carries on afterwards.
        with H2Conn(self.h2c) as c:
            c.handshake()
            block = self.block("GET", "/big", extra=[("x-big", big)])
            pieces = [block[i:i + 16000] for i in range(0, len(block), 16000)]
            c.send(h2raw.headers(1, pieces[0], end_stream=True, end_headers=False))
            for i, piece in enumerate(pieces[1:], 1):
                c.send(h2raw.continuation(1, piece, end_headers=i == len(pieces) - 1))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 1 and f.end_stream, 5))
            self.assertEqual(c.data_received.get(1), len("431 Request Header Fields Too Large\n"))
            c.send(h2raw.headers(3, self.block("GET", "/after"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 3 and f.end_stream, 5))
            self.assertFalse(c.ended())
        self.assertEqual([r.path for r in self.origin_.snapshot()][-1], "/after")
        self.assertNotIn("/big", [r.path for r in self.origin_.snapshot()])

    def test_expect_100_continue(self):
        self.start()
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("POST", "/expect", extra=[
                ("content-length", "5"), ("expect", "100-continue")])))
            interim = c.read_until(lambda f: f.type == h2raw.HEADERS and f.stream_id == 1, 5)
            self.assertIsNotNone(interim, "no 100 (Continue) before the body")
            self.assertFalse(interim.end_stream)
            c.send(h2raw.data(1, b"hello", end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 1 and f.end_stream, 5))
        seen = self.origin_.last()
        self.assertEqual((seen.path, seen.body), ("/expect", b"hello"))
        self.assertIsNone(seen.header("expect"))

    def test_max_body(self):
        # Raw frames: weir answers 413 before the upload ends, then stops it with RST_STREAM
        # NO_ERROR (RFC 9113 8.1), which curl 7.88 sometimes reports as a failed transfer.
        self.start(limits="max-body = 1000")
        answer = len("413 Payload Too Large\n")
        with H2Conn(self.h2c) as c:
            # Content-Length over the limit: refused before anything goes upstream.
            c.send(h2raw.headers(1, self.block("POST", "/cl", extra=[("content-length", "5000")])))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 1 and f.end_stream, 5))
            self.assertEqual(c.data_received.get(1), answer)
            c.send(h2raw.data(1, b"y" * 5000, end_stream=True))
            # No Content-Length: refused once the body crosses the limit.
            c.send(h2raw.headers(3, self.block("PUT", "/stream")))
            c.send(h2raw.data(3, b"y" * 800))
            c.send(h2raw.data(3, b"y" * 800))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 3 and f.end_stream, 5))
            self.assertEqual(c.data_received.get(3), answer)
            rst = c.read_until(lambda f: f.type == h2raw.RST_STREAM and f.stream_id == 3, 5)
            self.assertIsNotNone(rst, "\n".join(map(str, c.frames)))
            self.assertEqual(rst.error_code, h2raw.NO_ERROR)
            self.assertFalse(c.ended())
        paths = {r.path: r for r in self.origin_.snapshot()}
        self.assertNotIn("/cl", paths)
        stream = paths.get("/stream")  # the head may have gone upstream, never a whole body
        self.assertTrue(stream is None or not stream.body_complete,
                        "a truncated body went upstream whole")
        r = wt.curl("--http2-prior-knowledge", "--data-binary", "small", wt.url(self.h2c, "/ok"))
        self.assertEqual(r.status, 200, r)

    def test_h2c_on_a_unix_socket(self):
        origin = self.origin("o", wt.echo())
        sock = os.path.join(self.tmp, "weir.sock")
        text = wt.basic_config({"app": [origin.address]}).replace(
            'listeners = [{ address = "127.0.0.1:0" }]',
            f'listeners = [{{ address = "unix:{sock}", h2c = true }}]')
        # (weirtest cannot parse a unix: listening line: wait for readiness here.)
        w = self.start_weir(text, wait_ready=False)
        self.assertIsNotNone(w.wait_for_line(lambda l: "weir ready" in l, 15), w.log_text(20))
        p = wt.curl_raw("--http2-prior-knowledge", "--unix-socket", sock, "-o", "/dev/null",
                        "-w", "%{http_code} %{http_version}", "http://localhost/unix")
        self.assertEqual(p.stdout.decode(), "200 2", p.stderr)
        self.assertEqual(origin.last().path, "/unix")

    # -- flow control and back-pressure --------------------------------------------------------
    def test_slow_reader_pushes_back_on_the_upstream(self):
        origin = self.origin("o", wt.echo(), paths={"/huge": wt.stream(1 << 30)})
        self.start(origin)
        with H2Conn(self.h2c) as c:  # default windows (64 KiB), never a WINDOW_UPDATE
            c.send(h2raw.headers(1, self.block("GET", "/huge"), end_stream=True))
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                c.read_frame(0.2)
            self.assertFalse(c.ended(), "\n".join(map(str, c.frames)))
            self.assertLessEqual(c.data_received.get(1, 0), 65535)
            self.assertGreater(c.data_received.get(1, 0), 0)
            # weir holds the upstream back instead of buffering the gigabyte.
            self.check_memory()
            r = wt.curl("--http2-prior-knowledge", wt.url(self.h2c, "/other"))
            self.assertEqual(r.status, 200, r)
            # The client opens the window a little: exactly that much more arrives.
            c.send(h2raw.window_update(0, 100000) + h2raw.window_update(1, 100000))
            deadline = time.monotonic() + 3
            while c.data_received.get(1, 0) < 65535 + 100000 and time.monotonic() < deadline:
                c.read_frame(0.2)
            self.assertEqual(c.data_received.get(1, 0), 65535 + 100000)

    def test_response_held_by_a_closed_window_is_reset_after_send_timeout(self):
        # A client that grants no stream window at all: the response's HEADERS leave, its DATA
        # cannot. weir holds it for send-timeout, then resets the stream and says why; the
        # connection and other clients go on.
        self.start(limits='send-timeout = "1s"')
        with H2Conn(self.h2c, local_settings=[(h2raw.INITIAL_WINDOW_SIZE, 0)]) as c:
            t0 = time.monotonic()
            c.send(h2raw.headers(1, self.block("GET", "/held"), end_stream=True))
            rst = c.read_until(lambda f: f.type == h2raw.RST_STREAM and f.stream_id == 1, 8)
            self.assertIsNotNone(rst, "\n".join(map(str, c.frames)))
            self.assertEqual(rst.error_code, h2raw.CANCEL)
            self.assertGreaterEqual(time.monotonic() - t0, 0.9)
            self.assertTrue([f for f in c.frames if f.type == h2raw.HEADERS and f.stream_id == 1])
            self.assertEqual(c.data_received.get(1, 0), 0)
            self.wait_log("took nothing of the response for 1000ms")
            self.assertFalse(c.ended())
            # The connection still serves a stream whose response is only HEADERS.
            c.send(h2raw.headers(3, self.block("HEAD", "/head"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 3 and f.end_stream, 5))
        r = wt.curl("--http2-prior-knowledge", wt.url(self.h2c, "/other"))
        self.assertEqual(r.status, 200, r)

    def test_end_of_a_response_held_by_an_exactly_used_window(self):
        # The body uses the client's stream window exactly, and the response's end comes later
        # (the chunked terminator after a pause): its END_STREAM needs an empty DATA frame,
        # which a window of 0 holds back too. weir waits send-timeout for it, then resets.
        body = b"z" * 100
        origin = wt.ScriptedOrigin(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" + body + b"\r\n",
            0.4, b"0\r\n\r\n")
        self.addCleanup(origin.stop)
        self.start(limits='send-timeout = "1s"',
                   extra=f'[upstreams.held]\ndiscovery = {{ use = "static", targets = '
                         f'["{origin.address}"] }}\nlb = {{ use = "round-robin" }}\n'
                         f'[[services.web.routes]]\npath-prefix = "/held"\nupstream = "held"\n')
        with H2Conn(self.h2c, local_settings=[(h2raw.INITIAL_WINDOW_SIZE, len(body))]) as c:
            c.send(h2raw.headers(1, self.block("GET", "/held"), end_stream=True))
            rst = c.read_until(lambda f: f.type == h2raw.RST_STREAM and f.stream_id == 1, 8)
            self.assertIsNotNone(rst, "\n".join(map(str, c.frames)))
            self.assertEqual(rst.error_code, h2raw.CANCEL)
            self.assertEqual(c.data_received.get(1, 0), len(body))
            self.assertFalse([f for f in c.frames if f.stream_id == 1 and f.end_stream])
            self.wait_log("took nothing of the response for 1000ms")
            self.assertFalse(c.ended())

    def test_request_body_beyond_the_window_is_refused(self):
        # An upstream that accepts and never reads: weir stops taking the body once the kernel
        # buffers are full, so a client ignoring flow control overruns its window.
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        self.addCleanup(lsock.close)
        held: list[socket.socket] = []

        def accept() -> None:
            try:
                while True:
                    s, _ = lsock.accept()
                    held.append(s)
            except OSError:
                pass

        threading.Thread(target=accept, daemon=True).start()
        self.addCleanup(lambda: [s.close() for s in held])
        sink = f"127.0.0.1:{lsock.getsockname()[1]}"
        self.start(self.origin("o", wt.echo()), extra=f"""
[[services.web.routes]]
path-prefix = "/sink"
upstream = "sink"
[upstreams.sink]
discovery = {{ use = "static", targets = ["{sink}"] }}
lb = {{ use = "round-robin" }}
""")
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("POST", "/sink/up")))
            chunk = h2raw.data(1, b"z" * 16000)
            sent = c.flood(chunk, 3000, 15, batch=16)  # up to 48 MB, ignoring every window
            c.read_until(lambda f: f.error_code == h2raw.FLOW_CONTROL_ERROR, 5)
            codes = [f.error_code for f in c.frames if f.type in (h2raw.RST_STREAM, h2raw.GOAWAY)]
            self.assertIn(h2raw.FLOW_CONTROL_ERROR, codes,
                          f"sent {sent} frames\n" + "\n".join(map(str, c.frames[-10:])))
        self.check_memory()
        self.check_good_client(g)

    # -- connection management -----------------------------------------------------------------
    def test_idle_connection_gets_goaway(self):
        self.start(limits='keepalive-timeout = "1s"')
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("GET", "/one"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 1 and f.end_stream, 5))
            t0 = time.monotonic()
            f = c.read_until(lambda f: f.type == h2raw.GOAWAY, 5)
            self.assertIsNotNone(f, "no GOAWAY on an idle connection")
            self.assertEqual(f.error_code, h2raw.NO_ERROR)
            self.assertEqual(f.last_stream_id, 1)
            self.assertGreater(time.monotonic() - t0, 0.5)
            self.assertTrue(c.wait_closed(5))

    def test_drain_finishes_open_streams(self):
        self.start(self.origin("o", wt.echo(), paths={"/slow": wt.slow(1.5, "done")}))
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("GET", "/slow"), end_stream=True))
            time.sleep(0.4)
            self.w.send_signal(signal.SIGTERM)
            goaway = c.read_until(lambda f: f.type == h2raw.GOAWAY, 5)
            self.assertIsNotNone(goaway, "\n".join(map(str, c.frames)))
            self.assertEqual((goaway.error_code, goaway.last_stream_id), (h2raw.NO_ERROR, 1))
            end = c.read_until(lambda f: f.stream_id == 1 and f.end_stream, 5)
            self.assertIsNotNone(end, "\n".join(map(str, c.frames)))
            self.assertEqual(c.data_received.get(1), len(b"done"))
            self.assertTrue(c.wait_closed(5))
        self.assertEqual(self.w.wait(15), 0)

    def test_sigint_with_streams_in_flight(self):
        # A forced stop tears the coroutines down in any order: no crash, prompt exit.
        self.start(self.origin("o", wt.echo(), paths={"/slow": wt.slow(5),
                                                       "/huge": wt.stream(1 << 30)}))
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("GET", "/slow"), end_stream=True))
            c.send(h2raw.headers(3, self.block("GET", "/huge"), end_stream=True))
            c.send(h2raw.headers(5, self.block("POST", "/slow")) + h2raw.data(5, b"partial"))
            self.assertIsNotNone(c.read_until(lambda f: f.type == h2raw.DATA, 5))
            t0 = time.monotonic()
            self.w.send_signal(signal.SIGINT)
            code = self.w.wait(10)
        self.assertIsNotNone(code, "weir did not exit within 10 s of SIGINT")
        self.assertGreaterEqual(code, 0, f"weir died of signal {-code}")
        self.assertLess(time.monotonic() - t0, 3)
        self.assertNotIn("AddressSanitizer", self.w.log_text())

    def test_client_reset_mid_request(self):
        self.start(self.origin("o", wt.echo(), paths={"/slow": wt.slow(1)}))
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("GET", "/slow"), end_stream=True))
            self.assertTrue(wt.wait_until(lambda: self.origin_.request_count >= 2, 5))
            c.send(h2raw.rst_stream(1, h2raw.CANCEL))
            # The connection goes on meanwhile.
            c.send(h2raw.headers(3, self.block("GET", "/next"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 3 and f.end_stream, 5))
            # The reset stream's exchange ends when its upstream answers; nothing of it reaches
            # the client.
            self.assertTrue(wt.wait_until(
                lambda: any(a.get("path") == "/slow" for a in self.w.access_logs()), 5))
            c.poll()
            self.assertFalse([f for f in c.frames if f.stream_id == 1], c.frames)
            self.assertFalse(c.ended())
            c.send(h2raw.headers(5, self.block("GET", "/last"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 5 and f.end_stream, 5))

    def test_content_length_mismatch_is_a_stream_error(self):
        self.start()
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("POST", "/cl", extra=[("content-length", "10")])))
            c.send(h2raw.data(1, b"0123", end_stream=True))
            f = c.read_until(lambda f: f.type == h2raw.RST_STREAM and f.stream_id == 1, 5)
            self.assertIsNotNone(f, "\n".join(map(str, c.frames)))
            self.assertEqual(f.error_code, h2raw.PROTOCOL_ERROR)
            c.send(h2raw.headers(3, self.block("GET", "/fine"), end_stream=True))
            self.assertIsNotNone(c.read_until(lambda f: f.stream_id == 3 and f.end_stream, 5))

    def test_connect_is_refused(self):
        self.start()
        with H2Conn(self.h2c) as c:
            block = h2raw.literal(":method", "CONNECT") + h2raw.literal(":authority", "x.test:443")
            c.send(h2raw.headers(1, block, end_stream=True))
            f = c.read_until(lambda f: f.stream_id == 1 and (f.end_stream or
                                                              f.type == h2raw.RST_STREAM), 5)
            self.assertIsNotNone(f, "\n".join(map(str, c.frames)))
        self.assertNotIn("x.test:443", [r.target for r in self.origin_.snapshot()])
        logs = [a for a in self.w.wait_access_logs(2) if a.get("method") == "CONNECT"]
        self.assertEqual([a["status"] for a in logs], [405], self.w.log_text(10))

    # -- abuse -------------------------------------------------------------------------------
    def test_rapid_reset(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            block = self.block("GET", "/rr")
            sent = 0
            deadline = time.monotonic() + 20
            while sent < 10000 and time.monotonic() < deadline and not c.ended():
                batch = b"".join(h2raw.headers(1 + 2 * i, block, end_stream=True) +
                                 h2raw.rst_stream(1 + 2 * i) for i in range(sent, sent + 100))
                if not c.send(batch):
                    break
                sent += 100
                c.poll()
            self.check_closed(c, code=None)
            if c.goaway is not None:
                self.assertIn(c.goaway.error_code, (h2raw.ENHANCE_YOUR_CALM,
                                                    h2raw.INTERNAL_ERROR), str(c.goaway))
        # A stream reset in the same read as its HEADERS never starts its exchange.
        reached = sum(1 for r in self.origin_.snapshot() if r.path == "/rr")
        self.assertLess(reached, 50, "reset streams reached the upstream")
        self.wait_log("rapid reset")
        self.assertEqual(len(self.log_lines("rapid reset")), 1)
        self.check_memory()
        self.check_good_client(g)

    def test_rapid_reset_of_streams_in_progress(self):
        # Streams reset while their exchange waits for a slow upstream: they wind down when it
        # answers; a second round crosses the early-reset threshold.
        self.start(self.origin("o", wt.echo(), paths={"/slow": wt.slow(1)}))
        g = self.good_client()
        block = self.block("GET", "/slow")
        with H2Conn(self.h2c) as c:
            c.handshake()
            sid = 1
            for _ in range(2):
                ids = list(range(sid, sid + 2 * 120, 2))
                sid += 2 * 120
                c.send(b"".join(h2raw.headers(i, block, end_stream=True) for i in ids))
                time.sleep(0.3)  # the exchanges are under way
                c.send(b"".join(h2raw.rst_stream(i) for i in ids))
                c.poll()
            self.check_closed(c)
        self.wait_log("rapid reset")
        # Every exchange ends (when the upstream answers), and weir lets the connection go.
        self.assertTrue(wt.wait_until(
            lambda: sum(1 for a in self.w.access_logs() if a.get("path") == "/slow") >= 120, 10),
            self.w.log_text(20))
        self.check_memory()
        self.check_good_client(g)

    def test_settings_flood(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            c.flood(h2raw.settings([(h2raw.INITIAL_WINDOW_SIZE, 65535)]), 10000, 20)
            self.check_closed(c)
        self.wait_log("SETTINGS flood")
        self.check_memory()
        self.check_good_client(g)

    def test_ping_flood(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            c.flood(h2raw.ping(), 10000, 20)
            self.check_closed(c)
        self.wait_log("PING flood")
        self.check_memory()
        self.check_good_client(g)

    def test_ping_flood_without_reading(self):
        # A client that never reads: the ACKs cannot leave; nghttp2's outbound limit or our
        # per-second count ends it.
        self.start()
        with H2Conn(self.h2c) as c:
            unit = h2raw.ping() * 100
            deadline = time.monotonic() + 10
            sent = 0
            while sent < 10000 and time.monotonic() < deadline and c.send(unit):
                sent += 100
            self.check_closed(c, code=None)
        self.check_memory()

    def test_empty_data_frame_flood(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            c.send(h2raw.headers(1, self.block("POST", "/empty")))
            c.flood(h2raw.data(1, b""), 10000, 20)
            self.check_closed(c)
        self.wait_log("empty frame flood")
        self.check_memory()
        self.check_good_client(g)

    def test_empty_headers_and_continuation_flood(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            # A header block that never ends: an empty HEADERS, then empty CONTINUATIONs.
            c.handshake()
            c.send(h2raw.headers(1, b"", end_stream=False, end_headers=False))
            c.flood(h2raw.continuation(1, b""), 10000, 20)
            self.check_closed(c)
        self.check_memory()
        self.check_good_client(g)

    def test_continuation_flood(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            # One header block that never ends, 16 KB per frame.
            filler = b"".join(h2raw.literal(f"x-pad-{i}", "p" * 1000) for i in range(15))
            c.handshake()
            c.send(h2raw.headers(1, self.block("GET", "/cont"), end_headers=False))
            sent = c.flood(h2raw.continuation(1, filler), 1000, 20, batch=10)
            self.check_closed(c)
            self.assertLess(sent, 1000)
        self.wait_log("CONTINUATION flood")
        self.assertNotIn("/cont", [r.path for r in self.origin_.snapshot()])
        self.check_memory()
        self.check_good_client(g)

    def test_hpack_bomb(self):
        self.start()
        g = self.good_client()
        with H2Conn(self.h2c) as c:
            # 4 KB enter the dynamic table once; each 1-byte reference to it decodes to 4 KB, so
            # one 16 KB frame stands for 64 MB of header fields.
            first = h2raw.literal_indexed("x-bomb", "b" * 4000)
            refs = h2raw.indexed(62) * 12000
            sent = 0
            for i in range(20):
                block = self.block("GET", "/bomb") + (first if i == 0 else b"") + refs
                if not c.send(h2raw.headers(1 + 2 * i, block, end_stream=True)):
                    break
                sent += 1
                c.poll()
                if c.ended():
                    break
            self.check_closed(c)
        self.wait_log("header blocks over")
        self.assertNotIn("/bomb", [r.path for r in self.origin_.snapshot()])
        self.check_memory()
        self.check_good_client(g)

    def test_slow_header_block(self):
        self.start(limits='header-timeout = "1s"')
        with H2Conn(self.h2c) as c:
            c.handshake()
            c.send(h2raw.headers(1, self.block("GET", "/slowloris"), end_headers=False))
            t0 = time.monotonic()
            self.check_closed(c, timeout=5)
            self.assertLess(time.monotonic() - t0, 4)
        self.wait_log("header block not complete")

    def test_abuse_over_tls(self):
        # The same defences over TLS (a different transport template).
        self.start()
        g = self.good_client()
        with H2Conn(self.tls, tls=True, server_name="a.test") as c:
            c.flood(h2raw.ping(), 10000, 20)
            self.check_closed(c)
        self.wait_log("PING flood")
        self.check_memory()
        self.check_good_client(g)


if __name__ == "__main__":
    unittest.main(verbosity=2)
