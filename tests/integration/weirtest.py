"""Harness for weir's integration tests (Python 3.11 standard library only).

Provides:
  * paths: weir_bin(), build_dir(), source_dir(), builtin_plugin_dir()
  * Weir: runs `weir run -c FILE` with a config text, waits for `weir ready`, parses
    `listening on ADDR (service NAME)` / `(services A, B)` (addr(); unix_path() for `unix:`
    listeners), captures every output line, stops with a signal, VmHWM.
  * Origin: a threaded raw-socket HTTP/1.1 origin with configurable behaviours, counting
    connections and recording every request.
  * RawConn: a raw-socket HTTP/1.x client connection with a response parser.
  * curl(): runs the real curl binary and parses its result.
  * WeirTestCase: unittest base class wiring the above with automatic cleanup and, on failure,
    a dump of weir's output.

Environment: WEIR_BIN (the weir binary), WEIR_BUILD_DIR, WEIR_SOURCE_DIR. Without WEIR_BIN the
binary is looked up at <source>/build/dev/bin/weir; if it does not exist the tests are skipped.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from typing import Callable, Iterable

# --------------------------------------------------------------------------------------------------
# Paths
# --------------------------------------------------------------------------------------------------

_HERE = os.path.dirname(os.path.abspath(__file__))


def source_dir() -> str:
    return os.environ.get("WEIR_SOURCE_DIR") or os.path.normpath(os.path.join(_HERE, "..", ".."))


def weir_bin() -> str:
    # Absolute: weir runs with its own temporary directory as the working directory, so a relative
    # WEIR_BIN (WEIR_BIN=build/ci/bin/weir) would not be found there.
    path = os.environ.get("WEIR_BIN") or os.path.join(source_dir(), "build", "dev", "bin", "weir")
    return os.path.abspath(path)


def build_dir() -> str:
    if os.environ.get("WEIR_BUILD_DIR"):
        return os.path.abspath(os.environ["WEIR_BUILD_DIR"])
    return os.path.dirname(os.path.dirname(os.path.abspath(weir_bin())))


def builtin_plugin_dir() -> str:
    """The built-in plugin dir: the binary's ../lib/weir/plugins (or a lib* variant)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(weir_bin())))
    preferred = os.path.join(root, "lib", "weir", "plugins")
    if os.path.isdir(preferred):
        return preferred
    for cand in sorted(glob.glob(os.path.join(root, "lib*", "**", "weir", "plugins"), recursive=True)):
        if os.path.isdir(cand):
            return cand
    return preferred


def require_weir() -> None:
    """Skip (not fail) when there is no weir binary at all, e.g. a direct run before a build."""
    path = weir_bin()
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise unittest.SkipTest(f"weir binary not found at {path} (set WEIR_BIN)")


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without WEIR_* variables and proxies, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("WEIR_") and k.lower() not in
           ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    if extra:
        env.update(extra)
    return env


def toml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid TOML basic string for our inputs


def free_port() -> int:
    """A TCP port on 127.0.0.1 with nothing listening on it (bound then released).

    Use it for listeners that several services must share (virtual hosts): two listeners on
    "127.0.0.1:0" are never meant to be one address (each should get a port of its own), so a
    shared address needs a real port number."""
    # The kernel may hand out a just-released port again: never return one twice in a run, or two
    # listeners of one test could be given the same address.
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _ports_given:
            break
    _ports_given.add(port)
    return port


_ports_given: set[int] = set()


def addr_str(addr: tuple[str, int]) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url(addr: tuple[str, int], path: str = "/") -> str:
    return f"http://{addr_str(addr)}{path}"


def parse_addr(text: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)", text) or re.fullmatch(r"([^:]+):(\d+)", text)
    if not m:
        raise ValueError(f"cannot parse address {text!r}")
    return m.group(1), int(m.group(2))


