"""A small raw-frame HTTP/2 client for abuse tests (Python 3.11 standard library only).

Frames are written by hand; header blocks use HPACK without Huffman coding (static-table
references, literals without indexing, and literals with incremental indexing for HPACK bombs).
Responses are not decoded (that would need HPACK's Huffman table): the tests only look at frame
types, flags, stream ids, RST_STREAM and GOAWAY codes, and DATA lengths.

    c = H2Conn(("127.0.0.1", port))                  # h2c with prior knowledge
    c = H2Conn(addr, tls=True, server_name="a.test") # TLS, ALPN "h2" (certificate not verified)
    c.send(headers(1, request_block("GET", "/", "a.test"), end_stream=True))
    f = c.read_until(lambda f: f.type == DATA and f.end_stream, timeout=5)
"""

from __future__ import annotations

import dataclasses
import select
import socket
import ssl
import struct
import time
from typing import Callable, Iterable

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types (RFC 9113 6).
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
TYPE_NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
              "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]

# Flags.
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8

# SETTINGS identifiers.
HEADER_TABLE_SIZE, ENABLE_PUSH, MAX_CONCURRENT_STREAMS, INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE, \
    MAX_HEADER_LIST_SIZE = range(1, 7)

# Error codes (RFC 9113 7).
ERROR_NAMES = ["NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
               "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
               "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
               "HTTP_1_1_REQUIRED"]
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0, 1, 2, 3
REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 7, 8, 11


def error_name(code: int) -> str:
    return ERROR_NAMES[code] if 0 <= code < len(ERROR_NAMES) else f"0x{code:x}"


# --------------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------------

def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    if len(payload) >= 1 << 24:
        raise ValueError("frame payload too large")
    return (struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) +
            struct.pack(">I", stream_id & 0x7FFFFFFF) + payload)


def settings(entries: Iterable[tuple[int, int]] = (), ack: bool = False) -> bytes:
    payload = b"".join(struct.pack(">HI", k, v) for k, v in entries)
    return frame(SETTINGS, ACK if ack else 0, 0, payload)


def ping(data: bytes = b"weirping", ack: bool = False) -> bytes:
    return frame(PING, ACK if ack else 0, 0, data[:8].ljust(8, b"\0"))


def rst_stream(stream_id: int, code: int = CANCEL) -> bytes:
    return frame(RST_STREAM, 0, stream_id, struct.pack(">I", code))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">I", increment))


def goaway(last_stream_id: int = 0, code: int = NO_ERROR) -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code))


def data(stream_id: int, payload: bytes = b"", end_stream: bool = False) -> bytes:
    return frame(DATA, END_STREAM if end_stream else 0, stream_id, payload)


def headers(stream_id: int, block: bytes, end_stream: bool = False,
            end_headers: bool = True) -> bytes:
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, stream_id, block)


def continuation(stream_id: int, block: bytes, end_headers: bool = False) -> bytes:
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, stream_id, block)


# --------------------------------------------------------------------------------------------------
# HPACK (RFC 7541), encoding only, no Huffman
# --------------------------------------------------------------------------------------------------

def hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = bytearray([first | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s: bytes | str) -> bytes:
    if isinstance(s, str):
        s = s.encode("latin-1")
    return hpack_int(len(s), 7) + s


def indexed(index: int) -> bytes:
    """An indexed field (static table 1..61, dynamic table from 62)."""
    return hpack_int(index, 7, 0x80)


def literal(name: bytes | str, value: bytes | str) -> bytes:
    """A literal field without indexing, new name."""
    return b"\x00" + hpack_str(name) + hpack_str(value)


def literal_indexed(name: bytes | str, value: bytes | str) -> bytes:
    """A literal field with incremental indexing (enters the decoder's dynamic table)."""
    return b"\x40" + hpack_str(name) + hpack_str(value)


def request_block(method: str, path: str, authority: str, scheme: str = "http",
                  extra: Iterable[tuple[str, str]] = ()) -> bytes:
    block = literal(":method", method) + literal(":scheme", scheme) + literal(":path", path)
    block += literal(":authority", authority)
    for k, v in extra:
        block += literal(k.lower(), v)
    return block


# --------------------------------------------------------------------------------------------------
# Connection
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Frame:
    type: int
    flags: int
    stream_id: int
    payload: bytes

    @property
    def end_stream(self) -> bool:
        return self.type in (DATA, HEADERS) and bool(self.flags & END_STREAM)

    @property
    def error_code(self) -> int | None:
        if self.type == RST_STREAM and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY and len(self.payload) >= 8:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    @property
    def last_stream_id(self) -> int | None:
        if self.type == GOAWAY and len(self.payload) >= 4:
            return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF
        return None

    def __str__(self) -> str:
        name = TYPE_NAMES[self.type] if self.type < len(TYPE_NAMES) else f"type {self.type}"
        extra = ""
        if self.error_code is not None:
            extra = f" {error_name(self.error_code)}"
        if self.type == GOAWAY:
            extra += f" last={self.last_stream_id} {self.payload[8:]!r}"
        return f"{name} flags=0x{self.flags:x} stream={self.stream_id} len={len(self.payload)}{extra}"


def pop_frame(buf: bytearray) -> Frame | None:
    """The first whole frame in `buf`, taken out of it; None while it is incomplete."""
    if len(buf) < 9:
        return None
    length = int.from_bytes(buf[0:3], "big")
    if len(buf) < 9 + length:
        return None
    f = Frame(buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF,
              bytes(buf[9:9 + length]))
    del buf[:9 + length]
    return f


class H2Conn:
    """One HTTP/2 client connection. Never raises on a connection the server closed: `closed`
    becomes true, and sends are dropped."""

    def __init__(self, addr: tuple[str, int], *, tls: bool = False, server_name: str | None = None,
                 timeout: float = 10.0, local_settings: Iterable[tuple[int, int]] = (),
                 preface: bool = True, auto_ack: bool = True):
        raw = socket.create_connection(addr, timeout=timeout)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(["h2"])
            self.sock = ctx.wrap_socket(raw, server_hostname=server_name)
            if self.sock.selected_alpn_protocol() != "h2":
                raise AssertionError(f"ALPN chose {self.sock.selected_alpn_protocol()!r}, not h2")
        else:
            self.sock = raw
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        self.auto_ack = auto_ack
        self.buf = bytearray()
        self.frames: list[Frame] = []  # every frame received, in order
        self.goaway: Frame | None = None
        self.closed = False  # EOF or reset seen, or a send failed
        self.bytes_sent = 0
        self.data_received: dict[int, int] = {}  # stream id -> DATA payload bytes
        if preface:
            self.send(PREFACE + settings(local_settings))

    # -- sending
    def send(self, payload: bytes) -> bool:
        if self.closed:
            return False
        try:
            self.sock.sendall(payload)
        except (OSError, ValueError):
            self.closed = True
            return False
        self.bytes_sent += len(payload)
        return True

    # -- receiving
    def _recv(self, timeout: float) -> bool:
        """Reads what is available within timeout; False on timeout, or once closed."""
        if self.closed:
            return False
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
        if not pending:
            r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
            if not r:
                return False
        try:
            chunk = self.sock.recv(1 << 16)
        except (ssl.SSLWantReadError, BlockingIOError, socket.timeout):
            return False
        except (OSError, ValueError):
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        return True

    def _pop_frame(self) -> Frame | None:
        f = pop_frame(self.buf)
        if f is None:
            return None
        self.frames.append(f)
        if f.type == GOAWAY and self.goaway is None:
            self.goaway = f
        elif f.type == DATA:
            self.data_received[f.stream_id] = self.data_received.get(f.stream_id, 0) + len(f.payload)
        elif f.type == SETTINGS and not f.flags & ACK and self.auto_ack:
            self.send(settings(ack=True))
        return f

    def read_frame(self, timeout: float) -> Frame | None:
        """The next frame, or None on timeout or when the connection closed."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._pop_frame()
            if f is not None:
                return f
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return None
            self._recv(left)

    def read_until(self, pred: Callable[[Frame], bool], timeout: float) -> Frame | None:
        deadline = time.monotonic() + timeout
        while True:
            f = self.read_frame(max(0.0, deadline - time.monotonic()))
            if f is None:
                return None
            if pred(f):
                return f

    def handshake(self, timeout: float = 5.0) -> bool:
        """Waits for the server's SETTINGS (and acknowledges it), so that no ACK has to be sent
        later, in the middle of a header block."""
        return self.read_until(lambda f: f.type == SETTINGS and not f.flags & ACK,
                               timeout) is not None

    def poll(self) -> None:
        """Reads whatever already arrived, without waiting."""
        while self._recv(0):
            while self._pop_frame() is not None:
                pass
        while self._pop_frame() is not None:
            pass

    def wait_closed(self, timeout: float) -> bool:
        """Reads until EOF; True if the server closed within timeout."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._recv(left):
                while self._pop_frame() is not None:
                    pass
        while self._pop_frame() is not None:
            pass
        return True

    def ended(self) -> bool:
        """The server sent GOAWAY or closed the connection."""
        return self.goaway is not None or self.closed

    def flood(self, unit: bytes, count: int, seconds: float, batch: int = 100) -> int:
        """Sends `unit` up to `count` times within `seconds`, in batches, reading between them;
        stops early once the server sent GOAWAY or closed. Returns how many were sent."""
        sent = 0
        deadline = time.monotonic() + seconds
        while sent < count and time.monotonic() < deadline:
            n = min(batch, count - sent)
            if not self.send(unit * n):
                break
            sent += n
            self.poll()
            if self.ended():
                break
        return sent

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> "H2Conn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
