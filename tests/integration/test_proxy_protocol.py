#!/usr/bin/env python3
"""PROXY protocol (docs/configuration.md, "Client address" and upstream proxy-protocol).

Inbound: a listener with proxy-protocol-from requires a v1 or v2 header from the listed peers and
takes the client address from it (access log, X-Forwarded-For); it refuses a header from any other
peer but serves that peer's plain requests; a listed peer that sends no header (or a broken one) is
closed. Also on a TLS listener (the header comes before the TLS handshake).

Outbound: an upstream with proxy-protocol = "v1" or "v2" starts each connection with a header; a
raw-socket origin here parses it and checks source = the client's real address and port, and
destination = the weir listener address the client connected to.

Every peer is a raw socket (or Python's ssl module, or curl) on 127.0.0.1 / ::1.
"""

import ipaddress
import json
import os
import select
import socket
import ssl
import struct
import threading
import time
import unittest

import tlsutil
import weirtest as wt

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


# -- building headers (client side) ---------------------------------------------------------------
def v1(src: str, dst: str, sport: int, dport: int) -> bytes:
    fam = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {fam} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str, dst: str, sport: int, dport: int, tlvs: bytes = b"", local: bool = False) -> bytes:
    if local:
        return V2_SIG + bytes([0x20, 0x00]) + struct.pack("!H", len(tlvs)) + tlvs
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = 0x11 if a.version == 4 else 0x21
    block = a.packed + b.packed + struct.pack("!HH", sport, dport)
    return V2_SIG + bytes([0x21, fam]) + struct.pack("!H", len(block) + len(tlvs)) + block + tlvs


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


# -- parsing headers (origin side) ----------------------------------------------------------------
def read_proxy_header(sock: socket.socket) -> tuple[dict, bytes]:
    """Reads a v1 or v2 header from sock; returns (description, bytes read past it)."""
    buf = b""
    while len(buf) < 16:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError(f"closed before a PROXY header: {buf!r}")
        buf += data
        if buf.startswith(b"PROXY ") and b"\r\n" in buf:
            break
    if buf.startswith(b"PROXY "):
        while b"\r\n" not in buf:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed in a v1 header")
            buf += data
        line, _, rest = buf.partition(b"\r\n")
        f = line.decode().split(" ")
        if f[1] == "UNKNOWN":
            return {"version": 1, "command": "UNKNOWN", "raw": line.decode()}, rest
        return ({"version": 1, "command": f[1], "src": f[2], "dst": f[3], "sport": int(f[4]),
                 "dport": int(f[5]), "raw": line.decode()}, rest)
    if not buf.startswith(V2_SIG):
        raise ValueError(f"not a PROXY header: {buf[:40]!r}")
    length = struct.unpack("!H", buf[14:16])[0]
    while len(buf) < 16 + length:
        data = sock.recv(4096)
        if not data:
            raise ConnectionError("closed in a v2 header")
        buf += data
    ver_cmd, fam = buf[12], buf[13]
    body, rest = buf[16:16 + length], buf[16 + length:]
    d = {"version": ver_cmd >> 4, "command": "PROXY" if ver_cmd & 0xF == 1 else "LOCAL",
         "family": fam, "length": length}
    if d["command"] == "PROXY" and fam in (0x11, 0x21):
        n = 4 if fam == 0x11 else 16
        d["src"] = str(ipaddress.ip_address(body[:n]))
        d["dst"] = str(ipaddress.ip_address(body[n:2 * n]))
        d["sport"], d["dport"] = struct.unpack("!HH", body[2 * n:2 * n + 4])
    return d, rest