def wait_until(pred: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_weir_cmd(args: list[str], env: dict[str, str] | None = None, timeout: float = 30,
                 input_text: str | None = None) -> subprocess.CompletedProcess:
    """Runs a short weir command (check, config dump, env, --version...), capturing text output."""
    return subprocess.run([weir_bin(), *args], env=clean_env(env), capture_output=True, text=True,
                          timeout=timeout, input=input_text)


# --------------------------------------------------------------------------------------------------
# weir process
# --------------------------------------------------------------------------------------------------

# "listening on 127.0.0.1:41627 (service web)", "listening on [::1]:8443 (services a, b) with TLS",
# "listening on unix:/run/weir.sock (service web)". Services sharing one address (virtual hosts)
# are listed together after "services".
_LISTEN_RE = re.compile(r"listening on (\S+) \(services? ([^)]+)\)")


class WeirStartError(AssertionError):
    pass


class Weir:
    """One running weir process."""

    READY_TIMEOUT = 15.0

    def __init__(self, config_text: str, *, args: list[str] | None = None,
                 env: dict[str, str] | None = None, workdir: str | None = None,
                 config_name: str = "weir.toml"):
        self._own_dir = workdir is None
        self.dir = workdir or tempfile.mkdtemp(prefix="weir-it-")
        self.config_path = os.path.join(self.dir, config_name)
        with open(self.config_path, "w") as f:
            f.write(config_text)
        self.argv = [weir_bin(), *(args if args is not None else ["run", "-c", self.config_path])]
        self.env = clean_env(env)
        self.lines: list[tuple[float, str, str]] = []  # (monotonic time, "out"|"err", text)
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self.proc: subprocess.Popen | None = None
        self._readers: list[threading.Thread] = []
        self.listeners: dict[str, list[tuple[str, int]]] = {}
        self.unix_listeners: dict[str, list[str]] = {}  # service -> socket paths (no "unix:")
        self.returncode: int | None = None

    # -- lifecycle
    def start(self, wait_ready: bool = True) -> "Weir":
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, cwd=self.dir, start_new_session=True)
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            t = threading.Thread(target=self._reader, args=(name, stream), daemon=True)
            t.start()
            self._readers.append(t)
        if wait_ready:
            self.wait_ready()
        return self

    def _reader(self, name: str, stream) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            with self._cond:
                self.lines.append((time.monotonic(), name, text))
                self._cond.notify_all()
        stream.close()
        with self._cond:
            self._cond.notify_all()

    def wait_for_line(self, pred: Callable[[str], bool], timeout: float,
                      start_index: int = 0) -> str | None:
        """Waits for an output line matching pred; returns it or None on timeout/early exit."""
        deadline = time.monotonic() + timeout
        idx = start_index
        with self._cond:
            while True:
                while idx < len(self.lines):
                    if pred(self.lines[idx][2]):
                        return self.lines[idx][2]
                    idx += 1
                if self.proc.poll() is not None and all(not t.is_alive() for t in self._readers):
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 0.1))

    def wait_ready(self) -> None:
        line = self.wait_for_line(lambda s: "weir ready" in s, self.READY_TIMEOUT)
        if line is None:
            code = self.proc.poll()
            if code is None:
                msg = f"weir did not log 'weir ready' within {self.READY_TIMEOUT:.0f}s"
                self.kill()
            else:
                self._join_readers()
                msg = f"weir exited early with code {code} before 'weir ready'"
            raise WeirStartError(f"{msg}\ncommand: {' '.join(self.argv)}\nconfig:\n"
                                 f"{self.config_text()}\noutput:\n{self.log_text()}")
        for text in self.text_lines():
            m = _LISTEN_RE.search(text)
            if not m:
                continue
            services = [n.strip() for n in m.group(2).split(",") if n.strip()]
            if m.group(1).startswith("unix:"):
                table, addr = self.unix_listeners, m.group(1)[len("unix:"):]
            else:
                table, addr = self.listeners, parse_addr(m.group(1))
            for service in services:
                lst = table.setdefault(service, [])
                if addr not in lst:
                    lst.append(addr)
        if not self.listeners and not self.unix_listeners:
            raise WeirStartError("weir is ready but logged no 'listening on ADDR (service NAME)' line"
                                 f"\noutput:\n{self.log_text()}")

    def addr(self, service: str = "web", index: int = 0) -> tuple[str, int]:
        """The index-th TCP listener address of a service (Unix sockets: see unix_path)."""
        if service not in self.listeners:
            raise AssertionError(f"no TCP listener logged for service {service!r}; have "
                                 f"{self.listeners} (unix: {self.unix_listeners})"
                                 f"\noutput:\n{self.log_text()}")
        return self.listeners[service][index]

    def unix_path(self, service: str = "web", index: int = 0) -> str:
        """The index-th Unix socket listener of a service: the path, without "unix:"."""
        if service not in self.unix_listeners:
            raise AssertionError(f"no unix: listener logged for service {service!r}; have "
                                 f"{self.unix_listeners}\noutput:\n{self.log_text()}")
        return self.unix_listeners[service][index]

    def url(self, path: str = "/", service: str = "web") -> str:
        return url(self.addr(service), path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._join_readers()
        return self.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Sends sig and waits; kills after timeout. Returns the exit code (None if killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.send_signal(sig)
            code = self.wait(timeout)
            if code is None:
                self.kill()
                return None
            return code
        self._join_readers()
        self.returncode = self.proc.returncode
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._join_readers()

    def _join_readers(self) -> None:
        for t in self._readers:
            t.join(timeout=5)

    def cleanup(self) -> None:
        self.kill()
        if self._own_dir:
            import shutil
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- memory
    def proc_status(self, key: str) -> int | None:
        """A /proc/PID/status value in kB (e.g. VmHWM, VmRSS); None if unavailable."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (FileNotFoundError, ProcessLookupError):
            return None
        return None

    def descendants(self) -> list[int]:
        """PIDs of weir's child processes, recursively (empty when workers are threads)."""
        out, pending = [], [self.proc.pid]
        while pending and len(out) < 1000:
            pid = pending.pop()
            for cf in glob.glob(f"/proc/{pid}/task/*/children"):
                try:
                    with open(cf) as f:
                        kids = [int(x) for x in f.read().split()]
                except OSError:
                    continue
                out += kids
                pending += kids
        return out

    def vm_hwm_kib(self) -> int | None:
        """Peak RSS (VmHWM) of weir, the largest over its process and any worker processes."""
        vals = [self.proc_status("VmHWM")]
        for pid in self.descendants():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            vals.append(int(line.split()[1]))
            except OSError:
                pass
        vals = [v for v in vals if v is not None]
        return max(vals) if vals else None

    def vm_rss_kib(self) -> int | None:
        return self.proc_status("VmRSS")

    # -- output
    def config_text(self) -> str:
        with open(self.config_path) as f:
            return f.read()

    def text_lines(self, stream: str | None = None) -> list[str]:
        with self._lock:
            return [t for (_, s, t) in self.lines if stream is None or s == stream]

    def log_text(self, last: int | None = None) -> str:
        with self._lock:
            lines = [f"[{s}] {t}" for (_, s, t) in self.lines]
        if last is not None:
            lines = lines[-last:]
        return "\n".join(lines)

    def json_lines(self) -> list[dict]:
        """stdout lines parsed as JSON (raises on a non-JSON line)."""
        out = []
        for t in self.text_lines("out"):
            if t.strip():
                out.append(json.loads(t))
        return out

    def access_logs(self) -> list[dict]:
        res = []
        for t in self.text_lines("out"):
            try:
                obj = json.loads(t)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("logger") == "access":
                res.append(obj)
        return res

    def wait_access_logs(self, count: int, timeout: float = 5.0) -> list[dict]:
        wait_until(lambda: len(self.access_logs()) >= count, timeout)
        return self.access_logs()


# --------------------------------------------------------------------------------------------------
# Buffered socket reader used by both the origin and the raw client
# --------------------------------------------------------------------------------------------------

class PeerClosed(Exception):
    pass


class SockReader:
    def __init__(self, sock: socket.socket, stop: threading.Event | None = None,
                 idle_timeout: float = 60.0):
        self.sock = sock
        self.buf = bytearray()
        self.stop = stop
        self.idle_timeout = idle_timeout
        self._big = bytearray(1 << 20)

    def _recv_some(self, n: int = 65536) -> bytes:
        """One recv with the idle timeout, checking the stop event every 0.25 s."""
        deadline = time.monotonic() + self.idle_timeout
        while True:
            if self.stop is not None and self.stop.is_set():
                raise PeerClosed("stopping")
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("idle timeout")
            r, _, _ = select.select([self.sock], [], [], min(left, 0.25))
            if not r:
                continue
            data = self.sock.recv(n)
            if not data:
                raise PeerClosed("peer closed")
            return data

    def fill(self) -> None:
        self.buf += self._recv_some()

    def read_until(self, delim: bytes, limit: int) -> bytes:
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i + len(delim)])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                raise ValueError(f"no {delim!r} within {limit} bytes")
            start = max(0, len(self.buf) - len(delim) + 1)
            self.fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def consume(self, n: int, on_data: Callable[[memoryview], None] | None = None) -> None:
        """Reads and discards exactly n bytes, passing each piece to on_data."""
        if self.buf:
            take = min(n, len(self.buf))
            if on_data:
                on_data(memoryview(bytes(self.buf[:take])))
            del self.buf[:take]
            n -= take
        view = memoryview(self._big)
        deadline_idle = self.idle_timeout
        while n > 0:
            want = min(n, len(self._big))
            self.sock.settimeout(deadline_idle)
            got = self.sock.recv_into(view[:want])
            if got == 0:
                raise PeerClosed("peer closed in body")
            if on_data:
                on_data(view[:got])
            n -= got

    def read_to_close(self, limit: int = 1 << 30) -> bytes:
        out = bytearray(self.buf)
        self.buf.clear()
        while len(out) <= limit:
            try:
                out += self._recv_some()
            except PeerClosed:
                break
        return bytes(out)


def parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    """Splits a head into its first line and header pairs (original case)."""
    text = head.decode("latin-1")
    lines = text.split("\r\n")
    first = lines[0]
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        headers.append((name, value.strip(" \t")))
    return first, headers


def hget(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    """First value of a header (case-insensitive), or None."""
    name = name.lower()
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


def hall(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    name = name.lower()
    return [v for k, v in headers if k.lower() == name]


def hnames(headers: Iterable[tuple[str, str]]) -> set[str]:
    return {k.lower() for k, _ in headers}


# --------------------------------------------------------------------------------------------------
# Origin server
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Behaviour:
    """What an origin does for a request.

    kind: "fixed" (status + body), "echo" (request as JSON), "stall" (never answer),
          "stream" (size bytes of body, content-length or chunked), "close" (close without answer).
    delay: seconds to wait before answering (the "slow" behaviour).
    """
    kind: str = "fixed"
    status: int = 200
    body: bytes = b"ok"
    delay: float = 0.0
    size: int = 0
    chunked: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def fixed(body: bytes | str = b"ok", status: int = 200, headers=(), delay: float = 0.0) -> Behaviour:
    if isinstance(body, str):
        body = body.encode()
    return Behaviour("fixed", status=status, body=body, headers=tuple(headers), delay=delay)


def echo(delay: float = 0.0, status: int = 200) -> Behaviour:
    return Behaviour("echo", delay=delay, status=status)


def slow(delay: float, body: bytes | str = b"slow") -> Behaviour:
    return fixed(body, delay=delay)


def stall() -> Behaviour:
    return Behaviour("stall")


def stream(size: int, chunked: bool = False) -> Behaviour:
    return Behaviour("stream", size=size, chunked=chunked)


def close_conn() -> Behaviour:
    return Behaviour("close")


def status(code: int, body: bytes | str = b"") -> Behaviour:
    return fixed(body, status=code)


@dataclasses.dataclass
class RequestRecord:
    conn_id: int
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body_len: int = 0
    body_complete: bool = False
    body: bytes = b""  # the first KEEP_BODY bytes only
    body_sha256: str = ""  # of the whole body, if it was no longer than KEEP_BODY

    def header(self, name: str) -> str | None:
        return hget(self.headers, name)

    def header_all(self, name: str) -> list[str]:
        return hall(self.headers, name)

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


_REASONS = {100: "Continue", 200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently",
            304: "Not Modified", 400: "Bad Request", 404: "Not Found", 418: "I'm a teapot",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}

_CHUNK = b"x" * (1 << 20)


class Origin:
    """A threaded HTTP/1.1 origin on 127.0.0.1:0 (or, with unix_path, on a Unix socket at that
    path: its address is then "unix:PATH") written with raw sockets.

    behaviour: the default Behaviour; paths: {path: Behaviour} matched on the path (no query)
    exactly, or by prefix for keys ending in '*'.
    host, port: where to listen (an IPv6 host such as "::1" works too; port 0: any), so that
    several origins can share a port on distinct loopback addresses and a stopped origin can come
    back on its address; wait_free: how long to retry while that port is still taken.
    one_send: a fixed, undelayed response leaves in one send (head and body together), so that
    stopping the origin never cuts a response weir has begun to relay.
    """

    KEEP_BODY = 1 << 20
    MAX_HEAD = 1 << 20

    def __init__(self, name: str = "origin", behaviour: Behaviour | None = None,
                 paths: dict[str, Behaviour] | None = None, send_continue: bool = True,
                 idle_timeout: float = 120.0, unix_path: str | None = None,
                 host: str = "127.0.0.1", port: int = 0, wait_free: float = 0.0,
                 one_send: bool = False):
        self.name = name
        self.behaviour = behaviour or fixed(name)
        self.paths = dict(paths or {})
        self.send_continue = send_continue
        self.idle_timeout = idle_timeout
        self.lock = threading.Lock()
        self.accepted = 0
        self.requests: list[RequestRecord] = []
        self.errors: list[str] = []
        self.open_conns = 0
        self._stop = threading.Event()
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self.unix_path = unix_path
        self.one_send = one_send
        if unix_path is not None:
            # An origin on a Unix socket: address is "unix:/path", as static discovery takes it.
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.sock.listen(256)
            self.addr = unix_path
            self.address = f"unix:{unix_path}"
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            deadline = time.monotonic() + wait_free
            while True:
                try:
                    self.sock.bind((host, port))
                    break
                except OSError as e:
                    if e.errno != errno.EADDRINUSE or time.monotonic() >= deadline:
                        self.sock.close()
                        raise
                    time.sleep(0.05)
            self.sock.listen(256)
            self.addr = self.sock.getsockname()[:2]
            self.address = (f"[{self.addr[0]}]:{self.addr[1]}" if family == socket.AF_INET6
                            else f"{self.addr[0]}:{self.addr[1]}")
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True,
                                               name=f"origin-{name}-accept")
        self._accept_thread.start()

    # -- stats
    @property
    def request_count(self) -> int:
        with self.lock:
            return len(self.requests)

    def snapshot(self) -> list[RequestRecord]:
        with self.lock:
            return list(self.requests)

    def last(self) -> RequestRecord:
        with self.lock:
            if not self.requests:
                raise AssertionError(f"origin {self.name} received no request")
            return self.requests[-1]

    def reset(self) -> None:
        with self.lock:
            self.requests.clear()
            self.accepted = 0

    # -- serving
    def _accept_loop(self) -> None:
        conn_id = 0
        while not self._stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                c, _ = self.sock.accept()
            except OSError:
                break
            conn_id += 1
            with self.lock:
                self.accepted += 1
                self.open_conns += 1
                self._socks.add(c)
            t = threading.Thread(target=self._serve, args=(c, conn_id), daemon=True,
                                 name=f"origin-{self.name}-{conn_id}")
            t.start()
            self._threads.append(t)

    def _pick(self, path: str) -> Behaviour:
        if path in self.paths:
            return self.paths[path]
        best = None
        for key, b in self.paths.items():
            if key.endswith("*") and path.startswith(key[:-1]):
                if best is None or len(key) > len(best[0]):
                    best = (key, b)
        return best[1] if best else self.behaviour

    def _serve(self, c: socket.socket, conn_id: int) -> None:
        if c.family != socket.AF_UNIX:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rd = SockReader(c, self._stop, self.idle_timeout)
        try:
            while not self._stop.is_set():
                try:
                    head = rd.read_until(b"\r\n\r\n", self.MAX_HEAD)
                except (PeerClosed, socket.timeout, ConnectionError):
                    return
                first, headers = parse_head(head)
                parts = first.split(" ")
                if len(parts) != 3:
                    self.errors.append(f"bad request line {first!r}")
                    c.sendall(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return
                method, target, version = parts
                rec = RequestRecord(conn_id, method, target, version, headers)
                with self.lock:
                    self.requests.append(rec)
                if (hget(headers, "expect") or "").lower() == "100-continue" and self.send_continue:
                    c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
                self._read_body(rd, rec)
                beh = self._pick(rec.path)
                conn_hdr = (hget(headers, "connection") or "").lower()
                keep = ("close" not in conn_hdr) if version == "HTTP/1.1" else ("keep-alive" in conn_hdr)
                if not self._respond(c, rec, beh, keep):
                    return
                if not keep:
                    return
        except Exception as e:  # noqa: BLE001 - recorded, the connection is dropped
            if not self._stop.is_set():
                self.errors.append(f"conn {conn_id}: {type(e).__name__}: {e}")
        finally:
            with self.lock:
                self.open_conns -= 1
                self._socks.discard(c)
            try:
                c.close()
            except OSError:
                pass

    def _read_body(self, rd: SockReader, rec: RequestRecord) -> None:
        te = hget(rec.headers, "transfer-encoding")
        cl = hget(rec.headers, "content-length")
        kept = bytearray()
        hasher = hashlib.sha256()

        def sink(piece: memoryview) -> None:
            rec.body_len += len(piece)
            if len(kept) < self.KEEP_BODY:
                kept.extend(piece[:self.KEEP_BODY - len(kept)])
            if rec.body_len <= self.KEEP_BODY:
                hasher.update(piece)

        if te is not None and te.lower().strip().endswith("chunked"):
            while True:
                line = rd.read_until(b"\r\n", 4096)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while rd.read_until(b"\r\n", 65536) != b"\r\n":  # trailers
                        pass
                    break
                rd.consume(size, sink)
                if rd.read_exact(2) != b"\r\n":
                    raise PeerClosed("bad chunk terminator")
        elif cl is not None:
            rd.consume(int(cl), sink)
        rec.body = bytes(kept)
        if rec.body_len <= self.KEEP_BODY:
            rec.body_sha256 = hasher.hexdigest()
        rec.body_complete = True

    def _respond(self, c: socket.socket, rec: RequestRecord, beh: Behaviour, keep: bool) -> bool:
        """Sends the response; returns False when the connection must be dropped."""
        if self.one_send and beh.kind == "fixed" and not beh.delay and not self._stop.is_set():
            hdrs = [("x-origin", self.name), ("server", f"weir-test-origin/{self.name}"),
                    *beh.headers]
            if not keep:
                hdrs.append(("connection", "close"))
            hdrs.append(("content-length", str(len(beh.body))))
            reason = "OK" if beh.status == 200 else "Status"
            head = "".join([f"HTTP/1.1 {beh.status} {reason}\r\n",
                            *(f"{k}: {v}\r\n" for k, v in hdrs), "\r\n"])
            c.sendall(head.encode("latin-1") + (b"" if rec.method == "HEAD" else beh.body))
            return True
        if beh.delay:
            if self._stop.wait(beh.delay):
                return False
        if beh.kind == "stall":
            self._stop.wait(300)
            return False
        if beh.kind == "close":
            return False
        head_only = rec.method == "HEAD"
        hdrs = [("x-origin", self.name), ("server", f"weir-test-origin/{self.name}"), *beh.headers]
        if not keep:
            hdrs.append(("connection", "close"))
        if beh.kind == "stream":
            if beh.chunked:
                hdrs.append(("transfer-encoding", "chunked"))
            else:
                hdrs.append(("content-length", str(beh.size)))
            self._send_head(c, beh.status, hdrs)
            if head_only:
                return True
            left = beh.size
            view = memoryview(_CHUNK)
            while left > 0:
                n = min(left, len(_CHUNK))
                if beh.chunked:
                    c.sendall(b"%x\r\n" % n)
                    c.sendall(view[:n])
                    c.sendall(b"\r\n")
                else:
                    c.sendall(view[:n])
                left -= n
            if beh.chunked:
                c.sendall(b"0\r\n\r\n")
            return True
        if beh.kind == "echo":
            body = json.dumps({
                "origin": self.name, "method": rec.method, "target": rec.target,
                "version": rec.version, "headers": rec.headers, "body_len": rec.body_len,
                "body_sha256": rec.body_sha256,
            }).encode()
            hdrs.append(("content-type", "application/json"))
        else:
            body = beh.body
        hdrs.append(("content-length", str(len(body))))
        self._send_head(c, beh.status, hdrs)
        if not head_only and body:
            c.sendall(body)
        return True

    @staticmethod
    def _send_head(c: socket.socket, code: int, hdrs: list[tuple[str, str]]) -> None:
        reason = _REASONS.get(code, "Status")
        lines = [f"HTTP/1.1 {code} {reason}"] + [f"{k}: {v}" for k, v in hdrs]
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def stop(self) -> None:
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        self._accept_thread.join(timeout=2)
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=2)
        if self.unix_path is not None:
            try:
                os.unlink(self.unix_path)
            except OSError:
                pass


# --------------------------------------------------------------------------------------------------
# Raw client
# --------------------------------------------------------------------------------------------------

class ScriptedOrigin:
    """An origin for one connection that answers its first request head with a script: bytes
    are sent, a float is a pause in seconds (a head now, a body later, a broken body...)."""

    def __init__(self, *script: bytes | float):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        self.script = script
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            c, _ = self.srv.accept()
        except OSError:
            return
        with c:
            c.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            for step in self.script:
                if isinstance(step, float):
                    time.sleep(step)
                else:
                    c.sendall(step)

    def stop(self) -> None:
        self.srv.close()
        self.thread.join(5)


@dataclasses.dataclass
class Response:
    version: str
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    chunked: bool = False
    close_delimited: bool = False

    def header(self, name: str) -> str | None:
        return hget(self.headers, name)

    def __str__(self) -> str:
        hs = "".join(f"\n  {k}: {v}" for k, v in self.headers)
        b = self.body[:300]
        return f"{self.version} {self.status} {self.reason}{hs}\n  body({len(self.body)}): {b!r}"


class RawConn:
    """A raw TCP connection speaking HTTP/1.x, for requests a normal client will not send."""

    def __init__(self, addr: tuple[str, int], timeout: float = 10.0):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.reader = SockReader(self.sock, None, timeout)

    def send(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def read_response(self, head_request: bool = False, body_limit: int = 1 << 30) -> Response:
        """Reads one response (a 1xx too). Raises PeerClosed if the peer closed first."""
        head = self.reader.read_until(b"\r\n\r\n", 1 << 20)
        first, headers = parse_head(head)
        m = re.match(r"(HTTP/\d\.\d) (\d{3}) ?(.*)", first)
        if not m:
            raise AssertionError(f"bad status line {first!r}")
        resp = Response(m.group(1), int(m.group(2)), m.group(3), headers, b"")
        if 100 <= resp.status < 200 or resp.status in (204, 304) or head_request:
            return resp
        te = hget(headers, "transfer-encoding")
        cl = hget(headers, "content-length")
        if te is not None and "chunked" in te.lower():
            resp.chunked = True
            body = bytearray()
            while True:
                line = self.reader.read_until(b"\r\n", 4096)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.reader.read_until(b"\r\n", 65536) != b"\r\n":
                        pass
                    break
                body += self.reader.read_exact(size)
                if self.reader.read_exact(2) != b"\r\n":
                    raise AssertionError("bad chunk terminator in response")
            resp.body = bytes(body)
        elif cl is not None:
            resp.body = self.reader.read_exact(int(cl))
        else:
            resp.close_delimited = True
            resp.body = self.reader.read_to_close(body_limit)
        return resp

    def read_final_response(self, head_request: bool = False) -> tuple[Response, list[Response]]:
        """Reads responses until a non-1xx one; returns (final, interim list)."""
        interim = []
        for _ in range(10):
            r = self.read_response(head_request)
            if r.status >= 200:
                return r, interim
            interim.append(r)
        raise AssertionError("more than 10 interim responses")

    def peer_closed(self, timeout: float = 2.0) -> bool:
        """True if the peer closes (EOF or reset) within timeout with no further data."""
        if self.reader.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1)
        except socket.timeout:
            return False
        except ConnectionError:
            return True
        return data == b""

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def raw_exchange(addr: tuple[str, int], data: bytes | str, timeout: float = 10.0) -> Response:
    """Sends data on a new connection and returns the first final response."""
    with RawConn(addr, timeout) as c:
        c.send(data)
        return c.read_final_response()[0]


# --------------------------------------------------------------------------------------------------
# curl
# --------------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CurlResult:
    rc: int
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    stdout: str
    stderr: str
    all_heads: list[tuple[int, list[tuple[str, str]]]]

    def header(self, name: str) -> str | None:
        return hget(self.headers, name)

    def __str__(self) -> str:
        hs = "".join(f"\n  {k}: {v}" for k, v in self.headers)
        return (f"curl rc={self.rc} status={self.status}{hs}\n  body({len(self.body)}): "
                f"{self.body[:300]!r}\n  stderr: {self.stderr.strip()}")


def curl(*args: str, timeout: float = 30.0, stdin=None,
         prefix: list[str] | None = None) -> CurlResult:
    """Runs curl for one URL; the response head(s) are parsed from -D, the body read from a file.
    prefix: a command curl runs under (nsenter into weir's network namespace, say)."""
    with tempfile.TemporaryDirectory(prefix="weir-curl-") as d:
        hfile, bfile = os.path.join(d, "h"), os.path.join(d, "b")
        cmd = [*(prefix or []), "curl", "-sS", "--noproxy", "*", "--max-time", str(int(timeout)),
               "-D", hfile, "-o", bfile, *args]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 10, stdin=stdin,
                           env=clean_env())
        heads: list[tuple[int, list[tuple[str, str]]]] = []
        if os.path.exists(hfile):
            with open(hfile, "rb") as f:
                raw = f.read().decode("latin-1")
            for block in raw.split("\r\n\r\n"):
                if not block.strip():
                    continue
                first, hs = parse_head(block.encode("latin-1"))
                m = re.match(r"HTTP/[\d.]+ (\d{3})", first)
                if m:
                    heads.append((int(m.group(1)), hs))
        body = b""
        if os.path.exists(bfile):
            with open(bfile, "rb") as f:
                body = f.read()
        final = heads[-1] if heads else (0, [])
        return CurlResult(p.returncode, final[0], final[1], body,
                          p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"),
                          heads)


