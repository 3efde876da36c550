"""Shared TLS helpers for the integration tests (standard library + the openssl command).

  * Pki: a throw-away CA (ECDSA P-256) that signs server and client certificates, with DNS and IP
    subjectAltNames, made with the openssl command for each test run.
  * self_signed(): a self-signed server certificate (no CA at all).
  * TlsOrigin: a threaded HTTPS/1.1 origin on 127.0.0.1 (Python's ssl module) that records, per
    connection, the SNI the client sent (sni_callback), the client certificate's subject, the
    protocol version and every request, and answers each request with that as JSON.
  * peer_subject(): the subject of the certificate a TLS server presents for a given SNI.
"""

from __future__ import annotations

import dataclasses
import json
import os
import select
import socket
import ssl
import subprocess
import threading
import time


def openssl(*args: str, stdin: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=timeout)


def _must(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def _san(dns=(), ips=()) -> str:
    return ",".join([f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips])


class Pki:
    """A CA with its own key; leaf() signs certificates with it."""

    def __init__(self, d: str, name: str = "ca", cn: str = "weir test CA"):
        self.d = d
        self.name = name
        self.ca_key = os.path.join(d, f"{name}.key")
        self.ca = os.path.join(d, f"{name}.pem")
        _must(openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                      "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                      "-subj", f"/CN={cn}"))

    def leaf(self, name: str, cn: str, dns=(), ips=(), org: str = "weir",
             client: bool = False) -> tuple[str, str]:
        """A certificate signed by this CA: (cert path, key path). client=True makes a TLS client
        certificate (extendedKeyUsage clientAuth), otherwise a server one."""
        key = os.path.join(self.d, f"{name}.key")
        csr = os.path.join(self.d, f"{name}.csr")
        crt = os.path.join(self.d, f"{name}.pem")
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", key, "-out", csr, "-subj", f"/O={org}/CN={cn}",
                "-addext", f"extendedKeyUsage={'clientAuth' if client else 'serverAuth'}"]
        san = _san(dns, ips)
        if san:
            args += ["-addext", f"subjectAltName={san}"]
        _must(openssl(*args))
        _must(openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
                      "-CAcreateserial", "-days", "2", "-out", crt, "-copy_extensions", "copy"))
        return crt, key


def self_signed(d: str, name: str, cn: str, dns=(), ips=()) -> tuple[str, str]:
    key = os.path.join(d, f"{name}.key")
    crt = os.path.join(d, f"{name}.pem")
    args = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/O=self/CN={cn}"]
    san = _san(dns, ips)
    if san:
        args += ["-addext", f"subjectAltName={san}"]
    _must(openssl(*args))
    return crt, key


def subject_dict(cert: dict | None) -> dict:
    if not cert:
        return {}
    return {k: v for rdn in cert.get("subject", ()) for (k, v) in rdn}