class PPOrigin:
    """A raw-socket HTTP/1.1 origin whose connections must start with a PROXY header. Each
    response is a JSON description of the header and the request."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conns: list[dict] = []  # {"header": {...} | None, "error": str | None, "requests": [...]}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = "%s:%d" % self.sock.getsockname()
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [dict(c) for c in self.conns]

    def _accept(self) -> None:
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            rec = {"header": None, "error": None, "requests": []}
            with self.lock:
                self.conns.append(rec)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, c: socket.socket, rec: dict) -> None:
        c.settimeout(10)
        try:
            rec["header"], buf = read_proxy_header(c)
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    data = c.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                first, headers = wt.parse_head(head)
                rec["requests"].append({"line": first, "headers": headers})
                body = json.dumps({"header": rec["header"], "line": first,
                                   "xff": wt.hget(headers, "x-forwarded-for")}).encode()
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                          b"content-length: %d\r\n\r\n" % len(body) + body)
        except (OSError, ValueError) as e:
            if not self._stop.is_set():
                rec["error"] = f"{type(e).__name__}: {e}"
        finally:
            c.close()

    def stop(self) -> None:
        self._stop.set()
        self.sock.close()
        for t in self._threads:
            t.join(timeout=2)


def client_of(access: dict) -> tuple[str, int]:
    host, _, port = access["client"].rpartition(":")
    return host.strip("[]"), int(port)


class ProxyProtocolTestBase(wt.WeirTestCase):
    def config(self, upstream_addr: str, *, listener: str = '{ address = "127.0.0.1:0" }',
               upstream_extra: str = "", limits: str = "") -> str:
        return f"""