def curl_raw(*args: str, timeout: float = 60.0, stdin=None) -> subprocess.CompletedProcess:
    """Runs curl with exactly these arguments (plus -sS --noproxy)."""
    return subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", str(int(timeout)), *args],
                          capture_output=True, timeout=timeout + 10, stdin=stdin, env=clean_env())


# --------------------------------------------------------------------------------------------------
# unittest base
# --------------------------------------------------------------------------------------------------

class WeirTestCase(unittest.TestCase):
    """Base class: origins and weir processes created through it are stopped at cleanup; when a
    test fails, weir's output is printed to stderr."""

    @classmethod
    def setUpClass(cls) -> None:
        require_weir()

    def setUp(self) -> None:
        self._weirs: list[Weir] = []
        self.tmp = tempfile.mkdtemp(prefix="weir-it-")
        self.addCleanup(self._rm_tmp)

    def _rm_tmp(self) -> None:
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _failed(self) -> bool:
        outcome = getattr(self, "_outcome", None)
        return outcome is not None and not getattr(outcome, "success", True)

    def origin(self, name: str = "origin", behaviour: Behaviour | None = None,
               paths: dict[str, Behaviour] | None = None, **kw) -> Origin:
        o = Origin(name, behaviour, paths, **kw)
        self.addCleanup(o.stop)
        return o

    def start_weir(self, config_text: str, *, args: list[str] | None = None,
                   env: dict[str, str] | None = None, wait_ready: bool = True,
                   prefix: list[str] | None = None) -> Weir:
        """prefix: a command weir runs under (unshare into a namespace of its own, say)."""
        w = Weir(config_text, args=args, env=env)
        if prefix:
            w.argv = prefix + w.argv
        self._weirs.append(w)
        self.addCleanup(self._finish_weir, w)
        w.start(wait_ready=wait_ready)
        return w

    def _finish_weir(self, w: Weir) -> None:
        if w.alive():
            w.stop(signal.SIGTERM, timeout=10)
        w.kill()
        if self._failed() or os.environ.get("WEIR_TEST_VERBOSE"):
            sys.stderr.write(f"\n----- weir output ({self.id()}) -----\n{w.log_text(last=200)}\n"
                             f"----- end of weir output -----\n")
        w.cleanup()

    # -- assertion helpers
    def assertBodyNotHeld(self, run_once: Callable[[], tuple[float, float]],
                          first_len: int, limit: float = 0.15, tries: int = 3) -> None:
        """run_once fetches a body that the origin sends as `first_len` bytes, a pause, the rest;
        it returns when the first bytes and the rest (after the pause) arrived. Passes when in
        one of `tries` runs both came within `limit` seconds: a slow run may miss once, bytes
        weir holds back miss every time."""
        seen = []
        while len(seen) < tries:
            seen.append(run_once())
            if all(t < limit for t in seen[-1]):
                return
        self.fail(f"(first {first_len} bytes, the rest after the pause) came after "
                  + ", ".join(f"({a:.2f}, {b:.2f})" for a, b in seen) + " s: weir held body "
                  "bytes back")

    def assertStatus(self, resp, code: int, context: str = "") -> None:
        got = resp.status
        if got != code:
            extra = ""
            for w in self._weirs:
                extra += f"\nweir output (last 30 lines):\n{w.log_text(last=30)}"
            self.fail(f"{context}: expected status {code}, got {got}\nresponse: {resp}{extra}")


