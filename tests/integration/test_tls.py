"""Downstream TLS: SNI picks the certificate, protocol versions are enforced, sessions resume, and
certificates are replaced at run time (SIGHUP) without dropping an open connection.

Real peers: curl, openssl s_client, and Python's ssl module (OpenSSL underneath) to read the
certificate each name gets. Certificates are made with the openssl command for each test run.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import unittest

import h2raw
import weirtest as wt


def openssl(*args: str, stdin: bytes | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=timeout)


class Pki:
    """A throw-away CA and leaf certificates (ECDSA P-256) signed by it."""

    def __init__(self, d: str):
        self.d = d
        self.ca_key = os.path.join(d, "ca.key")
        self.ca = os.path.join(d, "ca.pem")
        p = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                    "-subj", "/CN=weir test CA")
        assert p.returncode == 0, p.stderr.decode()

    def leaf(self, name: str, cn: str, sans: list[str], org: str = "weir") -> tuple[str, str]:
        key = os.path.join(self.d, f"{name}.key")
        csr = os.path.join(self.d, f"{name}.csr")
        crt = os.path.join(self.d, f"{name}.pem")
        san = ",".join(f"DNS:{s}" for s in sans)
        p = openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", f"/O={org}/CN={cn}",
                    "-addext", f"subjectAltName={san}")
        assert p.returncode == 0, p.stderr.decode()
        p = openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                    "-CAcreateserial", "-days", "2", "-out", crt, "-copy_extensions", "copy")
        assert p.returncode == 0, p.stderr.decode()
        return crt, key


def peer_cert(addr: tuple[str, int], server_name: str | None, cafile: str) -> dict:
    """Handshake with SNI `server_name` (None: no SNI) and return the certificate weir sent."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    with socket.create_connection(addr, timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return s.getpeercert()


