"""HTTP/2 towards upstreams (docs/http2.md, "Upstream HTTP/2"): protocol "h2" over TLS (ALPN) and
cleartext (h2c with prior knowledge), protocol "auto" choosing h2 or http/1.1 by ALPN, trailers
passing h2 to h2, request bodies streamed both ways, h2load through weir with many requests
multiplexed over few upstream connections, an upstream that goes away and comes back.

The HTTP/2 origin is nghttpd (Debian package nghttp2-server), started here on 127.0.0.1.
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import h2raw
import tlsutil
import weirtest as wt

MIB = 1 << 20


class Pki:
    """A throw-away CA (tlsutil) and a leaf for origin.test and 127.0.0.1."""

    def __init__(self, d: str):
        ca = tlsutil.Pki(d, "ca", "weir up CA")
        self.ca = ca.ca
        self.cert, self.key = ca.leaf("o", "origin.test", dns=["origin.test"], ips=["127.0.0.1"])


class Nghttpd:
    """nghttpd serving `docroot` on 127.0.0.1:port, h2c (no TLS) or TLS with ALPN h2."""

    def __init__(self, docroot: str, port: int, tls: Pki | None = None, extra=()):
        self.port = port
        cmd = ["nghttpd", "-a", "127.0.0.1", "-d", docroot, "--echo-upload", *extra]
        if tls is None:
            cmd += ["--no-tls", str(port)]
        else:
            cmd += [str(port), tls.key, tls.cert]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ok = wt.wait_until(lambda: self._accepts() or self.proc.poll() is not None, 10)
        if not ok or self.proc.poll() is not None:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None else ""
            raise AssertionError(f"nghttpd did not start: {err}")

    def _accepts(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def established_to(port: int) -> int:
    """TCP connections in ESTABLISHED state to 127.0.0.1:port (from /proc/net/tcp)."""
    n = 0
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[2] == want and parts[3] == "01":
                n += 1
    return n


class Listener:
    """A listening socket on 127.0.0.1 whose thread hands each accepted connection to handle()
    until stop()."""

    def __init__(self, rcvbuf: int | None = None, accept_timeout: float | None = None):
        self.srv = socket.create_server(("127.0.0.1", 0))
        if rcvbuf is not None:
            self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if accept_timeout is not None:
            self.srv.settimeout(accept_timeout)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            self.handle(c)

    def handle(self, c: socket.socket) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.srv.close()
        self.thread.join(5)


class H1TlsOrigin(Listener):
    """A keep-alive HTTP/1.1 origin over TLS that offers only http/1.1 in ALPN (Python's ssl).
    Records the ALPN protocol chosen per connection and each request line (GETs, no bodies)."""

    def __init__(self, pki: Pki):
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(pki.cert, pki.key)
        self.ctx.set_alpn_protocols(["http/1.1"])
        self.seen: list = []
        super().__init__(accept_timeout=20)

    def handle(self, raw: socket.socket) -> None:
        # A thread per connection: one kept alive must not hold up the next accept.
        threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw: socket.socket) -> None:
        try:
            with self.ctx.wrap_socket(raw, server_side=True) as c:
                c.settimeout(10)
                self.seen.append(c.selected_alpn_protocol())
                data = b""
                while True:
                    while b"\r\n\r\n" not in data:
                        chunk = c.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    head, data = data.split(b"\r\n\r\n", 1)
                    self.seen.append(head.split(b"\r\n", 1)[0].decode())
                    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nh1!")
        except (OSError, ssl.SSLError) as e:
            self.seen.append(f"error: {e}")


class StallingH2Peer(Listener):
    """An h2c upstream that completes the connection preface, grants the largest windows, and
    then never reads again: what weir writes piles up in the kernel's buffers until its writes
    block. Counts the connections it accepted and notices when weir closes one."""

    def __init__(self):
        self.conns: list[socket.socket] = []
        super().__init__(rcvbuf=16384)  # small: weir's writes block after little data

    def handle(self, c: socket.socket) -> None:
        c.settimeout(5)
        try:
            got = b""
            while len(got) < len(h2raw.PREFACE) + 9:  # the preface and SETTINGS' header
                chunk = c.recv(4096)
                if not chunk:
                    break
                got += chunk
            c.sendall(h2raw.settings([(h2raw.INITIAL_WINDOW_SIZE, (1 << 31) - 1)]) +
                      h2raw.window_update(0, (1 << 31) - 1 - 65535) +
                      h2raw.settings(ack=True))
        except OSError:
            pass
        self.conns.append(c)

    def closed_by_peer(self, i: int) -> bool:
        """Whether weir closed connection i (its unread bytes are drained to find out)."""
        c = self.conns[i]
        c.settimeout(0.2)
        try:
            while True:
                if not c.recv(1 << 20):
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def stop(self) -> None:
        super().stop()
        for c in self.conns:
            c.close()


class UpstreamH2Test(wt.WeirTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        for tool in ("nghttpd", "nghttp", "h2load", "curl", "openssl"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest(f"{tool} is not installed")
        cls.dir = tempfile.mkdtemp(prefix="weir-up-h2-")
        cls.pki = Pki(cls.dir)
        cls.docroot = os.path.join(cls.dir, "www")
        os.mkdir(cls.docroot)
        with open(os.path.join(cls.docroot, "hello.txt"), "w") as f:
            f.write("hello from nghttpd\n")
        cls.big = os.urandom(3 * MIB + 12345)
        with open(os.path.join(cls.docroot, "big.bin"), "wb") as f:
            f.write(cls.big)

    @classmethod
    def tearDownClass(cls) -> None:
        shutil.rmtree(cls.dir, ignore_errors=True)

    def nghttpd(self, tls: bool = False, port: int | None = None, extra=()) -> Nghttpd:
        n = Nghttpd(self.docroot, port or wt.free_port(), self.pki if tls else None, extra)
        self.addCleanup(n.stop)
        return n

    def start(self, target: str, protocol: str = "h2", tls: bool = False, workers: int = 1,
              upstream_extra: str = "") -> wt.Weir:
        tls_line = f"tls = {{ ca-file = {wt.toml_str(self.pki.ca)} }}\n" if tls else ""
        text = f"""
[system]
workers = {workers}
[log]
format = "json"
access-log = true
[upstreams.app]
discovery = {{ use = "static", targets = ["{target}"] }}
lb = {{ use = "round-robin" }}
protocol = "{protocol}"
{tls_line}{upstream_extra}
[services.web]
listeners = [{{ address = "127.0.0.1:{wt.free_port()}", h2c = true }}]
upstream = "app"
"""
        self.w = self.start_weir(text)
        self.addr = self.w.addr("web")
        return self.w

    # -- protocols ----------------------------------------------------------------------------
    def test_h2c_upstream(self):
        o = self.nghttpd()
        self.start(o.address)
        r = wt.curl("--http1.1", wt.url(self.addr, "/hello.txt"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello from nghttpd\n")
        r = wt.curl("--http2-prior-knowledge", wt.url(self.addr, "/missing"))
        self.assertEqual(r.status, 404, r)
        logs = self.w.wait_access_logs(2)
        self.assertEqual([a["upstream"] for a in logs], [o.address, o.address])

    def test_head_before_a_slow_h2_body(self):
        # client (HTTP/1.1) -> weir (upstream protocol "h2") -> a second weir (h2c listener) ->
        # an origin that sends its head, then its body a second later. The first weir holds a
        # response head back to send it with the first body bytes, but must not wait for a slow
        # body to send it.
        o = wt.ScriptedOrigin(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n", 1.0, b"hello", 0.5)
        self.addCleanup(o.stop)
        middle = self.start_weir(f"""
[upstreams.slow]
discovery = {{ use = "static", targets = ["{o.address}"] }}
lb = {{ use = "round-robin" }}
[services.mid]
listeners = [{{ address = "127.0.0.1:{wt.free_port()}", h2c = true }}]
upstream = "slow"
""")
        self.start(wt.addr_str(middle.addr("mid")))
        with wt.RawConn(self.addr) as c:
            t0 = time.monotonic()
            c.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            head = c.reader.read_until(b"\r\n\r\n", 1 << 16)
            t_head = time.monotonic() - t0
            self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
            self.assertLess(t_head, 0.7, f"the head came after {t_head:.2f}s: it waited for "
                                         "the body")
            self.assertEqual(c.reader.read_exact(5), b"hello")
            self.assertGreater(time.monotonic() - t0, 0.9)

    def test_h2_over_tls_with_verification(self):
        o = self.nghttpd(tls=True)
        self.start(o.address, tls=True)
        r = wt.curl("--http2-prior-knowledge", wt.url(self.addr, "/big.bin"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(self.big).hexdigest())
        # Quiet, the connection gives OpenSSL's record buffers back (the worker's sweep); the
        # next request takes new ones on the same connection.
        time.sleep(3)
        r = wt.curl("--http2-prior-knowledge", wt.url(self.addr, "/big.bin"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(self.big).hexdigest())
        self.assertEqual(established_to(o.port), 1)

    def h1_tls_origin(self) -> H1TlsOrigin:
        o = H1TlsOrigin(self.pki)
        self.addCleanup(o.stop)
        return o

    def test_h2_refused_when_alpn_does_not_agree(self):
        # A TLS origin that speaks only http/1.1: "h2" must not fall back silently.
        o = self.h1_tls_origin()
        self.start(o.address, tls=True)
        r = wt.curl("--http1.1", wt.url(self.addr, "/x"))
        self.assertEqual(r.status, 502, r)
        line = self.w.wait_for_line(lambda l: "did not agree to HTTP/2" in l, 5)
        self.assertIsNotNone(line, self.w.log_text(20))

    def test_auto_chooses_h2_or_http11_by_alpn(self):
        o = self.nghttpd(tls=True)
        self.start(o.address, protocol="auto", tls=True)
        r = wt.curl("--http1.1", wt.url(self.addr, "/hello.txt"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"hello from nghttpd\n")

        # The same config towards an http/1.1-only TLS origin.
        h1 = self.h1_tls_origin()
        self.start(h1.address, protocol="auto", tls=True)
        r = wt.curl("--http2-prior-knowledge", wt.url(self.addr, "/y"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.body, b"h1!")
        self.assertTrue(wt.wait_until(lambda: len(h1.seen) >= 2, 5), h1.seen)
        self.assertEqual(h1.seen[:2], ["http/1.1", "GET /y HTTP/1.1"])
        # Later requests find the HTTP/1.1 connection in the pool and go on it: no new handshake.
        for path in ("/z1", "/z2"):
            r = wt.curl("--http2-prior-knowledge", wt.url(self.addr, path))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.body, b"h1!")
        self.assertTrue(wt.wait_until(lambda: len(h1.seen) >= 4, 5), h1.seen)
        self.assertEqual(h1.seen, ["http/1.1", "GET /y HTTP/1.1", "GET /z1 HTTP/1.1",
                                   "GET /z2 HTTP/1.1"])

    # -- bodies and trailers --------------------------------------------------------------------
    def test_request_bodies_stream_both_ways(self):
        o = self.nghttpd()
        self.start(o.address)
        body = os.urandom(5 * MIB + 7)
        with tempfile.NamedTemporaryFile(dir=self.dir) as f:
            f.write(body)
            f.flush()
            for args in (["--http2-prior-knowledge"], ["--http1.1"],
                         ["--http1.1", "-H", "Transfer-Encoding: chunked"]):
                r = wt.curl(*args, "-X", "POST", "--data-binary", f"@{f.name}",
                            wt.url(self.addr, "/hello.txt"), timeout=60)
                self.assertEqual(r.status, 200, (args, r.status, r.stderr))
                self.assertEqual(len(r.body), len(body), args)
                self.assertEqual(hashlib.sha256(r.body).digest(), hashlib.sha256(body).digest())

    def test_trailers_pass_h2_to_h2(self):
        o = self.nghttpd(extra=["--trailer", "grpc-status: 0", "--trailer", "grpc-message: fine"])
        self.start(o.address)
        p = subprocess.run(["nghttp", "-v", "-H", "te: trailers", wt.url(self.addr, "/hello.txt")],
                           capture_output=True, timeout=30)
        out = p.stdout.decode(errors="replace")
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        # The trailers arrive in a HEADERS frame after the DATA, ending the stream.
        data_at = out.find("recv DATA frame")
        self.assertGreater(data_at, 0, out)
        tail = out[data_at:]
        self.assertRegex(tail, r"recv HEADERS frame <[^>]*>\s*; END_STREAM", tail)
        self.assertIn("grpc-status: 0", tail)
        self.assertIn("grpc-message: fine", tail)

    # -- load and connection sharing -------------------------------------------------------------
    def test_h2load_multiplexed_over_few_connections(self):
        o = self.nghttpd()
        self.start(o.address, workers=2, upstream_extra="h2-max-concurrent-streams = 100\n")
        p = subprocess.run(["h2load", "-n", "20000", "-c", "10", "-m", "10",
                            wt.url(self.addr, "/hello.txt")], capture_output=True, timeout=240)
        out = p.stdout.decode()
        self.assertEqual(p.returncode, 0, out + p.stderr.decode())
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        self.assertIsNotNone(m, out)
        self.assertEqual(m.group(4), "20000", out)
        self.assertEqual((m.group(5), m.group(6)), ("0", "0"), out)
        self.assertIn("status codes: 20000 2xx", out)
        # 10 clients x 10 streams over two workers fit in one connection per worker, or a few
        # while the first ones were still connecting.
        conns = established_to(o.port)
        self.assertGreaterEqual(conns, 1)
        self.assertLessEqual(conns, 4, f"{conns} upstream connections")

    def test_stream_limit_opens_more_connections(self):
        o = self.nghttpd()
        self.start(o.address, upstream_extra="h2-max-concurrent-streams = 2\n")
        p = subprocess.run(["h2load", "-n", "400", "-c", "2", "-m", "8",
                            wt.url(self.addr, "/hello.txt")], capture_output=True, timeout=120)
        out = p.stdout.decode()
        self.assertIn("status codes: 400 2xx", out, out + p.stderr.decode())
        self.assertGreater(established_to(o.port), 1)

    def test_stalled_clients_do_not_stall_the_shared_connection(self):
        """Clients that stop reading hold their streams' windows, never the connection's: other
        requests on the same upstream connection still flow."""
        big = os.path.join(self.docroot, "huge.bin")
        with open(big, "wb") as f:
            f.write(os.urandom(12 * MIB))
        self.addCleanup(os.unlink, big)
        o = self.nghttpd()
        self.start(o.address)
        self.assertEqual(wt.curl(wt.url(self.addr, "/hello.txt")).status, 200)
        stalled = []
        for _ in range(48):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.settimeout(10)
            s.connect(self.addr)
            s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            stalled.append(s)
        self.addCleanup(lambda: [c.close() for c in stalled])
        time.sleep(1.5)  # let every stream fill its window
        self.assertEqual(established_to(o.port), 1, "expected one shared upstream connection")
        t0 = time.monotonic()
        r = wt.curl(wt.url(self.addr, "/big.bin"), timeout=20)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.body), len(self.big))
        self.assertLess(time.monotonic() - t0, 10, "the shared connection was stalled")

    # -- failures ------------------------------------------------------------------------------
    def test_upstream_goes_away_and_comes_back(self):
        port = wt.free_port()
        o = self.nghttpd(port=port)
        self.start(o.address)
        self.assertEqual(wt.curl(wt.url(self.addr, "/hello.txt")).status, 200)
        o.stop()
        r = wt.curl(wt.url(self.addr, "/hello.txt"))
        self.assertEqual(r.status, 502, r)
        o2 = self.nghttpd(port=port)
        ok = wt.wait_until(lambda: wt.curl(wt.url(self.addr, "/hello.txt")).status == 200, 10,
                           interval=0.2)
        self.assertTrue(ok, self.w.log_text(20))
        self.assertTrue(self.w.alive())
        del o2

    def test_upstream_that_stops_reading_fails_its_connection(self):
        """A peer that takes nothing more: weir's write to it gives up after response-timeout,
        the connection is closed with one log line, and later requests get a new connection
        instead of queueing behind the stuck one."""
        peer = StallingH2Peer()
        self.addCleanup(peer.stop)
        self.start(peer.address, upstream_extra='response-timeout = "1s"')
        body = os.path.join(self.dir, "upload.bin")
        with open(body, "wb") as f:
            f.write(os.urandom(16 * MIB))  # well above what loopback buffers take
        self.addCleanup(os.unlink, body)
        t0 = time.monotonic()
        r = wt.curl("--http1.1", "--data-binary", f"@{body}", wt.url(self.addr, "/upload"),
                    timeout=20)
        self.assertIn(r.status, (502, 504), r)
        self.assertLess(time.monotonic() - t0, 10)
        line = self.w.wait_for_line(
            lambda l: "took nothing of what was written for 1000ms" in l, 10)
        self.assertIsNotNone(line, self.w.log_text(20))
        self.assertIn(peer.address, line)
        self.assertTrue(wt.wait_until(lambda: peer.closed_by_peer(0), 5),
                        "the stuck upstream connection was not closed")
        # The next request opens a new connection (the peer answers nothing: a timeout).
        r = wt.curl("--http1.1", wt.url(self.addr, "/next"), timeout=20)
        self.assertEqual(r.status, 504, r)
        self.assertEqual(len(peer.conns), 2)
        self.assertTrue(self.w.alive())

    def test_upgrade_request_refused_on_h2_only_upstream(self):
        o = self.nghttpd()
        self.start(o.address)
        r = wt.curl("--http1.1", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket",
                    "-H", "Sec-WebSocket-Version: 13", "-H", "Sec-WebSocket-Key: dGhlIHNhbXBsZQ==",
                    wt.url(self.addr, "/ws"))
        self.assertEqual(r.status, 502, r)
        self.assertIsNotNone(self.w.wait_for_line(lambda l: "speaks HTTP/2 only" in l, 5))


if __name__ == "__main__":
    unittest.main()