def basic_config(upstreams: dict[str, list[str] | str], *, service_upstream: str | None = "app",
                 log_format: str = "json", log_level: str = "info", extra: str = "",
                 upstream_extra: str = "", service_extra: str = "", workers: int = 1,
                 access_log: bool = True, shutdown_grace: str = "10s") -> str:
    """A config text with one service `web` on 127.0.0.1:0.

    upstreams: {name: [target address or inline TOML table text, ...]} ; upstream_extra is appended to every upstream
    table (e.g. 'pool-size = 4'); service_extra is appended to [services.web]; extra is appended
    at the end (routes, limits...)."""
    out = [f"[system]\nworkers = {workers}\nshutdown-grace = \"{shutdown_grace}\"\n",
           f"[log]\nlevel = \"{log_level}\"\nformat = \"{log_format}\"\n"
           f"access-log = {'true' if access_log else 'false'}\n"]
    for name, targets in upstreams.items():
        if isinstance(targets, str):
            targets = [targets]
        tl = ", ".join(t if t.lstrip().startswith("{") else toml_str(t) for t in targets)
        out.append(f"[upstreams.{name}]\ndiscovery = {{ use = \"static\", targets = [{tl}] }}\n"
                   f"lb = {{ use = \"round-robin\" }}\n{upstream_extra}\n")
    svc = "[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\n"
    if service_upstream:
        svc += f"upstream = \"{service_upstream}\"\n"
    svc += service_extra + "\n"
    out.append(svc)
    out.append(extra)
    return "\n".join(out)


def main() -> None:
    unittest.main(verbosity=2)