def read_response(s) -> bytes:
    """One whole HTTP/1.1 response (Content-Length framed) from a socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)content-length:\s*(\d+)", head)
    need = int(m.group(1)) if m else 0
    while len(body) < need:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed in the body")
        body += chunk
    return head + b"\r\n\r\n" + body


def subject_of(cert: dict) -> dict:
    return {k: v for rdn in cert["subject"] for (k, v) in rdn}


class SplitRecordClient:
    """A TLS client over ssl.MemoryBIO, so that the record of a request can leave in two parts.
    HTTP/1.1, or HTTP/2 with frames written by hand (h2raw; the response's header block is not
    decoded: :status 200 is the static table's entry 8)."""

    def __init__(self, addr: tuple[str, int], alpn: str, cafile: str):
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols([alpn])
        self.sock = socket.create_connection(addr, timeout=10)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="a.test")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.flush()
                self.fill()
        self.flush()
        self.alpn = self.tls.selected_alpn_protocol()
        self.plain = bytearray()
        self.stream_id = -1
        if self.alpn == "h2":
            self.tls.write(h2raw.PREFACE + h2raw.settings())
            self.flush()

    def flush(self, split: int | float | None = None) -> None:
        """Sends what TLS wrote. `split`: that many bytes of it first (a fraction: that part),
        then the rest 0.2 s later, once the connection has been quiet."""
        data = self.outgoing.read()
        if split is not None:
            cut = split if isinstance(split, int) else int(len(data) * split)
            self.sock.sendall(data[:cut])
            time.sleep(0.2)
            data = data[cut:]
        self.sock.sendall(data)

    def fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise AssertionError("weir closed the connection")
        self.incoming.write(chunk)

    def more(self) -> None:
        """Appends the next decrypted bytes to self.plain."""
        while True:
            try:
                self.plain += self.tls.read(65536)
                self.flush()  # (a read may have something to send)
                return
            except ssl.SSLWantReadError:
                self.fill()

    def get(self, path: str, split: int | float | None = None) -> tuple[int, bytes]:
        if self.alpn == "h2":
            return self.get_h2(path, split)
        self.tls.write(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n".encode())
        self.flush(split)
        while b"\r\n\r\n" not in self.plain:
            self.more()
        head, _, rest = bytes(self.plain).partition(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        while len(rest) < length:
            self.more()
            rest = bytes(self.plain).partition(b"\r\n\r\n")[2]
        self.plain = bytearray(rest[length:])
        return int(head.split(b" ", 2)[1]), rest[:length]

    def get_h2(self, path: str, split: int | float | None) -> tuple[int, bytes]:
        self.stream_id += 2
        sid = self.stream_id
        block = h2raw.request_block("GET", path, "a.test", scheme="https")
        self.tls.write(h2raw.headers(sid, block, end_stream=True))
        self.flush(split)
        status, body = 0, b""
        while True:
            f = h2raw.pop_frame(self.plain)
            if f is None:
                self.more()
                continue
            if f.type == h2raw.SETTINGS and not f.flags & h2raw.ACK:
                self.tls.write(h2raw.settings(ack=True))
                self.flush()
            elif f.stream_id == sid and f.type == h2raw.HEADERS:
                status = 200 if f.payload[:1] == b"\x88" else -1
            elif f.stream_id == sid and f.type == h2raw.DATA:
                body += f.payload
                if f.end_stream:
                    return status, body
            elif f.type in (h2raw.RST_STREAM, h2raw.GOAWAY):
                raise AssertionError(f"{f} from weir")

    def close(self) -> None:
        self.sock.close()


class TlsTest(wt.WeirTestCase):
    def setUp(self):
        super().setUp()
        self.pki = Pki(self.tmp)
        self.a = self.pki.leaf("a", "a.test", ["a.test"])
        self.b = self.pki.leaf("b", "*.b.test", ["*.b.test"])
        self.x = self.pki.leaf("x", "x.b.test", ["x.b.test"])  # an exact name beats the wildcard
        self.origin_ = self.origin("o", wt.echo())

    def config(self, tls_extra: str = "", certs=None) -> str:
        certs = certs or [self.a, self.b, self.x]
        entries = ", ".join(f"{{ cert = {wt.toml_str(c)}, key = {wt.toml_str(k)} }}"
                            for c, k in certs)
        extra = (", " + tls_extra) if tls_extra else ""
        return f"""
[system]
workers = 2
[log]
format = "json"
[upstreams.app]
discovery = {{ use = "static", targets = ["{wt.addr_str(self.origin_.addr)}"] }}
[services.web]
listeners = [{{ address = "127.0.0.1:0", tls = {{ certificates = [{entries}]{extra} }} }}]
upstream = "app"
"""

    def test_sni_chooses_the_certificate(self):
        w = self.start_weir(self.config())
        addr = w.addr()
        cases = {
            "a.test": "a.test",
            "A.TEST": "a.test",
            "y.b.test": "*.b.test",   # wildcard, one label
            "x.b.test": "x.b.test",   # exact beats wildcard
            "z.y.b.test": "a.test",   # a wildcard covers one label only: default
            "unknown.test": "a.test",  # unknown name: the first certificate
            None: "a.test",            # no SNI: the first certificate
        }
        for name, cn in cases.items():
            with self.subTest(name=name):
                self.assertEqual(subject_of(peer_cert(addr, name, self.pki.ca))["commonName"], cn)

    def test_body_bytes_are_not_held_while_the_upstream_pauses(self):
        # Over TLS weir gathers a long body's records with TCP_CORK, which the kernel would hold
        # for up to 200 ms if weir did not lift it before waiting for the upstream. The origin
        # sends 20 KiB, pauses a second, then the rest: the 20 KiB must come at once, the rest
        # right after the pause (a slow run may miss once; a held piece misses every time).
        first = bytes(range(256)) * 80
        rest = b"z" * 1000
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        ctx.check_hostname = False
        def once() -> tuple[float, float]:
            o = wt.ScriptedOrigin(f"HTTP/1.1 200 OK\r\ncontent-length: {len(first) + len(rest)}"
                                  "\r\n\r\n".encode() + first, 1.0, rest)
            self.addCleanup(o.stop)
            config = self.config().replace(wt.addr_str(self.origin_.addr), o.address)
            w = self.start_weir(config)
            with socket.create_connection(w.addr(), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                    t0 = time.monotonic()
                    s.sendall(b"GET /pause HTTP/1.1\r\nHost: a.test\r\n\r\n")
                    data = b""
                    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < len(first):
                        chunk = s.recv(65536)
                        self.assertTrue(chunk, "connection closed early")
                        data += chunk
                    t_first = time.monotonic() - t0
                    head, _, body = data.partition(b"\r\n\r\n")
                    while len(body) < len(first) + len(rest):
                        chunk = s.recv(65536)
                        self.assertTrue(chunk, "connection closed in the body")
                        body += chunk
                    t_rest = time.monotonic() - t0 - 1.0
                    self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
                    self.assertEqual(body, first + rest)
            w.stop()
            return t_first, t_rest

        self.assertBodyNotHeld(once, len(first))

    def test_bodies_and_slow_readers_over_tls(self):
        """Large bodies both ways over HTTP/1.1 and TLS; a client that stops reading for a while
        (weir's socket fills up and the rest leaves once the client reads again); a client that
        closes in the middle of a response without close_notify; two requests in one write."""
        big = 16 << 20
        o = self.origin("big", wt.echo(), paths={"/down": wt.stream(big, chunked=False)})
        w = self.start_weir(self.config().replace(wt.addr_str(self.origin_.addr), o.address))
        host, port = w.addr()
        common = ["--http1.1", "--cacert", self.pki.ca, "--resolve", f"a.test:{port}:{host}"]
        url = f"https://a.test:{port}"

        p = wt.curl_raw(*common, "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        f"{url}/down", timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout.decode().split(), ["200", str(big)])

        upload = os.urandom(8 << 20)
        path = os.path.join(self.tmp, "up.bin")
        with open(path, "wb") as f:
            f.write(upload)
        r = wt.curl(*common, "-T", path, "-H", "Expect:", f"{url}/up", timeout=60)
        self.assertStatus(r, 200, "8 MiB upload over TLS")
        rec = o.last()
        self.assertTrue(rec.body_complete)
        self.assertEqual(rec.body_len, len(upload))
        self.assertEqual(rec.body, upload[:len(rec.body)])  # (the origin keeps the first MiB)

        ctx = ssl.create_default_context(cafile=self.pki.ca)
        ctx.check_hostname = False
        get = b"GET /down HTTP/1.1\r\nHost: a.test\r\n\r\n"
        with socket.create_connection((host, port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                s.sendall(get)
                time.sleep(2.0)  # weir fills the socket and waits for it
                self.assertEqual(len(read_response(s).partition(b"\r\n\r\n")[2]), big)

        with socket.create_connection((host, port), timeout=30) as raw:
            s = ctx.wrap_socket(raw, server_hostname="a.test")
            s.sendall(get)
            got = 0
            while got < 256 * 1024:
                got += len(s.recv(65536))
            raw.close()  # no close_notify, 15+ MiB unread

        with socket.create_connection((host, port), timeout=30) as raw:
            with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                hello = b"GET /hello HTTP/1.1\r\nHost: a.test\r\n\r\n"
                s.sendall(hello + hello)
                for _ in range(2):
                    self.assertTrue(read_response(s).startswith(b"HTTP/1.1 200 "))
        self.assertTrue(w.alive())

    def test_handshake_flight_larger_than_a_write_block(self):
        """A certificate of about 88 KB (3,500 names): the server's handshake flight is more than
        the 64 KiB block weir gathers OpenSSL's output in, so the block is sent and refilled
        within one handshake step."""
        names = ["a.test"] + [f"host-{i:05d}.example.test" for i in range(3500)]
        big = self.pki.leaf("big", "a.test", names)
        w = self.start_weir(self.config(certs=[big]))
        host, port = w.addr()
        for version in ("1.3", "1.2"):
            with self.subTest(version=version):
                r = wt.curl("--http1.1", "--tls-max", version, "--cacert", self.pki.ca,
                            "--resolve", f"a.test:{port}:{host}", f"https://a.test:{port}/hello")
                self.assertEqual(r.status, 200, r)
        self.assertTrue(w.alive())

    def test_curl_http11_over_tls_two_names(self):
        w = self.start_weir(self.config())
        host, port = w.addr()
        for name, cn in [("a.test", "a.test"), ("y.b.test", "*.b.test")]:
            with self.subTest(name=name):
                r = wt.curl("--http1.1", "--cacert", self.pki.ca, "--resolve",
                            f"{name}:{port}:{host}", "-v", f"https://{name}:{port}/hello")
                self.assertEqual(r.status, 200, r)
                self.assertRegex(r.stderr, rf"subject: O ?= ?weir; CN ?= ?{re.escape(cn)}")
                self.assertIn("ALPN: server accepted http/1.1", r.stderr)
                seen = self.origin_.last()
                self.assertEqual(seen.header("x-forwarded-proto"), "https")
                self.assertEqual(seen.header("x-forwarded-host"), f"{name}:{port}")

    def test_tls11_refused_and_versions_enforced(self):
        w = self.start_weir(self.config())
        host, port = w.addr()
        p = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test", "-tls1_1",
                    "-cipher", "DEFAULT@SECLEVEL=0", stdin=b"")
        out = p.stdout.decode() + p.stderr.decode()
        self.assertNotEqual(p.returncode, 0, out)
        self.assertIn("Cipher is (NONE)", out)  # no session was established
        self.assertIn("alert protocol version", out)
        ok = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test", "-tls1_2",
                     stdin=b"")
        self.assertEqual(ok.returncode, 0, ok.stderr.decode())
        self.assertIn("TLSv1.2", ok.stdout.decode())

    def test_tls13_only_listener_refuses_tls12(self):
        w = self.start_weir(self.config('min-version = "1.3"'))
        host, port = w.addr()
        p = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test", "-tls1_2",
                    stdin=b"")
        self.assertNotEqual(p.returncode, 0)
        ok = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test", "-tls1_3",
                     stdin=b"")
        self.assertEqual(ok.returncode, 0, ok.stderr.decode())

    def test_quiet_connections_give_buffers_back_and_keep_working(self):
        """A TLS connection that makes no call into OpenSSL for a few dozen milliseconds has it
        give its record buffers back (a busy one keeps them). Over HTTP/1.1 and HTTP/2, requests
        come after such pauses, and some as a record cut in two with a pause in the middle: after
        its header only (CVE-2024-4741's case), or halfway. OpenSSL is inside a record then, so
        the buffers stay (the sweep says "kept"), and the request is answered whole."""
        w = self.start_weir(self.config().replace('format = "json"',
                                                  'format = "json"\nlevel = "trace"'))
        for alpn in ("http/1.1", "h2"):
            with self.subTest(alpn=alpn):
                client = SplitRecordClient(w.addr(), alpn, self.pki.ca)
                try:
                    self.assertEqual(client.alpn, alpn)
                    for i, split in enumerate((None, 5, None, 0.5, None)):
                        time.sleep(0.3)  # quiet: the buffers go back
                        status, body = client.get(f"/quiet/{i}", split)
                        self.assertEqual(status, 200, f"request {i} (record split: {split})")
                        self.assertEqual(json.loads(body)["target"], f"/quiet/{i}")
                finally:
                    client.close()
        released = kept = 0
        for line in w.text_lines():
            m = re.search(r"record buffers of (\d+) quiet connections released, (\d+) kept", line)
            if m:
                released += int(m.group(1))
                kept += int(m.group(2))
        # Each of the 2 x 5 pauses before a request ends in a release (a little slack for a slow
        # machine's late sweep); the pause inside each of the four split records in "kept" (once:
        # the answer changes only with a call into OpenSSL).
        self.assertGreaterEqual(released, 8, w.log_text(40))
        self.assertGreaterEqual(kept, 4, w.log_text(40))

    def test_session_resumption(self):
        w = self.start_weir(self.config())
        host, port = w.addr()
        for version in ["-tls1_2", "-tls1_3"]:
            with self.subTest(version=version):
                sess = os.path.join(self.tmp, f"sess{version}")
                # Send a request so that TLS 1.3 tickets (sent after the handshake) are read.
                req = f"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n".encode()
                first = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test",
                                version, "-sess_out", sess, "-ign_eof", stdin=req)
                self.assertEqual(first.returncode, 0, first.stderr.decode())
                self.assertIn("New,", first.stdout.decode())
                second = openssl("s_client", "-connect", f"{host}:{port}", "-servername",
                                 "a.test", version, "-sess_in", sess, "-ign_eof", stdin=req)
                self.assertEqual(second.returncode, 0, second.stderr.decode())
                self.assertIn("Reused,", second.stdout.decode())

    def test_session_cache_without_tickets(self):
        """With session-tickets = false, resumption uses the worker's session cache: a session id
        (TLS 1.2) or a stateful ticket (TLS 1.3). One worker, so the second connection meets the
        cache that holds the session."""
        w = self.start_weir(self.config("session-tickets = false").replace("workers = 2",
                                                                          "workers = 1"))
        host, port = w.addr()
        req = b"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
        for version in ["-tls1_2", "-tls1_3"]:
            with self.subTest(version=version):
                sess = os.path.join(self.tmp, f"cache{version}")
                first = openssl("s_client", "-connect", f"{host}:{port}", "-servername", "a.test",
                                version, "-sess_out", sess, "-ign_eof", stdin=req)
                self.assertEqual(first.returncode, 0, first.stderr.decode())
                self.assertIn("New,", first.stdout.decode())
                if version == "-tls1_2":
                    # No ticket: the session id is what resumes.
                    self.assertNotIn("TLS session ticket:", first.stdout.decode())
                second = openssl("s_client", "-connect", f"{host}:{port}", "-servername",
                                 "a.test", version, "-sess_in", sess, "-ign_eof", stdin=req)
                self.assertEqual(second.returncode, 0, second.stderr.decode())
                self.assertIn("Reused,", second.stdout.decode())

    def test_certificate_replaced_at_run_time(self):
        w = self.start_weir(self.config())
        addr = w.addr()
        self.assertEqual(subject_of(peer_cert(addr, "a.test", self.pki.ca))["organizationName"],
                         "weir")
        # An open TLS connection from before the change.
        ctx = ssl.create_default_context(cafile=self.pki.ca)
        ctx.check_hostname = False
        raw = socket.create_connection(addr, timeout=10)
        old = ctx.wrap_socket(raw, server_hostname="a.test")
        self.addCleanup(old.close)
        old.sendall(b"GET /before HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertIn(b"200 OK", read_response(old))

        # Renew a.test in place (new key and certificate at the same paths), then SIGHUP.
        crt, key = self.a
        new_crt, new_key = self.pki.leaf("a2", "a.test", ["a.test"], org="weir renewed")
        os.replace(new_crt, crt)
        os.replace(new_key, key)
        mark = len(w.lines)
        w.send_signal(signal.SIGHUP)
        self.assertIsNotNone(w.wait_for_line(lambda l: "reloaded" in l, 10, start_index=mark),
                             w.log_text(20))
        self.assertEqual(subject_of(peer_cert(addr, "a.test", self.pki.ca))["organizationName"],
                         "weir renewed")
        # The connection from before keeps working, with its old session.
        old.sendall(b"GET /after HTTP/1.1\r\nHost: a.test\r\n\r\n")
        self.assertIn(b"200 OK", read_response(old))

        # A broken file keeps the current certificates and logs why.
        with open(crt, "w") as f:
            f.write("not a certificate\n")
        mark = len(w.lines)
        w.send_signal(signal.SIGHUP)
        line = w.wait_for_line(lambda l: "certificate reload failed" in l, 10, start_index=mark)
        self.assertIsNotNone(line, w.log_text(20))
        self.assertIn(crt, line)
        self.assertEqual(subject_of(peer_cert(addr, "a.test", self.pki.ca))["organizationName"],
                         "weir renewed")

    def test_check_reports_certificate_problems(self):
        missing = os.path.join(self.tmp, "missing.pem")
        text = self.config(certs=[self.a, (missing, self.a[1]), (self.a[0], self.b[1])])
        path = os.path.join(self.tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(text)
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 2, lines)
        self.assertRegex(lines[0], re.escape(path) + r":\d+:\d+: services\.web\.listeners\[0\]"
                         r"\.tls\.certificates\[1\]: cannot load certificate")
        self.assertIn(missing, lines[0])
        self.assertRegex(lines[1], r"certificates\[2\]: private key .* does not match certificate")


if __name__ == "__main__":
    unittest.main()
