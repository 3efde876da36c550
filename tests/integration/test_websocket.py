"""WebSocket (HTTP/1.1 Upgrade) tunnels through weir, against a small RFC 6455 echo server that the
test starts: the handshake passes both ways, frames of every length encoding echo back, and an
idle tunnel is closed after tunnel-idle-timeout.
"""

import base64
import hashlib
import os
import socket
import struct
import threading
import time
import unittest

import weirtest as wt

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def recv_exact(s: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def read_head(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(1)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    return data


def read_frame(s: socket.socket) -> tuple[int, bytes]:
    b0, b1 = recv_exact(s, 2)
    opcode = b0 & 0x0F
    masked = b1 & 0x80
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", recv_exact(s, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exact(s, 8))[0]
    mask = recv_exact(s, 4) if masked else b""
    payload = recv_exact(s, length)
    if masked:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return opcode, payload


def frame(opcode: int, payload: bytes, mask: bool) -> bytes:
    head = bytes([0x80 | opcode])
    m = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([m | n])
    elif n < 65536:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if mask:
        key = os.urandom(4)
        return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))
    return head + payload


class EchoServer:
    """A WebSocket echo server: answers the handshake, echoes data frames, answers close."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.addr = self.sock.getsockname()
        self.requests: list[bytes] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self.stop_event.is_set():
            try:
                c, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c: socket.socket):
        c.settimeout(30)
        try:
            head = read_head(c)
            self.requests.append(head)
            key = ""
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if line.lower().startswith("sec-websocket-key:"):
                    key = line.split(":", 1)[1].strip()
            c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept_key(key)}\r\n\r\n")
                      .encode())
            while True:
                opcode, payload = read_frame(c)
                if opcode == 0x8:
                    c.sendall(frame(0x8, payload, mask=False))
                    break
                c.sendall(frame(opcode, payload, mask=False))
        except (ConnectionError, OSError):
            pass
        finally:
            c.close()

    def stop(self):
        self.stop_event.set()
        self.sock.close()


class WebSocketTest(wt.WeirTestCase):
    def setUp(self):
        super().setUp()
        self.echo = EchoServer()
        self.addCleanup(self.echo.stop)

    def start(self, limits: str = "") -> tuple[str, int]:
        w = self.start_weir(f"""
[system]
workers = 1
[upstreams.ws]
discovery = {{ use = "static", targets = ["{wt.addr_str(self.echo.addr)}"] }}
[services.web]
listeners = [{{ address = "127.0.0.1:0" }}]
upstream = "ws"
[services.web.limits]
{limits}
""")
        self.weir = w
        return w.addr()

    def handshake(self, addr) -> socket.socket:
        s = socket.create_connection(addr, timeout=10)
        self.addCleanup(s.close)
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall((f"GET /chat HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\n"
                   f"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = read_head(s).decode("latin-1")
        lines = head.split("\r\n")
        self.assertTrue(lines[0].startswith("HTTP/1.1 101"), head)
        hdrs = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        self.assertEqual(hdrs.get("upgrade", "").lower(), "websocket")
        self.assertEqual(hdrs.get("connection", "").lower(), "upgrade")
        self.assertEqual(hdrs.get("sec-websocket-accept"), accept_key(key))
        return s

    def test_echo_round_trip(self):
        s = self.handshake(self.start())
        # The origin saw the upgrade request with its Upgrade and Connection headers.
        seen = self.echo.requests[-1].decode("latin-1").lower()
        self.assertIn("upgrade: websocket", seen)
        self.assertIn("connection: upgrade", seen)
        self.assertIn("x-forwarded-for: 127.0.0.1", seen)
        for payload in [b"hello weir", b"x" * 200, os.urandom(70000), b""]:
            opcode = 0x1 if payload.isascii() else 0x2
            s.sendall(frame(opcode, payload, mask=True))
            got_op, got = read_frame(s)
            self.assertEqual((got_op, got), (opcode, payload))
        s.sendall(frame(0x8, struct.pack("!H", 1000), mask=True))
        op, payload = read_frame(s)
        self.assertEqual((op, payload), (0x8, struct.pack("!H", 1000)))
        self.assertEqual(s.recv(1), b"")  # then weir closes the tunnel
        # A 101 the client did not ask for is never relayed: this origin always switches.
        self.assertEqual(wt.curl(self.weir.url("/")).status, 502)
        self.assertTrue(self.weir.alive())

    def test_idle_tunnel_is_closed(self):
        s = self.handshake(self.start('tunnel-idle-timeout = "1s"'))
        s.sendall(frame(0x1, b"ping", mask=True))
        self.assertEqual(read_frame(s), (0x1, b"ping"))
        t0 = time.monotonic()
        s.settimeout(5)
        self.assertEqual(s.recv(1), b"")
        self.assertLess(time.monotonic() - t0, 4)

    def test_upgrade_refused_by_origin_is_a_normal_response(self):
        o = self.origin("plain", wt.fixed("no upgrade here"))
        w = self.start_weir(f"""
[system]
workers = 1
[upstreams.app]
discovery = {{ use = "static", targets = ["{wt.addr_str(o.addr)}"] }}
[services.web]
listeners = [{{ address = "127.0.0.1:0" }}]
upstream = "app"
""")
        r = wt.curl("-H", "Upgrade: websocket", "-H", "Connection: Upgrade", w.url("/"))
        self.assertEqual((r.status, r.body), (200, b"no upgrade here"))


if __name__ == "__main__":
    unittest.main()