def peer_subject(addr: tuple[str, int], server_name: str | None, cafile: str,
                 timeout: float = 10) -> dict:
    """Handshake with SNI server_name (None: none) and return the server certificate's subject."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    with socket.create_connection(addr, timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name) as s:
            return subject_dict(s.getpeercert())


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        data = sock.recv(n - len(out))
        if not data:
            raise ConnectionError(f"closed after {out!r}")
        out += data
    return out


def read_proxy_header_exact(sock: socket.socket) -> bytes:
    """Reads one PROXY protocol header (v1 or v2) and not a byte more (TLS follows it)."""
    start = _recv_exact(sock, 5)
    if start == b"PROXY":
        line = start
        while not line.endswith(b"\r\n"):
            if len(line) > 107:
                raise ValueError(f"v1 line too long: {line!r}")
            line += _recv_exact(sock, 1)
        return line
    if start == b"\r\n\r\n\x00":
        fixed = start + _recv_exact(sock, 11)
        if fixed[:12] != b"\r\n\r\n\x00\r\nQUIT\n":
            raise ValueError(f"bad v2 signature: {fixed!r}")
        return fixed + _recv_exact(sock, int.from_bytes(fixed[14:16], "big"))
    raise ValueError(f"not a PROXY header: {start!r}")


@dataclasses.dataclass
class TlsConnRecord:
    conn_id: int
    sni: str | None = None
    client_subject: dict = dataclasses.field(default_factory=dict)
    version: str | None = None
    alpn: str | None = None
    error: str | None = None  # the handshake failure, if any
    state: str = "pending"  # "pending" (handshake not finished), "ok" or "failed"
    requests: list[dict] = dataclasses.field(default_factory=list)
    proxy_header: bytes | None = None  # with proxy_protocol: the header, exactly as received


class TlsOrigin:
    """An HTTPS origin on 127.0.0.1:0.

    client_ca: CA file to verify client certificates with; require_client_cert: ssl.CERT_REQUIRED
    (the handshake fails without a certificate signed by client_ca). Every response is 200 with a
    JSON body {"origin", "sni", "client_cn", "path", "headers"}, keep-alive unless the request
    says close."""

    def __init__(self, cert: str, key: str, *, name: str = "tls-origin", client_ca: str | None = None,
                 require_client_cert: bool = False, max_version: ssl.TLSVersion | None = None,
                 host: str = "127.0.0.1", proxy_protocol: bool = False):
        self.name = name
        self.proxy_protocol = proxy_protocol  # expect a PROXY header before the TLS handshake
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
        if max_version is not None:
            self.ctx.maximum_version = max_version
        self.ctx.sni_callback = self._on_sni
        # The server picks the first of its list that the client offers: "http/1.1" chosen means
        # the client did not offer "h2".
        self.ctx.set_alpn_protocols(["h2", "http/1.1"])
        self.lock = threading.Lock()
        self.conns: list[TlsConnRecord] = []
        self._sni_by_sock: dict[int, str | None] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.addr = self.sock.getsockname()[:2]
        self.address = (f"[{self.addr[0]}]:{self.addr[1]}" if ":" in host
                        else f"{self.addr[0]}:{self.addr[1]}")
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    def _on_sni(self, sslsock, server_name, ctx):
        with self.lock:
            self._sni_by_sock[id(sslsock)] = server_name
        return None

    # -- inspection
    def snapshot(self) -> list[TlsConnRecord]:
        with self.lock:
            return list(self.conns)

    def settle(self, timeout: float = 5.0) -> None:
        """Waits until no accepted connection is still in its handshake."""
        deadline = time.monotonic() + timeout
        while any(c.state == "pending" for c in self.snapshot()) and time.monotonic() < deadline:
            time.sleep(0.02)

    def handshakes_ok(self) -> list[TlsConnRecord]:
        self.settle()
        return [c for c in self.snapshot() if c.state == "ok"]

    def handshakes_failed(self) -> list[TlsConnRecord]:
        self.settle()
        return [c for c in self.snapshot() if c.state == "failed"]

    def requests(self) -> list[dict]:
        return [r for c in self.snapshot() for r in c.requests]

    # -- serving
    def _accept_loop(self) -> None:
        n = 0
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            rec = TlsConnRecord(n)
            with self.lock:
                self.conns.append(rec)
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c, rec), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, raw: socket.socket, rec: TlsConnRecord) -> None:
        raw.settimeout(10)
        if self.proxy_protocol:
            try:
                rec.proxy_header = read_proxy_header_exact(raw)
            except (OSError, ValueError) as e:
                rec.error = f"PROXY header: {type(e).__name__}: {e}"
                rec.state = "failed"
                raw.close()
                return
        try:
            s = self.ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        except (OSError, ssl.SSLError) as e:
            rec.error = f"wrap: {e}"
            rec.state = "failed"
            raw.close()
            return
        with self.lock:  # wrap_socket detached raw: stop() must shut down the wrapped socket
            self._socks.discard(raw)
            self._socks.add(s)
        try:
            try:
                s.do_handshake()
            except (OSError, ssl.SSLError) as e:
                rec.error = f"{type(e).__name__}: {e}"
                rec.state = "failed"
                return
            finally:
                with self.lock:  # the SNI is known even when the handshake then fails
                    rec.sni = self._sni_by_sock.pop(id(s), None)
            rec.client_subject = subject_dict(s.getpeercert())
            rec.version = s.version()
            rec.alpn = s.selected_alpn_protocol()
            rec.state = "ok"
            buf = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in buf:
                    try:
                        data = s.recv(65536)
                    except (OSError, ssl.SSLError):
                        return
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _version = (lines[0].split(" ") + ["", "", ""])[:3]
                headers = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.append((k, v.strip()))
                hd = {k.lower(): v for k, v in headers}
                # Request bodies are not expected here; a Content-Length one is skipped.
                need = int(hd.get("content-length", "0") or 0)
                while len(buf) < need:
                    data = s.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[need:]
                req = {"method": method, "path": path, "headers": headers}
                rec.requests.append(req)
                body = json.dumps({"origin": self.name, "sni": rec.sni,
                                   "client_cn": rec.client_subject.get("commonName"),
                                   "path": path, "headers": headers}).encode()
                close = "close" in hd.get("connection", "").lower()
                resp = (f"HTTP/1.1 200 OK\r\nx-origin: {self.name}\r\ncontent-type: application/json"
                        f"\r\ncontent-length: {len(body)}\r\n"
                        + ("connection: close\r\n" if close else "") + "\r\n").encode() + body
                s.sendall(resp)
                if close:
                    return
        except Exception as e:  # noqa: BLE001 - recorded; the connection is dropped
            if rec.error is None and not self._stop.is_set():
                rec.error = f"serving: {type(e).__name__}: {e}"
        finally:
            if rec.state == "pending":
                rec.state = "failed"
            with self.lock:
                self._socks.discard(s)
            try:
                s.close()
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._accept_thread.join(timeout=2)
        with self.lock:
            socks = list(self._socks)
        for c in socks:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