[system]
workers = 1
shutdown-grace = "2s"
[log]
format = "json"
level = "info"
[upstreams.app]
discovery = {{ use = "static", targets = ["{upstream_addr}"] }}
{upstream_extra}
[services.web]
listeners = [{listener}]
upstream = "app"
{limits}
"""

    def access_for(self, w: wt.Weir, path: str, timeout: float = 5) -> dict:
        ok = wt.wait_until(lambda: any(a.get("path") == path for a in w.access_logs()), timeout)
        self.assertTrue(ok, f"no access-log line for {path}\n{w.log_text(30)}")
        return [a for a in w.access_logs() if a.get("path") == path][-1]

    def get_on(self, c: wt.RawConn, path: str, extra: str = "") -> wt.Response:
        c.send(f"GET {path} HTTP/1.1\r\nHost: pp.test\r\n{extra}\r\n")
        return c.read_final_response()[0]


class InboundTest(ProxyProtocolTestBase):

    def setUp(self):
        super().setUp()
        self.o = self.origin("o", wt.echo())

    def trusted(self, extra_listener: str = "", limits: str = "") -> wt.Weir:
        listener = ('{ address = "127.0.0.1:0", proxy-protocol-from = ["127.0.0.1/32"]'
                    + extra_listener + " }")
        return self.start_weir(self.config(self.o.address, listener=listener, limits=limits))

    def test_v1_header_sets_the_client_address(self):
        w = self.trusted()
        self.assertTrue(any("with PROXY protocol" in l for l in w.text_lines()), w.log_text(10))
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(v1("203.0.113.7", "192.0.2.10", 51234, 8080))
            r = self.get_on(c, "/v1")
            self.assertStatus(r, 200, "request after a v1 header")
            self.assertEqual(self.o.last().header("x-forwarded-for"), "203.0.113.7")
            # The address holds for every request of the connection (keep-alive).
            r = self.get_on(c, "/v1-again", "X-Forwarded-For: 10.9.8.7\r\n")
            self.assertStatus(r, 200, "second request on the connection")
            self.assertEqual(self.o.last().header("x-forwarded-for"), "10.9.8.7, 203.0.113.7")
        self.assertEqual(client_of(self.access_for(w, "/v1")), ("203.0.113.7", 51234))
        self.assertEqual(client_of(self.access_for(w, "/v1-again")), ("203.0.113.7", 51234))

    def test_v2_header_sets_the_client_address(self):
        w = self.trusted()
        cases = [
            ("/v2-tcp4", v2("203.0.113.7", "192.0.2.10", 40000, 443), ("203.0.113.7", 40000)),
            # TLVs after the addresses (here PP2_TYPE_AUTHORITY and PP2_TYPE_NOOP) are skipped.
            ("/v2-tlv", v2("203.0.113.8", "192.0.2.10", 40001, 443,
                           tlvs=tlv(0x02, b"pp.test") + tlv(0x04, b"\0" * 8)),
             ("203.0.113.8", 40001)),
            ("/v2-tcp6", v2("2001:db8::7", "2001:db8::1", 40002, 443), ("2001:db8::7", 40002)),
        ]
        for path, header, expected in cases:
            with self.subTest(path=path):
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(header)
                    self.assertStatus(self.get_on(c, path), 200, path)
                self.assertEqual(self.o.last().path, path)
                self.assertEqual(self.o.last().header("x-forwarded-for"), expected[0])
                self.assertEqual(client_of(self.access_for(w, path)), expected)
        # LOCAL (a health check from the load balancer itself): the real peer stays the client.
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(v2("0.0.0.0", "0.0.0.0", 0, 0, local=True))
            self.assertStatus(self.get_on(c, "/v2-local"), 200, "v2 LOCAL")
            mine = c.sock.getsockname()
        self.assertEqual(self.o.last().header("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(client_of(self.access_for(w, "/v2-local")), ("127.0.0.1", mine[1]))

    def test_addresses_survive_parking(self):
        # A keep-alive connection quiet for longer than weir's park delay (100 ms) is reduced to
        # its descriptor and a small record; the client address the PROXY header gave (IPv4 or
        # IPv6, with its port) must come back with it for the next request.
        w = self.trusted()
        cases = [("v4", v1("203.0.113.21", "192.0.2.10", 40021, 8080), ("203.0.113.21", 40021)),
                 ("v6", v2("2001:db8::21", "2001:db8::1", 40022, 443), ("2001:db8::21", 40022))]
        for name, header, expected in cases:
            with self.subTest(family=name):
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(header)
                    self.assertStatus(self.get_on(c, f"/park-{name}-1"), 200, "before parking")
                    time.sleep(0.6)
                    self.assertStatus(self.get_on(c, f"/park-{name}-2"), 200, "after parking")
                    self.assertEqual(self.o.last().header("x-forwarded-for"), expected[0])
                for i in (1, 2):
                    self.assertEqual(client_of(self.access_for(w, f"/park-{name}-{i}")), expected)

    def test_header_arriving_in_pieces(self):
        w = self.trusted()
        header = v1("203.0.113.9", "192.0.2.10", 5555, 80)
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(header[:9])
            time.sleep(0.2)
            c.send(header[9:20])
            time.sleep(0.2)
            c.send(header[20:] + b"GET /pieces HTTP/1.1\r\nHost: pp.test\r\n\r\n")
            self.assertStatus(c.read_final_response()[0], 200, "header in three segments")
        self.assertEqual(client_of(self.access_for(w, "/pieces")), ("203.0.113.9", 5555))

    def test_trusted_peer_without_a_header_is_closed(self):
        w = self.trusted(limits='[services.web.limits]\nheader-timeout = "1s"\n')
        cases = [
            ("plain request", b"GET /no-header HTTP/1.1\r\nHost: pp.test\r\n\r\n",
             "bad PROXY protocol header: not a PROXY protocol header"),
            ("broken v1 header", b"PROXY TCP4 203.0.113.999 192.0.2.1 1 2\r\nGET /broken HTTP/1.1\r\n\r\n",
             "bad PROXY protocol header: PROXY v1: invalid source IPv4 address"),
            ("v2 with a bad version", V2_SIG + bytes([0x31, 0x11, 0, 12]) + bytes(12),
             "bad PROXY protocol header: PROXY v2: unsupported version 3"),
        ]
        for what, data, log in cases:
            with self.subTest(case=what):
                mark = len(w.lines)
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(data)
                    self.assertTrue(c.peer_closed(3), f"{what}: the connection stayed open")
                    port = c.sock.getsockname()[1]
                line = w.wait_for_line(lambda l: log in l, 3, start_index=mark)
                self.assertIsNotNone(line, f"{what}: no log line {log!r}\n{w.log_text(10)}")
                self.assertIn(f"127.0.0.1:{port}", line)
        # A silent trusted peer is closed after header-timeout.
        mark = len(w.lines)
        with wt.RawConn(w.addr(), timeout=10) as c:
            t0 = time.monotonic()
            self.assertTrue(c.peer_closed(5), "a silent peer was not closed")
            self.assertLess(time.monotonic() - t0, 4.5)
        self.assertIsNotNone(w.wait_for_line(lambda l: "no PROXY protocol header in time" in l, 3,
                                             start_index=mark), w.log_text(10))
        # curl (no header) gets no answer at all.
        r = wt.curl(w.url("/curl"), timeout=10)
        self.assertEqual(r.status, 0, r)
        self.assertNotEqual(r.rc, 0, r)
        self.assertEqual(self.o.request_count, 0, [q.target for q in self.o.snapshot()])

    def test_untrusted_peer_header_refused_but_plain_requests_served(self):
        listener = '{ address = "127.0.0.1:0", proxy-protocol-from = ["10.0.0.0/8", "::1"] }'
        w = self.start_weir(self.config(self.o.address, listener=listener))
        for name, header in (("v1", v1("203.0.113.7", "192.0.2.10", 1234, 80)),
                             ("v2", v2("203.0.113.7", "192.0.2.10", 1234, 80))):
            with self.subTest(version=name):
                mark = len(w.lines)
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(header + b"GET /spoof HTTP/1.1\r\nHost: pp.test\r\n\r\n")
                    self.assertTrue(c.peer_closed(3), "a PROXY header from an untrusted peer "
                                                      "was accepted")
                    port = c.sock.getsockname()[1]
                line = w.wait_for_line(lambda l: "PROXY protocol header refused" in l, 3,
                                       start_index=mark)
                self.assertIsNotNone(line, w.log_text(10))
                self.assertIn(f"127.0.0.1:{port}", line)
                self.assertIn("not in proxy-protocol-from", line)
        self.assertEqual(self.o.request_count, 0)
        # A plain request from the same untrusted peer is an ordinary client.
        r = wt.curl("-H", "X-Forwarded-For: 203.0.113.7", w.url("/plain"))
        self.assertStatus(r, 200, "plain request from an untrusted peer")
        self.assertEqual(self.o.last().header("x-forwarded-for"), "203.0.113.7, 127.0.0.1")
        self.assertEqual(client_of(self.access_for(w, "/plain"))[0], "127.0.0.1")

    def test_untrusted_client_whose_request_starts_like_a_header(self):
        """Empty lines before a request line are allowed (RFC 9112 2.2), and "\\r\\n\\r\\n" is also
        how a v2 header starts: an untrusted client sending them, in pieces, is still served."""
        listener = '{ address = "127.0.0.1:0", proxy-protocol-from = ["10.0.0.0/8"] }'
        w = self.start_weir(self.config(self.o.address, listener=listener))
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(b"\r\n")
            time.sleep(0.2)
            c.send(b"\r\n")
            time.sleep(0.2)
            c.send(b"GET /empty-lines HTTP/1.1\r\nHost: pp.test\r\n\r\n")
            self.assertStatus(c.read_final_response()[0], 200, "request after empty lines")
        self.assertEqual(self.o.last().path, "/empty-lines")
        self.assertEqual(client_of(self.access_for(w, "/empty-lines"))[0], "127.0.0.1")

    def test_stalled_partial_headers_cost_no_cpu(self):
        """Connections that send the start of a PROXY header and then nothing must wait like any
        idle connection, not poll: anyone can open them (the "PROXY" prefix is read before the
        peer is refused), so a busy wait per connection is a denial of service."""
        listener = '{ address = "127.0.0.1:0", proxy-protocol-from = ["10.0.0.0/8"] }'
        w = self.start_weir(self.config(self.o.address, listener=listener))

        def cpu_seconds() -> float:
            with open(f"/proc/{w.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        socks = []
        try:
            for _ in range(100):
                s = socket.create_connection(w.addr(), timeout=10)
                s.sendall(b"PROXY TCP4 203.0.")
                socks.append(s)
            time.sleep(0.3)
            before = cpu_seconds()
            time.sleep(2)
            used = cpu_seconds() - before
        finally:
            for s in socks:
                s.close()
        self.assertLess(used, 0.25, f"weir used {used:.2f} s of CPU in 2 s for 100 connections "
                                    f"stalled in a PROXY header")
        self.assertTrue(w.alive())

    def test_tls_listener_header_then_handshake(self):
        pki = tlsutil.Pki(self.tmp)
        crt, key = pki.leaf("a", "a.test", dns=["a.test"])
        w = self.trusted(f', tls = {{ cert = {wt.toml_str(crt)}, key = {wt.toml_str(key)} }}')
        ctx = ssl.create_default_context(cafile=pki.ca)
        ctx.set_alpn_protocols(["http/1.1"])
        for name, header, expected in (
                ("v1", v1("203.0.113.7", "192.0.2.10", 4433, 443), ("203.0.113.7", 4433)),
                ("v2", v2("2001:db8::42", "2001:db8::1", 4434, 443), ("2001:db8::42", 4434))):
            with self.subTest(version=name):
                path = f"/tls-{name}"
                raw = socket.create_connection(w.addr(), timeout=10)
                try:
                    raw.sendall(header)
                    with ctx.wrap_socket(raw, server_hostname="a.test") as s:
                        self.assertEqual(tlsutil.subject_dict(s.getpeercert())["commonName"],
                                         "a.test")
                        s.sendall(f"GET {path} HTTP/1.1\r\nHost: a.test\r\n"
                                  f"Connection: close\r\n\r\n".encode())
                        data = b""
                        while True:
                            chunk = s.recv(65536)
                            if not chunk:
                                break
                            data += chunk
                finally:
                    raw.close()
                self.assertTrue(data.startswith(b"HTTP/1.1 200 "), data[:200])
                rec = self.o.last()
                self.assertEqual(rec.path, path)
                self.assertEqual(rec.header("x-forwarded-proto"), "https")
                self.assertEqual(rec.header("x-forwarded-for"), expected[0])
                self.assertEqual(client_of(self.access_for(w, path)), expected)
        # Without the header the TLS handshake never starts: the connection is closed.
        raw = socket.create_connection(w.addr(), timeout=10)
        with self.assertRaises((ssl.SSLError, OSError)):
            with ctx.wrap_socket(raw, server_hostname="a.test"):
                pass
        raw.close()


class OutboundTest(ProxyProtocolTestBase):

    def setUp(self):
        super().setUp()
        self.pp = PPOrigin()
        self.addCleanup(self.pp.stop)

    def start(self, version: str, listener: str = '{ address = "127.0.0.1:0" }') -> wt.Weir:
        return self.start_weir(self.config(self.pp.address, listener=listener,
                                           upstream_extra=f'proxy-protocol = "{version}"'))

    def check_header(self, h: dict, version: int, src: tuple[str, int], dst: tuple[str, int]):
        self.assertEqual(h["version"], version, h)
        self.assertEqual((h["src"], h["sport"]), src, h)
        self.assertEqual((h["dst"], h["dport"]), dst, h)

    def test_v1_and_v2_carry_the_client_and_listener_addresses(self):
        for version, num in (("v1", 1), ("v2", 2)):
            with self.subTest(version=version):
                before = len(self.pp.snapshot())
                w = self.start(version)
                listen = w.addr()
                with wt.RawConn(listen, timeout=10) as c:
                    me = c.sock.getsockname()
                    for i in range(2):
                        r = self.get_on(c, f"/{version}/{i}")
                        self.assertStatus(r, 200, f"{version} request {i}")
                        body = json.loads(r.body)
                        self.check_header(body["header"], num, (me[0], me[1]), listen)
                        if num == 1:
                            self.assertEqual(body["header"]["command"], "TCP4")
                        else:
                            self.assertEqual((body["header"]["command"], body["header"]["family"]),
                                             ("PROXY", 0x11))
                conns = self.pp.snapshot()[before:]
                # Both requests of the client connection went over one upstream connection.
                self.assertEqual(len(conns), 1, conns)
                self.assertEqual(len(conns[0]["requests"]), 2)
                self.assertIsNone(conns[0]["error"])

                # Another client connection gets an upstream connection of its own, with its own
                # address: a connection whose header names one client is never reused for another.
                with wt.RawConn(listen, timeout=10) as c2:
                    me2 = c2.sock.getsockname()
                    r = self.get_on(c2, f"/{version}/other")
                    self.assertStatus(r, 200, f"{version} second client")
                    self.check_header(json.loads(r.body)["header"], num, (me2[0], me2[1]), listen)
                self.assertEqual(len(self.pp.snapshot()) - before, 2)
                w.stop()

    def test_curl_through_v2(self):
        w = self.start("v2")
        r = wt.curl("-w", "%{local_ip} %{local_port}", w.url("/curl"))
        self.assertStatus(r, 200, "curl through an upstream with proxy-protocol v2")
        ip, port = r.stdout.split()
        self.check_header(json.loads(r.body)["header"], 2, (ip, int(port)), w.addr())

    def test_ipv6_client(self):
        w = self.start("v1", listener='{ address = "[::1]:0" }')
        listen = w.addr()
        self.assertEqual(listen[0], "::1")
        with socket.create_connection(listen, timeout=10) as s:
            s.sendall(b"GET /v6 HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
            me = s.getsockname()
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data[:200])
        h = json.loads(data.partition(b"\r\n\r\n")[2])["header"]
        self.assertEqual(h["command"], "TCP6")
        self.check_header(h, 1, ("::1", me[1]), ("::1", listen[1]))

    def test_inbound_header_is_passed_on(self):
        """A PROXY header in front of weir names the client; the header towards the origin names
        the same client and the destination the first header gave."""
        listener = '{ address = "127.0.0.1:0", proxy-protocol-from = ["127.0.0.1"] }'
        for version, num in (("v1", 1), ("v2", 2)):
            with self.subTest(version=version):
                w = self.start(version, listener=listener)
                with wt.RawConn(w.addr(), timeout=10) as c:
                    c.send(v2("203.0.113.7", "198.51.100.1", 4242, 443))
                    r = self.get_on(c, f"/chain-{version}")
                    self.assertStatus(r, 200, "PROXY in and out")
                body = json.loads(r.body)
                self.check_header(body["header"], num, ("203.0.113.7", 4242), ("198.51.100.1", 443))
                self.assertEqual(body["xff"], "203.0.113.7")
                w.stop()

    def test_header_carries_the_client_address_from_trusted_proxies(self):
        """docs/configuration.md, "Client address": weir uses one address per request as the
        client's, and "a PROXY protocol header towards a target carries it". With trusted-proxies
        that address comes from X-Forwarded-For."""
        text = self.config(self.pp.address, upstream_extra='proxy-protocol = "v1"').replace(
            'upstream = "app"', 'upstream = "app"\ntrusted-proxies = ["127.0.0.1"]')
        w = self.start_weir(text)
        r = wt.curl("-H", "X-Forwarded-For: 198.51.100.9", w.url("/via-trusted-proxy"))
        self.assertStatus(r, 200, "trusted proxy + upstream PROXY v1")
        acc = [a for a in w.wait_access_logs(1) if a["path"] == "/via-trusted-proxy"][0]
        self.assertEqual(client_of(acc)[0], "198.51.100.9", acc)
        h = json.loads(r.body)["header"]
        self.assertEqual(h["src"], "198.51.100.9",
                         f"the access log's client is 198.51.100.9 but the PROXY header sent to "
                         f"the origin says {h['raw']!r}")

    def test_unix_listener_sends_unknown_and_local(self):
        """A client on a Unix socket has no IP address: v1 says UNKNOWN, v2 uses LOCAL."""
        for version in ("v1", "v2"):
            with self.subTest(version=version):
                path = os.path.join(self.tmp, f"pp-{version}.sock")
                w = self.start(version, listener=f'{{ address = "unix:{path}" }}')
                self.assertEqual(w.unix_path(), path)
                p = wt.curl_raw("--unix-socket", path, "http://pp.test/unix", timeout=10)
                self.assertEqual(p.returncode, 0, p.stderr)
                h = json.loads(p.stdout)["header"]
                if version == "v1":
                    self.assertEqual(h["raw"], "PROXY UNKNOWN", h)
                else:
                    self.assertEqual((h["version"], h["command"], h["length"]), (2, "LOCAL", 0), h)
                w.stop()


if __name__ == "__main__":
    unittest.main()
