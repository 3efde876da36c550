#!/usr/bin/env python3
"""Side-by-side benchmark of weir, nginx and HAProxy as reverse proxies on loopback.

One origin (nginx) and the three proxies, configured alike, are started in a temporary
directory. For each scenario every proxy gets a warm-up, then the repetitions run with the
proxies interleaved (nginx, haproxy, weir, nginx, haproxy, weir, ...). The proxy under test is
pinned to the first CPU; the load generator and the origin share the second. At the end one
markdown table per group of metrics is printed, every cell "median (min–max)" over the
repetitions, with the ratios weir/nginx and weir/haproxy of the medians.

    tools/bench.sh [--quick] [--scenarios h1,h2c,...] [--reps N] [--duration S]
                   [--proxies nginx,haproxy,weir] [--json FILE] [--weir PATH]

See docs/performance.md for what each scenario and metric means and how it is measured.
Standard library only."""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import re
import resource
import selectors
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from callgrind_check import build_type  # noqa: E402 (tests/bench is the script's directory)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BODY = b"Hello, World!"
BODY_SIZES = {"/1k": 1024, "/16k": 16 * 1024, "/256k": 256 * 1024}
PROXIES = ("nginx", "haproxy", "weir")
PACKAGES = {"wrk": "wrk", "h2load": "nghttp2-client", "nginx": "nginx", "haproxy": "haproxy",
            "perf": "linux-perf", "openssl": "openssl", "taskset": "util-linux"}
# Mirrors weir's defaults (docs/configuration.md, [services.NAME.limits]); nginx and HAProxy are
# set to the same values.
H2_MAX_STREAMS = 128
H2_INITIAL_WINDOW = 65535
UPSTREAM_POOL = 64
LONG_TIMEOUT_S = 300
H2_CLIENTS, H2_STREAMS = 16, 4
WRK_CONNECTIONS = 64
# Latency scenario: each connection asks for one request every LATENCY_PERIOD_S (at least
# LATENCY_MIN_CLIENTS connections), so a connection has that long for each request.
LATENCY_MIN_CLIENTS = 16
LATENCY_PERIOD_S = 0.0032
HANDSHAKE_CLIENTS = 16
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Scenario:
    name: str
    kind: str       # wrk, h2load, handshake, wrk-close, latency, idle
    listener: str   # h1, h2c or tls: which listener of the proxy
    path: str
    title: str
    tools: tuple


SCENARIOS = [
    Scenario("h1", "wrk", "h1", "/", "HTTP/1.1 keep-alive, 13-byte body", ("wrk",)),
    Scenario("h1-1k", "wrk", "h1", "/1k", "HTTP/1.1 keep-alive, 1 KiB body", ("wrk",)),
    Scenario("h1-16k", "wrk", "h1", "/16k", "HTTP/1.1 keep-alive, 16 KiB body", ("wrk",)),
    Scenario("h1-256k", "wrk", "h1", "/256k", "HTTP/1.1 keep-alive, 256 KiB body", ("wrk",)),
    Scenario("h2c", "h2load", "h2c", "/", "HTTP/2 cleartext, prior knowledge, 13-byte body",
             ("h2load",)),
    Scenario("h2-tls", "h2load", "tls", "/", "HTTP/2 over TLS 1.3 (ALPN h2), 13-byte body",
             ("h2load", "openssl")),
    Scenario("h1-tls", "wrk", "tls", "/", "HTTP/1.1 keep-alive over TLS 1.3, 13-byte body",
             ("wrk", "openssl")),
    Scenario("h1-up-tls", "wrk", "uptls", "/",
             "HTTP/1.1 keep-alive, the origin reached over TLS 1.3 (pooled), 13-byte body",
             ("wrk", "openssl")),
    Scenario("tls-handshake", "handshake", "tls", "/",
             "full TLS 1.3 handshake (ECDSA P-256) and one request per connection",
             ("openssl",)),
    Scenario("tls-resume", "wrk-close", "tls", "/",
             "resumed TLS 1.3 handshake (session ticket) and one request per connection",
             ("wrk", "openssl")),
    Scenario("latency", "latency", "h1", "/",
             "open-loop HTTP/1.1 at fixed rates, latency percentiles", ("h2load",)),
    Scenario("idle-memory", "idle", "h1", "/",
             "RSS per idle keep-alive client connection, fresh process", ()),
    Scenario("idle-memory-tls", "idle", "tls", "/",
             "RSS per idle HTTP/1.1-over-TLS client connection, fresh process", ("openssl",)),
    Scenario("idle-memory-h2", "idle", "tls", "/",
             "RSS per idle HTTP/2-over-TLS client connection, fresh process", ("openssl",)),
]
# TLS idle connections are opened one after another (a handshake each): fewer of them.
IDLE_TLS_CONNS = 2000
BY_NAME = {s.name: s for s in SCENARIOS}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Interrupted(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# Processes


class Procs:
    """Every long-running process this harness starts, so that all of them are stopped."""

    def __init__(self) -> None:
        self.items: list[subprocess.Popen] = []

    def start(self, argv: list[str], logfile: str, **kw) -> subprocess.Popen:
        out = open(logfile, "ab")
        try:
            p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        finally:
            out.close()
        self.items.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, grace: float = 5.0) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # The process group is ours (start_new_session): take its leftovers (nginx workers).
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        if p in self.items:
            self.items.remove(p)

    def stop_all(self) -> None:
        for p in list(reversed(self.items)):
            self.stop(p)


PROCS = Procs()


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def wait_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def children_of(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            if int(rest[1]) == pid:
                out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


def cpu_ticks(pids: list[int]) -> tuple[int, int] | None:
    """utime and stime (clock ticks) summed over the processes; /proc/PID/stat covers every
    thread of a process. None when one of them is gone."""
    user = sys_ = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            user += int(rest[11])
            sys_ += int(rest[12])
    except (OSError, IndexError, ValueError):
        return None
    return user, sys_


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def passive_opens() -> int:
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("PassiveOpens")])


def run(argv: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def h1_exchange(s) -> bool:
    """GET / on an open HTTP/1.1 connection (keep-alive); True once the whole 200 arrived."""
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return False
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if not sep:
            continue
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        if m and len(body) >= int(m.group(1)):
            return head.startswith(b"HTTP/1.1 200")
        if not m and body.endswith(b"0\r\n\r\n"):
            return head.startswith(b"HTTP/1.1 200")


def h2_exchange(s) -> bool:
    """GET / on an open HTTP/2 connection: the preface, SETTINGS, one HEADERS frame (HPACK
    static-table entries and a literal :authority), then frames until the response's DATA ends
    the stream. SETTINGS from the server are acknowledged."""
    def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") \
            + payload
    block = bytes([0x82, 0x87, 0x84, 0x41, 9]) + b"127.0.0.1"  # GET https / :authority
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + frame(1, 0x5, 1, block))
    buf = b""
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            chunk = s.recv(65536)
            if not chunk:
                return False
            buf += chunk
        length, ftype, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
        sid = int.from_bytes(buf[5:9], "big") & 0x7fffffff
        buf = buf[9 + length:]
        if ftype == 4 and not flags & 1:
            s.sendall(frame(4, 1, 0))
        elif ftype in (3, 7):  # RST_STREAM, GOAWAY
            return False
        elif ftype == 0 and sid == 1 and flags & 1:
            return True


def http_get(port: int, path: str = "/", timeout: float = 5, tls: bool = False,
             http10: bool = False) -> tuple[int, bytes]:
    """One request on a fresh connection: (status, body)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s: socket.socket = raw
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["http/1.1"])
        s = ctx.wrap_socket(raw)
    try:
        if http10:
            s.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        else:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                      .encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    if b"transfer-encoding: chunked" in head.lower():
        out, rest = b"", body
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line.split(b";")[0], 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        body = out
    return status, body


def stub_accepts(port: int) -> int | None:
    try:
        status, body = http_get(port, "/")
    except OSError:
        return None
    m = re.search(rb"server accepts handled requests\s+(\d+)", body)
    return int(m.group(1)) if status == 200 and m else None


# ---------------------------------------------------------------------------------------------
# Pinning


class Pinning:
    def __init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.usable = len(cpus)
        self.pinned = len(cpus) >= 2 and shutil.which("taskset") is not None
        if self.pinned:
            self.proxy_cpu, self.load_cpu = cpus[0], cpus[1]
        else:
            self.proxy_cpu = self.load_cpu = None

    def proxy(self) -> list[str]:
        return ["taskset", "-c", str(self.proxy_cpu)] if self.pinned else []

    def load(self) -> list[str]:
        return ["taskset", "-c", str(self.load_cpu)] if self.pinned else []

    @staticmethod
    def mask(cpu: int) -> str:
        return format(1 << cpu, "b")

    def describe(self) -> str:
        if self.pinned:
            return (f"proxy under test on CPU{self.proxy_cpu}; load generator, origin and this "
                    f"harness on CPU{self.load_cpu}")
        return "NOT pinned: fewer than two CPUs are available (or taskset is missing)"


# ---------------------------------------------------------------------------------------------
# TLS material


def make_cert(tmp: str) -> dict:
    key, crt, both = (os.path.join(tmp, n) for n in ("key.pem", "cert.pem", "haproxy.pem"))
    r = run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"], timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"openssl could not make a certificate: {r.stderr.strip()}")
    with open(both, "w") as out:
        for p in (crt, key):
            with open(p) as f:
                out.write(f.read())
    os.chmod(both, 0o600)
    return {"key": key, "cert": crt, "pem": both}


# ---------------------------------------------------------------------------------------------
# Origin and proxies


def nofile() -> int:
    """The descriptor limit the proxies inherit (raised to the hard limit by main())."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def nginx_main_context(directory: str, affinity: str) -> str:
    """The main and events contexts of a generated nginx configuration: one worker (pinned by
    `affinity`), no daemon, pid and error log in `directory`, as many connections as descriptors
    allow."""
    return f"""daemon off;
master_process on;
{nginx_user_line()}worker_processes 1;
{affinity}worker_rlimit_nofile {nofile()};
pid {directory}/nginx.pid;
error_log {directory}/logs/error.log warn;
events {{ worker_connections {max(1024, nofile() - 1000)}; }}"""


def nginx_user_line() -> str:
    if os.geteuid() != 0:
        return ""
    import pwd
    import grp
    for user, group in (("www-data", "www-data"), ("nobody", "nogroup"), ("nobody", "nobody")):
        try:
            pwd.getpwnam(user)
            grp.getgrnam(group)
            return f"user {user} {group};\n"
        except KeyError:
            continue
    return "user root root;\n"


class Origin:
    """nginx serving the bodies on `port`, and with a certificate the same over TLS 1.3 on
    `tls_port` (the h1-up-tls scenario)."""

    def __init__(self, tmp: str, pin: Pinning, cert: dict | None) -> None:
        self.dir = os.path.join(tmp, "origin")
        os.makedirs(os.path.join(self.dir, "www"))
        os.makedirs(os.path.join(self.dir, "logs"))
        self.port, self.stub_port, tls_port = free_ports(3)
        self.tls_port = tls_port if cert else None
        self.pin = pin
        self.proc: subprocess.Popen | None = None
        for path, size in BODY_SIZES.items():
            with open(os.path.join(self.dir, "www", path.lstrip("/")), "wb") as f:
                f.write((b"0123456789abcdef" * (size // 16 + 1))[:size])
        affinity = (f"worker_cpu_affinity {Pinning.mask(pin.load_cpu)};\n" if pin.pinned else "")
        locations = f"""        location = / {{ default_type text/plain; return 200 "{BODY.decode()}"; }}
        location / {{ root {self.dir}/www; }}
"""
        tls_server = ""
        if cert:
            tls_server = f"""    server {{
        listen 127.0.0.1:{self.tls_port} ssl backlog=4096;
        ssl_certificate {cert['cert']};
        ssl_certificate_key {cert['key']};
        ssl_protocols TLSv1.3;
{locations}    }}
"""
        self.conf = os.path.join(self.dir, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(f"""# origin for the weir benchmark (generated)
{nginx_main_context(self.dir, affinity)}
http {{
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    open_file_cache max=16;
    keepalive_requests 100000000;
    keepalive_timeout {LONG_TIMEOUT_S}s;
    server {{
        listen 127.0.0.1:{self.port} backlog=4096;
{locations}    }}
{tls_server}    server {{
        listen 127.0.0.1:{self.stub_port};
        location / {{ stub_status; }}
    }}
}}
""")

    def start(self) -> None:
        self.proc = PROCS.start(self.pin.load() + ["nginx", "-e", f"{self.dir}/logs/error.log",
                                                   "-p", self.dir, "-c", self.conf],
                                os.path.join(self.dir, "logs", "stdout.log"))
        for port in (self.port, self.stub_port) + ((self.tls_port,) if self.tls_port else ()):
            if not wait_port(port, 15, self.proc):
                raise RuntimeError(f"the origin nginx did not start; see {self.dir}/logs/")
        for path, size in [("/", len(BODY))] + list(BODY_SIZES.items()):
            status, body = http_get(self.port, path)
            if status != 200 or len(body) != size:
                raise RuntimeError(f"origin: GET {path} gave {status} with {len(body)} bytes")
        if self.tls_port:
            status, body = http_get(self.tls_port, "/", tls=True)
            if status != 200 or body != BODY:
                raise RuntimeError(f"origin: GET / over TLS gave {status} with {len(body)} bytes")

    def accepts(self) -> int | None:
        return stub_accepts(self.stub_port)

    def stop(self) -> None:
        if self.proc is not None:
            PROCS.stop(self.proc, signal.SIGTERM)
            self.proc = None


class Proxy:
    """One running proxy with three listeners: h1 (plain HTTP/1.1), h2c (prior knowledge) and
    tls (TLS 1.3, ALPN h2 and http/1.1). The h2c listener of nginx speaks only HTTP/2."""

    name = ""

    def __init__(self, tmp: str, tag: str, origin: Origin, cert: dict | None, pin: Pinning,
                 weir_bin: str) -> None:
        self.dir = os.path.join(tmp, f"{self.name}-{tag}")
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.origin, self.cert, self.pin, self.weir_bin = origin, cert, pin, weir_bin
        self.ports = dict(zip(("h1", "h2c", "tls", "uptls"), free_ports(4)))
        self.proc: subprocess.Popen | None = None
        self.conf = self.write_config()

    def up_tls(self) -> bool:
        """Whether the proxy has the listener whose origin it reaches over TLS (uptls)."""
        return self.cert is not None and self.origin.tls_port is not None

    def pids(self) -> list[int]:
        assert self.proc is not None
        return [self.proc.pid] + children_of(self.proc.pid)

    def check(self) -> tuple[bool, str]:
        raise NotImplementedError

    def argv(self) -> list[str]:
        raise NotImplementedError

    def write_config(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        self.proc = PROCS.start(self.pin.proxy() + self.argv(),
                                os.path.join(self.dir, "logs", "stdout.log"))
        listeners = ["h1", "h2c"] + (["tls"] if self.cert else []) + (
            ["uptls"] if self.up_tls() else [])
        for l in listeners:
            if not wait_port(self.ports[l], 15, self.proc):
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"{self.name} did not listen on {self.ports[l]} ({l}): {tail}")
        # nginx forks its worker after it binds: wait for it.
        deadline = time.monotonic() + 10
        while self.name == "nginx" and len(self.pids()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)

    def log_tail(self) -> str:
        out = []
        for root, _, files in os.walk(os.path.join(self.dir, "logs")):
            for fn in files:
                try:
                    with open(os.path.join(root, fn), errors="replace") as f:
                        out.extend(f.read().splitlines()[-5:])
                except OSError:
                    pass
        return " | ".join(out) or "(no log output)"

    def stop(self) -> None:
        if self.proc is not None:
            PROCS.stop(self.proc, signal.SIGTERM)
            self.proc = None


class NginxProxy(Proxy):
    name = "nginx"

    def write_config(self) -> str:
        pin = self.pin
        affinity = (f"worker_cpu_affinity {Pinning.mask(pin.proxy_cpu)};\n" if pin.pinned else "")
        tls_listen = tls_conf = ""
        if self.cert:
            tls_listen = f"        listen 127.0.0.1:{self.ports['tls']} ssl http2 backlog=4096;\n"
            tls_conf = f"""    ssl_certificate {self.cert['cert']};
    ssl_certificate_key {self.cert['key']};
    ssl_protocols TLSv1.3;
    ssl_ecdh_curve X25519:prime256v1:secp384r1;
    ssl_session_tickets on;
"""
        common = f"""            # Without these two nginx speaks HTTP/1.0 upstream: one connection per request.
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # What weir and the HAProxy configuration send too.
            proxy_set_header Host $bench_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            # Never spool a response to disk (the others stream it).
            proxy_max_temp_file_size 0;
            proxy_read_timeout {LONG_TIMEOUT_S}s;
"""
        def upstream(name: str, port: int) -> str:
            return f"""    upstream {name} {{
        server 127.0.0.1:{port};
        keepalive {UPSTREAM_POOL};
        keepalive_requests 100000000;
        keepalive_timeout {LONG_TIMEOUT_S}s;
    }}
"""
        up_tls = ""
        if self.up_tls():
            up_tls = upstream("o_tls", self.origin.tls_port) + f"""    server {{
        listen 127.0.0.1:{self.ports['uptls']} backlog=4096;
        location / {{
            proxy_pass https://o_tls;
            proxy_ssl_protocols TLSv1.3;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate {self.cert['cert']};
            proxy_ssl_name localhost;
            proxy_ssl_server_name on;
            proxy_ssl_session_reuse on;
{common}        }}
    }}
"""
        path = os.path.join(self.dir, "nginx.conf")
        with open(path, "w") as f:
            f.write(f"""# nginx as the proxy under test (generated)
{nginx_main_context(self.dir, affinity)}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout {LONG_TIMEOUT_S}s;
    http2_max_concurrent_streams {H2_MAX_STREAMS};
    http2_body_preread_size {H2_INITIAL_WINDOW + 1};
    # The client's Host as sent (HTTP/1.0 without Host: the address, as weir does).
    map $http_host $bench_host {{ "" "127.0.0.1"; default $http_host; }}
{tls_conf}{upstream("o", self.origin.port)}    server {{
        listen 127.0.0.1:{self.ports['h1']} backlog=4096;
        listen 127.0.0.1:{self.ports['h2c']} http2 backlog=4096;
{tls_listen}        location / {{
            proxy_pass http://o;
{common}        }}
    }}
{up_tls}}}
""")
        return path

    def argv(self) -> list[str]:
        return ["nginx", "-e", f"{self.dir}/logs/error.log", "-p", self.dir, "-c", self.conf]

    def check(self) -> tuple[bool, str]:
        r = run(["nginx", "-t", "-e", f"{self.dir}/logs/error.log", "-p", self.dir, "-c",
                 self.conf], timeout=30)
        return r.returncode == 0, (r.stdout + r.stderr).strip()


class HaproxyProxy(Proxy):
    name = "haproxy"

    def write_config(self) -> str:
        pin = self.pin
        cpumap = f"    cpu-map 1/1 {pin.proxy_cpu}\n" if pin.pinned else ""
        # HAProxy wants about two descriptors per connection and sets its own limit from this.
        maxconn = max(1000, min(100000, (nofile() - 500) // 2))
        tls_bind = ""
        if self.cert:
            tls_bind = (f"    bind 127.0.0.1:{self.ports['tls']} ssl crt {self.cert['pem']} "
                        f"alpn h2,http/1.1 ssl-min-ver TLSv1.3 curves X25519:P-256:P-384\n")
        up_tls = ""
        if self.up_tls():
            up_tls = f"""
frontend bench_up_tls
    bind 127.0.0.1:{self.ports['uptls']}
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend origin_tls

backend origin_tls
    server o 127.0.0.1:{self.origin.tls_port} ssl verify required ca-file {self.cert['cert']} verifyhost localhost sni str(localhost) ssl-min-ver TLSv1.3 alpn http/1.1 pool-max-conn {UPSTREAM_POOL} pool-purge-delay {LONG_TIMEOUT_S}s
"""
        path = os.path.join(self.dir, "haproxy.cfg")
        with open(path, "w") as f:
            f.write(f"""# HAProxy as the proxy under test (generated)
global
    nbthread 1
{cpumap}    maxconn {maxconn}
    pidfile {self.dir}/haproxy.pid
    tune.h2.max-concurrent-streams {H2_MAX_STREAMS}
    tune.h2.initial-window-size {H2_INITIAL_WINDOW}
    # no log lines

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client {LONG_TIMEOUT_S}s
    timeout server {LONG_TIMEOUT_S}s
    timeout http-keep-alive {LONG_TIMEOUT_S}s
    timeout http-request 60s
    maxconn {maxconn}

frontend bench
    bind 127.0.0.1:{self.ports['h1']}
    bind 127.0.0.1:{self.ports['h2c']} proto h2
{tls_bind}    # What weir and the nginx configuration send too.
    option forwardfor
    http-request set-header X-Forwarded-Proto https if {{ ssl_fc }}
    http-request set-header X-Forwarded-Proto http if !{{ ssl_fc }}
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend origin

backend origin
    server o 127.0.0.1:{self.origin.port} pool-max-conn {UPSTREAM_POOL} pool-purge-delay {LONG_TIMEOUT_S}s
{up_tls}""")
        return path

    def argv(self) -> list[str]:
        return ["haproxy", "-db", "-f", self.conf]

    def check(self) -> tuple[bool, str]:
        r = run(["haproxy", "-c", "-f", self.conf], timeout=30)
        return r.returncode == 0, (r.stdout + r.stderr).strip()


class WeirProxy(Proxy):
    name = "weir"

    def write_config(self) -> str:
        tls = ""
        if self.cert:
            tls = (f'  {{ address = "127.0.0.1:{self.ports["tls"]}", tls = {{ cert = '
                   f'"{self.cert["cert"]}", key = "{self.cert["key"]}", min-version = "1.3", '
                   f'groups = "X25519:P-256:P-384", alpn = ["h2", "http/1.1"] }} }},\n')
        up_tls = ""
        if self.up_tls():
            up_tls = f"""
[upstreams.origin-tls]
discovery = {{ use = "static", targets = ["127.0.0.1:{self.origin.tls_port}"] }}
pool-size = {UPSTREAM_POOL}
idle-timeout = "{LONG_TIMEOUT_S}s"
tls = {{ ca-file = "{self.cert['cert']}", server-name = "localhost", min-version = "1.3" }}

[services.bench-up-tls]
listeners = [{{ address = "127.0.0.1:{self.ports['uptls']}" }}]
upstream = "origin-tls"

[services.bench-up-tls.limits]
keepalive-timeout = "{LONG_TIMEOUT_S}s"
"""
        path = os.path.join(self.dir, "weir.toml")
        with open(path, "w") as f:
            f.write(f"""# weir as the proxy under test (generated by tests/bench/bench.py)
[system]
workers = 1
shutdown-grace = "1s"

[log]
level = "warn"
access-log = false
output = "{self.dir}/logs/weir.log"

[upstreams.origin]
discovery = {{ use = "static", targets = ["127.0.0.1:{self.origin.port}"] }}
pool-size = {UPSTREAM_POOL}
idle-timeout = "{LONG_TIMEOUT_S}s"

[services.bench]
listeners = [
  {{ address = "127.0.0.1:{self.ports['h1']}" }},
  {{ address = "127.0.0.1:{self.ports['h2c']}", h2c = true }},
{tls}]
upstream = "origin"

[services.bench.limits]
keepalive-timeout = "{LONG_TIMEOUT_S}s"
h2-max-concurrent-streams = {H2_MAX_STREAMS}
h2-initial-window = {H2_INITIAL_WINDOW}
{up_tls}""")
        return path

    def argv(self) -> list[str]:
        return [self.weir_bin, "run", "-c", self.conf]

    def check(self) -> tuple[bool, str]:
        r = run([self.weir_bin, "check", "-c", self.conf], timeout=60)
        return r.returncode == 0, (r.stdout + r.stderr).strip()


PROXY_CLASSES = {"nginx": NginxProxy, "haproxy": HaproxyProxy, "weir": WeirProxy}


# ---------------------------------------------------------------------------------------------
# Load generators and their output


def parse_wrk(out: str) -> dict:
    r: dict = {"tool_ok": False}
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    if not m:
        return r
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[m.group(3)]
    r["requests"] = int(m.group(1))
    r["seconds"] = float(m.group(2)) * scale
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else r["requests"] / max(r["seconds"], 1e-9)
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        errors += sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        errors += int(m.group(1))
    r["errors"] = errors
    r["tool_ok"] = True
    return r


def parse_h2load(out: str) -> dict:
    r: dict = {"tool_ok": False}
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    m2 = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                   r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    if not m or not m2:
        return r
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    r["seconds"] = float(m.group(1)) * scale
    r["requests"] = int(m2.group(4))
    r["rps"] = r["requests"] / max(r["seconds"], 1e-9)
    errors = int(m2.group(5)) + int(m2.group(6)) + int(m2.group(7))
    m3 = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if m3:
        errors += int(m3.group(3)) + int(m3.group(4))
    r["errors"] = errors
    r["tool_ok"] = True
    return r


def latency_conns(rate: int, fixed: int) -> int:
    if fixed > 0:
        return fixed
    return max(LATENCY_MIN_CLIENTS, -(-int(rate * LATENCY_PERIOD_S * 1000) // 1000))


def percentile(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


class Bench:
    def __init__(self, args: argparse.Namespace, tools: dict, tmp: str, pin: Pinning) -> None:
        self.args, self.tools, self.tmp, self.pin = args, tools, tmp, pin
        self.runs: list[dict] = []
        self.notes: list[str] = []
        self.perf_ok = False

    # -- one measured window ------------------------------------------------------------------

    def measure(self, proxy: Proxy, load_argv: list[str] | None, timeout: float,
                parser, runner=None, steady_window: tuple[float, float] | None = None) -> dict:
        """Runs the load (load_argv, or runner()) against `proxy` and measures the proxy
        around it: CPU, syscalls, new upstream connections, new client connections."""
        origin = proxy.origin
        pids = proxy.pids()
        acc0 = origin.accepts()
        opens0 = passive_opens()
        cpu0 = cpu_ticks(pids)
        perf = None
        perf_out = os.path.join(self.tmp, "perf.out")
        if self.perf_ok:
            try:
                os.unlink(perf_out)
            except FileNotFoundError:
                pass
            perf = PROCS.start(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x", ",",
                                "-o", perf_out, "-p", ",".join(str(p) for p in pids)],
                               os.path.join(self.tmp, "perf.log"))
            time.sleep(0.3)  # let perf attach before the load starts
        t0 = time.monotonic()
        steady = None
        stub_fetches = 0  # stub_status requests inside the window: accepts of the origin too
        try:
            if runner is not None:
                res = runner()
            else:
                lp = subprocess.Popen(load_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)
                try:
                    # Upstream connections opened in the steady part of the run: from 1 s in
                    # to 0.5 s before the end (the load generator's start and stop excluded).
                    if steady_window and steady_window[1] > steady_window[0]:
                        time.sleep(max(0.0, t0 + steady_window[0] - time.monotonic()))
                        a = origin.accepts()
                        time.sleep(max(0.0, t0 + steady_window[1] - time.monotonic()))
                        b = origin.accepts()
                        stub_fetches += 2
                        if a is not None and b is not None and lp.poll() is None:
                            steady = b - a - 1
                    out, err = lp.communicate(timeout=max(1.0, timeout -
                                                          (time.monotonic() - t0)))
                finally:
                    if lp.poll() is None:  # timed out or interrupted: never leave it behind
                        lp.kill()
                        lp.communicate()
                res = parser(out)
                if not res.get("tool_ok"):
                    res["tool_output"] = (out + err)[-2000:]
        except subprocess.TimeoutExpired:
            res = {"tool_ok": False, "tool_output": f"timed out after {timeout:.0f} s"}
        wall = time.monotonic() - t0
        if steady is not None:
            res["upstream_conns_steady"] = steady
        syscalls = None
        if perf is not None:
            if perf.poll() is None:
                os.kill(perf.pid, signal.SIGINT)
            try:
                perf.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            PROCS.stop(perf)
            syscalls = self.read_perf(perf_out)
        cpu1 = cpu_ticks(pids)
        opens1 = passive_opens()
        acc1 = origin.accepts()
        res["wall"] = wall
        req = res.get("requests") or 0
        tick_us = 1e6 / CLK_TCK
        if cpu0 is None or cpu1 is None or proxy.proc is None or proxy.proc.poll() is not None:
            res.update({"void": True, "errors": res.get("errors", 0) or 1,
                        "error": f"{proxy.name} exited during the run"})
            return res
        res["cpu_user_ticks"] = cpu1[0] - cpu0[0]
        res["cpu_sys_ticks"] = cpu1[1] - cpu0[1]
        res["cpu_busy_pct"] = ((cpu1[0] - cpu0[0] + cpu1[1] - cpu0[1]) / CLK_TCK
                               / max(wall, 1e-9) * 100)
        if req > 0:
            res["cpu_user_us"] = (cpu1[0] - cpu0[0]) * tick_us / req
            res["cpu_sys_us"] = (cpu1[1] - cpu0[1]) * tick_us / req
            res["cpu_us"] = res["cpu_user_us"] + res["cpu_sys_us"]
            if syscalls is not None:
                res["syscalls"] = syscalls / req
        if acc0 is not None and acc1 is not None:
            # Every stub_status request after the first is one accept of the origin too.
            res["upstream_conns"] = acc1 - acc0 - 1 - stub_fetches
            res["client_conns"] = opens1 - opens0 - res["upstream_conns"]
            if req > 0:
                res["client_conns_per_req"] = res["client_conns"] / req
        if not res.get("tool_ok"):
            res["errors"] = res.get("errors", 0) or 1
            res["void"] = True
        else:
            res["void"] = res.get("errors", 0) > 0 or req == 0
        return res

    @staticmethod
    def read_perf(path: str) -> int | None:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        total, seen = 0, False
        for line in lines:
            parts = line.split(",")
            if len(parts) >= 3 and "raw_syscalls:sys_enter" in parts[2]:
                seen = True
                if parts[0].strip().isdigit():
                    total += int(parts[0])
        return total if seen else None

    # -- the load of each scenario ------------------------------------------------------------

    def url(self, proxy: Proxy, sc: Scenario) -> str:
        scheme = "https" if sc.listener == "tls" else "http"
        return f"{scheme}://127.0.0.1:{proxy.ports[sc.listener]}{sc.path}"

    def load(self, proxy: Proxy, sc: Scenario, dur: int, rate: int | None = None) -> dict:
        url = self.url(proxy, sc)
        slack = dur + 30
        L = self.pin.load()
        if sc.kind == "wrk":
            argv = L + ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{dur}s", "--latency",
                        "--timeout", "10s", url]
            return self.measure(proxy, argv, slack, parse_wrk, steady_window=(1.0, dur - 0.5))
        if sc.kind == "wrk-close":
            argv = L + ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{dur}s", "--timeout", "10s",
                        "-H", "Connection: close", url]
            return self.measure(proxy, argv, slack, parse_wrk)
        if sc.kind == "h2load":
            argv = L + ["h2load", "-c", str(H2_CLIENTS), "-m", str(H2_STREAMS), "-D", str(dur),
                        url]
            return self.measure(proxy, argv, slack, parse_h2load, steady_window=(1.0, dur - 0.5))
        if sc.kind == "latency":
            assert rate is not None
            logf = os.path.join(self.tmp, "h2load-latency.log")
            conns = latency_conns(rate, self.args.latency_conns)
            argv = L + ["h2load", "--h1", "-c", str(conns), "-m", "1",
                        "--rps", f"{rate / conns:g}", "-D", str(dur),
                        "--log-file", logf, url]

            def parse(out: str) -> dict:
                r = parse_h2load(out)
                try:
                    with open(logf) as f:
                        lat = sorted(int(l.split("\t")[2]) / 1000.0 for l in f if l.strip())
                except (OSError, IndexError, ValueError):
                    lat = []
                if lat:
                    r["p50_ms"] = percentile(lat, 0.50)
                    r["p99_ms"] = percentile(lat, 0.99)
                    r["p999_ms"] = percentile(lat, 0.999)
                else:
                    r["tool_ok"] = False
                return r
            if os.path.exists(logf):
                os.unlink(logf)
            res = self.measure(proxy, argv, slack, parse)
            res["rate"] = rate
            res["achieved_rps"] = res.get("rps")
            # Below the target rate the percentiles are not those of the rate asked for.
            if res.get("rps") is not None and res["rps"] < 0.95 * rate:
                res["void"] = True
                res["below_rate"] = True
            return res
        if sc.kind == "handshake":
            return self.measure(proxy, None, slack, None,
                                runner=lambda: self.handshakes(proxy, dur))
        raise ValueError(sc.kind)

    def handshakes(self, proxy: Proxy, dur: int) -> dict:
        """HANDSHAKE_CLIENTS `openssl s_time -new` loops: each connection is a full TLS 1.3
        handshake (no session is offered), one HTTP/1.0 GET, and a close."""
        procs = []
        outs = []
        t0 = time.monotonic()
        try:
            for i in range(HANDSHAKE_CLIENTS):
                fn = os.path.join(self.tmp, f"s_time.{i}.out")
                outs.append(fn)
                procs.append(PROCS.start(
                    self.pin.load() + ["openssl", "s_time", "-connect",
                                       f"127.0.0.1:{proxy.ports['tls']}", "-new", "-www", "/",
                                       "-time", str(dur)], fn))
            deadline = time.monotonic() + dur + 30
            for p in procs:
                try:
                    p.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        finally:
            for p in procs:
                PROCS.stop(p, signal.SIGKILL, grace=1)
        wall = time.monotonic() - t0
        total, errors, bytes_per = 0, 0, []
        for p, fn in zip(procs, outs):
            with open(fn, errors="replace") as f:
                text = f.read()
            os.unlink(fn)
            m = re.search(r"(\d+) connections in ([\d.]+)s;", text)
            m2 = re.search(r"(\d+) bytes read per connection", text)
            if not m or p.returncode != 0 or "ERROR" in text:
                errors += 1
            if m:
                total += int(m.group(1))
            if m2:
                bytes_per.append(int(m2.group(1)))
        # A connection that got no complete answer shows as a short read.
        if bytes_per and min(bytes_per) < len(BODY) + 20:
            errors += 1
        return {"tool_ok": total > 0, "requests": total, "seconds": wall,
                "rps": total / max(wall, 1e-9), "errors": errors,
                "bytes_per_conn": min(bytes_per) if bytes_per else 0}

    # -- idle memory --------------------------------------------------------------------------

    def idle_memory(self, proxy: Proxy, n: int, sc: Scenario) -> dict:
        """A fresh `proxy` (already started): N keep-alive connections, each after one complete
        request and response; (RSS with them - RSS before) / N. Over TLS (HTTP/1.1 or HTTP/2,
        by the scenario) the connections are opened one at a time."""
        pids = proxy.pids()
        tls = sc.listener == "tls"
        port = proxy.ports["tls" if tls else "h1"]
        for _ in range(3):  # first requests: upstream connection, lazily set-up state
            http_get(port, tls=tls)
        time.sleep(0.5)
        before = rss_bytes(pids)
        deadline = time.monotonic() + 120
        if tls:
            socks, ok, failed = self.open_idle_tls(port, n, sc.name == "idle-memory-h2", deadline)
        else:
            socks, ok, failed = self.open_idle(port, n, deadline=deadline)
        try:
            time.sleep(1.0)
            after = rss_bytes(pids)
            alive = proxy.proc is not None and proxy.proc.poll() is None
        finally:
            for s in socks:
                s.close()
        res = {"tool_ok": alive and ok > 0, "requests": ok, "errors": failed + (n - ok - failed),
               "rss_before": before, "rss_after": after}
        if ok > 0:
            res["kib_per_conn"] = (after - before) / ok / 1024
        res["void"] = res["errors"] > 0 or not res["tool_ok"]
        return res

    @staticmethod
    def open_idle_tls(port: int, n: int, h2: bool, deadline: float) -> tuple[list, int, int]:
        """N TLS connections, each after one request and its whole response: HTTP/1.1, or
        HTTP/2 (ALPN h2; frames written by hand, the response's DATA read to END_STREAM)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(["h2"] if h2 else ["http/1.1"])
        idle: list = []
        ok = failed = 0
        for _ in range(n):
            if time.monotonic() >= deadline:
                break
            try:
                s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10))
                good = h2_exchange(s) if h2 else h1_exchange(s)
            except OSError:
                good, s = False, None
            if good:
                ok += 1
                idle.append(s)
            else:
                failed += 1
                if s is not None:
                    s.close()
        return idle, ok, failed

    @staticmethod
    def open_idle(port: int, n: int, deadline: float) -> tuple[list, int, int]:
        req = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        sel = selectors.DefaultSelector()
        idle: list[socket.socket] = []
        started = ok = failed = 0
        inflight = 0

        def finish(s: socket.socket, good: bool) -> None:
            nonlocal ok, failed, inflight
            sel.unregister(s)
            inflight -= 1
            if good:
                ok += 1
                idle.append(s)
            else:
                failed += 1
                s.close()

        try:
            while ok + failed < n and time.monotonic() < deadline:
                while started < n and inflight < 128:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.setblocking(False)
                    s.connect_ex(("127.0.0.1", port))
                    sel.register(s, selectors.EVENT_WRITE, {"buf": b"", "sent": False})
                    started += 1
                    inflight += 1
                for key, _ in sel.select(timeout=0.5):
                    s, st = key.fileobj, key.data
                    if not st["sent"]:
                        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                            finish(s, False)
                            continue
                        try:
                            s.send(req)
                        except OSError:
                            finish(s, False)
                            continue
                        st["sent"] = True
                        sel.modify(s, selectors.EVENT_READ, st)
                        continue
                    try:
                        chunk = s.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        finish(s, False)
                        continue
                    if not chunk:
                        finish(s, False)
                        continue
                    st["buf"] += chunk
                    head, sep, body = st["buf"].partition(b"\r\n\r\n")
                    if not sep:
                        continue
                    if not head.startswith(b"HTTP/1.1 200"):
                        finish(s, False)
                        continue
                    m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                    if m and len(body) >= int(m.group(1)):
                        finish(s, True)
                    elif not m and body.endswith(b"0\r\n\r\n"):
                        finish(s, True)
        finally:
            for key in list(sel.get_map().values()):
                key.fileobj.close()
            sel.close()
        return idle, ok, failed


# ---------------------------------------------------------------------------------------------
# Statistics and output


def fmt(v: float | None, digits: int | None = None) -> str:
    if v is None or v != v:
        return "n/a"
    if digits is None:
        a = abs(v)
        digits = 0 if a >= 1000 else 1 if a >= 100 else 2 if a >= 1 else 3
    return f"{v:,.{digits}f}"


def summarise(values: list[float]) -> tuple[float, float, float] | None:
    vals = [v for v in values if v is not None and v == v]
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def cell(stats, digits, void: int, total: int) -> str:
    if stats is None:
        text = "n/a"
    else:
        med, lo, hi = stats
        text = f"{fmt(med, digits)} ({fmt(lo, digits)}–{fmt(hi, digits)})"
    if void:
        text += f" [void {void}/{total}]"
    return text


def ratio(a, b) -> str:
    if a is None or b is None or not b[0]:
        return "–"
    return f"{a[0] / b[0]:.2f}"


def table(title: str, rows: list[tuple[str, str, list[str], str, str]], proxies: list[str]) -> str:
    head = ["scenario", "metric"] + proxies
    if "weir" in proxies:
        if "nginx" in proxies:
            head.append("weir/nginx")
        if "haproxy" in proxies:
            head.append("weir/haproxy")
    out = [f"### {title}", "", "| " + " | ".join(head) + " |",
           "|" + "|".join(["---"] * 2 + ["--:"] * (len(head) - 2)) + "|"]
    for scen, metric, cells, r_n, r_h in rows:
        line = [scen, metric] + cells
        if "weir" in proxies:
            if "nginx" in proxies:
                line.append(r_n)
            if "haproxy" in proxies:
                line.append(r_h)
        out.append("| " + " | ".join(line) + " |")
    return "\n".join(out) + "\n"


GROUPS = [
    ("Throughput (higher is better; proxy CPU % well below 100 means the load generator, not "
     "the proxy, was the limit)", [("rps", "req/s", 0), ("cpu_busy_pct", "proxy CPU %", 0)]),
    ("Proxy CPU per request, µs (lower is better)",
     [("cpu_user_us", "user µs/req", 2), ("cpu_sys_us", "sys µs/req", 2),
      ("cpu_us", "total µs/req", 2)]),
    ("Syscalls per request (lower is better)", [("syscalls", "syscalls/req", 2)]),
    ("New upstream connections (lower is better): whole run, and the steady part only (from "
     "1 s after the start to 0.5 s before the end)",
     [("upstream_conns", "whole run", 0), ("upstream_conns_steady", "steady part", 0)]),
]


ALL_RUNS_KEYS = {"achieved_rps"}
NO_RATIO_KEYS = {"cpu_busy_pct", "achieved_rps"}


def report(bench: Bench, scenarios: list[Scenario], proxies: list[str]) -> str:
    runs = bench.runs
    out = []

    def rows_for(scen_label: str, sel, metrics) -> list:
        rows = []
        for key, label, digits in metrics:
            stats = {}
            cells = []
            for p in proxies:
                rs = [r for r in runs if sel(r) and r["proxy"] == p]
                # What was achieved is shown for every run, void or not.
                good = rs if key in ALL_RUNS_KEYS else [r for r in rs if not r["void"]]
                stats[p] = summarise([r.get(key) for r in good])
                cells.append(cell(stats[p], digits, len(rs) - len(good), len(rs))
                             if rs else "skipped")
            if all(c == "skipped" for c in cells):
                continue
            if key in NO_RATIO_KEYS:
                rows.append((scen_label, label, cells, "", ""))
                continue
            rows.append((scen_label, label, cells, ratio(stats.get("weir"), stats.get("nginx")),
                         ratio(stats.get("weir"), stats.get("haproxy"))))
        return rows

    load_scens = [s for s in scenarios if s.kind not in ("latency", "idle")]
    for title, metrics in GROUPS:
        rows = []
        for s in load_scens:
            if metrics[0][0] == "syscalls" and not bench.perf_ok:
                rows.append((s.name, "syscalls/req", ["n/a"] * len(proxies), "–", "–"))
                continue
            ms = metrics
            if s.kind in ("handshake", "wrk-close"):
                ms = [(k, "handshakes/s" if k == "rps" else l.replace("/req", "/handshake"), d)
                      for k, l, d in metrics]
            rows += rows_for(s.name, lambda r, s=s: r["scenario"] == s.name, ms)
        if rows:
            out.append(table(title, rows, proxies))

    # Client connections per request where one connection per request is the point.
    rows = []
    for s in load_scens:
        if s.kind in ("handshake", "wrk-close"):
            rows += rows_for(s.name, lambda r, s=s: r["scenario"] == s.name,
                             [("client_conns_per_req", "client conns/req", 3)])
    if rows:
        out.append(table("Client connections per request (TCP PassiveOpens delta; 1.0 = one "
                         "handshake per request)", rows, proxies))

    # Errors: totals, every run with an error is void.
    rows = []
    for s in scenarios:
        sel_runs = [r for r in runs if r["scenario"] == s.name]
        if not sel_runs:
            continue
        cells = []
        for p in proxies:
            rs = [r for r in sel_runs if r["proxy"] == p]
            if not rs:
                cells.append("skipped")
                continue
            cells.append(f"{sum(r.get('errors', 0) for r in rs):,} in {len(rs)} runs"
                         f" ({sum(1 for r in rs if r['void'])} void)")
        rows.append((s.name, "errors", cells, "", ""))
    if rows:
        out.append(table("Errors (socket errors, non-2xx, failed/errored; a run with any is void "
                         "and left out of the medians)", rows, proxies))

    lat_rates = sorted({r["rate"] for r in runs if r["scenario"] == "latency"})
    rows = []
    for rate in lat_rates:
        rows += rows_for(f"latency @ {rate:,} req/s, "
                         f"{latency_conns(rate, bench.args.latency_conns)} conns",
                         lambda r, rate=rate: r["scenario"] == "latency" and r["rate"] == rate,
                         [("p50_ms", "p50 ms", 3), ("p99_ms", "p99 ms", 3),
                          ("p999_ms", "p99.9 ms", 3), ("achieved_rps", "achieved req/s", 0),
                          ("cpu_us", "CPU µs/req", 2)])
    if rows:
        out.append(table("Latency at fixed rates, HTTP/1.1 keep-alive (lower is better; a run "
                         "that fell more than 5% short of its rate is void)", rows, proxies))

    for rate in lat_rates:
        for p in proxies:
            rs = [r for r in runs if r["scenario"] == "latency" and r.get("rate") == rate
                  and r["proxy"] == p]
            short = [r for r in rs if r.get("below_rate")]
            if short:
                bench.notes.append(
                    f"latency @ {rate:,} req/s, {p}: {len(short)} of {len(rs)} runs reached only "
                    + ", ".join(fmt(r.get("rps"), 0) for r in short)
                    + " req/s (void: the percentiles would not be those of the rate asked for)")

    for name, what in (("idle-memory", "keep-alive client connection"),
                       ("idle-memory-tls", "HTTP/1.1-over-TLS client connection"),
                       ("idle-memory-h2", "HTTP/2-over-TLS client connection")):
        rows = rows_for(name, lambda r, name=name: r["scenario"] == name,
                        [("kib_per_conn", "KiB/conn", 2)])
        if rows:
            out.append(table(f"Memory per idle {what} (lower is better)", rows, proxies))
    return "\n".join(out)


def version_of(argv: list[str]) -> str:
    try:
        r = run(argv, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not found"
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0].strip() if text else "unknown"


def binary_time(path: str) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(os.stat(path).st_mtime))
    except OSError:
        return "unknown time"


def machine_header(args, tools: dict, pin: Pinning, command: str) -> str:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg()
    vers = {
        "weir": f"{version_of([args.weir, '--version'])}; binary "
                f"{os.path.relpath(args.weir_src, REPO)} of {binary_time(args.weir_src)}, CMake "
                f"build type {build_type(args.weir_src)}",
        "nginx": version_of(["nginx", "-v"]) if tools.get("nginx") else "not found",
        "haproxy": version_of(["haproxy", "-v"]) if tools.get("haproxy") else "not found",
        "wrk": version_of(["wrk", "-v"]) if tools.get("wrk") else "not found",
        "h2load": version_of(["h2load", "--version"]) if tools.get("h2load") else "not found",
        "openssl": version_of(["openssl", "version"]) if tools.get("openssl") else "not found",
        "perf": version_of(["perf", "--version"]) if tools.get("perf") else "not found",
    }
    lines = [
        f"- command: `{command}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M %Z')}",
        f"- CPU: {cpu}; {pin.usable} CPUs usable ({os.cpu_count()} online); "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        f"- kernel: {platform.release()}",
        f"- pinning: {pin.describe()}",
        f"- repetitions: {args.reps} × {args.duration} s per proxy and scenario, interleaved, "
        f"after a {args.warmup} s warm-up each; cells are median (min–max)",
    ]
    lines += [f"- {k}: {v}" for k, v in vers.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Main


def snapshot_weir(weir: str, tmp: str) -> str | None:
    """Hard links (copies on another file system) of the weir binary and of the plugin directory
    beside it (<bindir>/../lib*/weir/plugins, where weir looks by default), so that a rebuild
    while the benchmark runs does not change what is measured. The path of the snapshot's
    binary, or None when there is no plugin directory beside the binary."""
    src = os.path.realpath(weir)
    root = os.path.dirname(os.path.dirname(src))
    plugin_dirs = sorted(glob.glob(os.path.join(root, "lib*", "weir", "plugins")))
    if not plugin_dirs:
        return None
    dst_root = os.path.join(tmp, "weir-build")
    dst_plugins = os.path.join(dst_root, os.path.relpath(plugin_dirs[0], root))
    os.makedirs(os.path.join(dst_root, "bin"))
    os.makedirs(dst_plugins)

    def place(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    dst = os.path.join(dst_root, "bin", "weir")
    place(src, dst)
    for name in os.listdir(plugin_dirs[0]):
        if name.endswith(".so"):
            place(os.path.join(plugin_dirs[0], name), os.path.join(dst_plugins, name))
    return dst


def find_tools() -> dict:
    return {t: shutil.which(t) is not None for t in PACKAGES}


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def default_weir() -> str:
    env = os.environ.get("WEIR_BIN")
    if env:
        return env
    for cand in ("build/release/bin/weir", "build/ci/bin/weir"):
        p = os.path.join(REPO, cand)
        if os.access(p, os.X_OK):
            return p
    return os.path.join(REPO, "build/ci/bin/weir")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Benchmark weir against nginx and HAProxy (see docs/performance.md).")
    ap.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                    help="comma-separated list (default: all): "
                         + ", ".join(s.name for s in SCENARIOS))
    ap.add_argument("--proxies", default=",".join(PROXIES),
                    help="comma-separated subset of nginx,haproxy,weir (default: all)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per proxy (default 5)")
    ap.add_argument("--duration", type=int, default=None,
                    help="seconds per measured run (default 10)")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up seconds per proxy (default 2)")
    ap.add_argument("--rates", default="5000,10000",
                    help="total req/s of the latency scenario (default 5000,10000); half of "
                         "nginx's h1 rate is added when h1 ran for nginx")
    ap.add_argument("--latency-conns", type=int, default=0,
                    help="connections of the latency scenario (default 0: one per "
                         f"{1 / LATENCY_PERIOD_S:g} req/s of the rate, at least "
                         f"{LATENCY_MIN_CLIENTS})")
    ap.add_argument("--idle-conns", type=int, default=None,
                    help="connections of the idle-memory scenario (default 8000)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 repetitions of 3 s, 2000 idle connections")
    ap.add_argument("--json", metavar="FILE", help="also write every run's raw results here")
    ap.add_argument("--weir", default=default_weir(),
                    help="weir binary (default build/release/bin/weir if present, else "
                         "build/ci/bin/weir)")
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temporary directory (configurations, logs)")
    args = ap.parse_args(argv)
    args.reps = args.reps or (2 if args.quick else 5)
    args.duration = args.duration or (3 if args.quick else 10)
    args.idle_conns = args.idle_conns or (2000 if args.quick else 8000)
    args.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    # Always in the order nginx, haproxy, weir (the columns and the interleaving).
    wanted = {p.strip() for p in args.proxies.split(",") if p.strip()}
    args.proxies = [p for p in PROXIES if p in wanted] + sorted(wanted - set(PROXIES))
    args.rates = [int(r) for r in args.rates.split(",") if r.strip()]
    for s in args.scenarios:
        if s not in BY_NAME:
            ap.error(f"unknown scenario {s!r} (known: {', '.join(BY_NAME)})")
    for p in args.proxies:
        if p not in PROXIES:
            ap.error(f"unknown proxy {p!r} (known: {', '.join(PROXIES)})")
    if args.reps < 1 or args.duration < 1 or args.idle_conns < 1:
        ap.error("--reps, --duration and --idle-conns must be at least 1")
    return args


def on_signal(signum, frame):
    raise Interrupted(f"signal {signum}")


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    command = os.environ.get("WEIR_BENCH_COMMAND") or (
        "python3 tests/bench/bench.py " + " ".join(shlex.quote(a) for a in argv)).strip()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    tools = find_tools()
    if not tools["nginx"]:
        log("nginx is not installed (Debian package: nginx). It is the origin of every "
            "scenario, so nothing can run: apt-get install nginx")
        return 2
    proxies = []
    for p in args.proxies:
        if p == "weir":
            if not os.access(args.weir, os.X_OK):
                log(f"weir: no executable at {args.weir}: build it (tools/build.sh) or pass "
                    f"--weir PATH; weir skipped")
                continue
        elif not tools[p]:
            log(f"{p}: not installed (Debian package: {PACKAGES[p]}); {p} skipped")
            continue
        proxies.append(p)
    if not proxies:
        log("no proxy left to measure")
        return 2
    scenarios = []
    for name in args.scenarios:
        sc = BY_NAME[name]
        missing = [t for t in sc.tools if not tools[t]]
        if missing:
            log(f"scenario {name} skipped: " + ", ".join(
                f"{t} is not installed (Debian package: {PACKAGES[t]})" for t in missing))
            continue
        scenarios.append(sc)
    if not tools["perf"]:
        log("perf is not installed (Debian package: linux-perf): syscalls per request will be "
            "n/a")

    fd_limit = raise_nofile()
    # HAProxy's maxconn is about half the limit (see HaproxyProxy); stay below it.
    most = max(100, min(100000, (fd_limit - 500) // 2) - 100)
    if args.idle_conns > most:
        log(f"RLIMIT_NOFILE is {fd_limit}: idle connections lowered from {args.idle_conns} to "
            f"{most}")
        args.idle_conns = most

    pin = Pinning()
    if pin.pinned:
        os.sched_setaffinity(0, {pin.load_cpu})
    else:
        log("running unpinned: " + pin.describe())

    def binary_id(path: str):
        try:
            st = os.stat(path)
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        except OSError:
            return None
    weir_id = binary_id(args.weir)

    tmp = tempfile.mkdtemp(prefix="weir-bench-")
    os.chmod(tmp, 0o755)  # nginx workers (www-data) read the origin's files
    args.weir_src = args.weir
    if "weir" in proxies:
        try:
            snap = snapshot_weir(args.weir, tmp)
        except OSError as e:
            snap = None
            log(f"could not snapshot {args.weir} ({e}): running it in place")
        if snap:
            args.weir = snap
            weir_id = None  # a rebuild cannot reach the snapshot
    bench = Bench(args, tools, tmp, pin)
    started = time.monotonic()
    header = machine_header(args, tools, pin, command)
    running: dict[str, Proxy] = {}
    interrupted = False
    try:
        cert = make_cert(tmp) if tools["openssl"] else None
        if cert is None:
            log("openssl is not installed (Debian package: openssl): TLS scenarios skipped")
        if tools["perf"]:
            r = run(["perf", "stat", "-e", "raw_syscalls:sys_enter", "-x", ",", "--", "true"],
                    timeout=30)
            bench.perf_ok = r.returncode == 0 and "raw_syscalls" in r.stderr
            if not bench.perf_ok:
                log("perf cannot count raw_syscalls:sys_enter here "
                    f"({(r.stderr.strip().splitlines() or ['?'])[-1]}): syscalls will be n/a")

        origin = Origin(tmp, pin, cert)
        origin.start()
        log(f"origin nginx on 127.0.0.1:{origin.port} (stub_status on {origin.stub_port})")

        # Smoke step: every configuration is validated, every proxy answers on each listener.
        ok_proto: dict[str, set] = {}
        for p in list(proxies):
            px = PROXY_CLASSES[p](tmp, "main", origin, cert, pin, args.weir)
            good, msg = px.check()
            if not good:
                log(f"{p}: its configuration {px.conf} does not validate; {p} skipped:\n{msg}")
                proxies.remove(p)
                continue
            try:
                px.start()
            except RuntimeError as e:
                log(f"{p}: {e}; {p} skipped")
                proxies.remove(p)
                continue
            running[p] = px
            ok_proto[p] = smoke(px, cert is not None, tools)
            log(f"{p}: pids {px.pids()}, listeners {px.ports}, conf {px.conf}; "
                f"smoke ok: {sorted(ok_proto[p])}")
        if not proxies:
            log("no proxy passed the smoke step")
            return 1

        nginx_h1 = None
        for sc in scenarios:
            if sc.kind == "idle":
                if sc.listener == "tls" and cert is None:
                    continue
                run_idle(bench, sc, proxies, tmp, origin, cert, pin, args)
                continue
            need = NEEDS[sc.name]
            if sc.listener in ("tls", "uptls") and cert is None:
                continue
            active = []
            for p in proxies:
                if need in ok_proto[p]:
                    active.append(p)
                else:
                    log(f"{sc.name}: {p} skipped (it failed the smoke check for {need})")
            if not active:
                continue
            if sc.kind == "latency":
                rates = list(args.rates)
                if nginx_h1:
                    half = int(round(nginx_h1 / 2, -2))
                    rates.append(half)
                    bench.notes.append(f"latency @ {half:,} req/s is half of nginx's median h1 "
                                       f"rate ({nginx_h1:,.0f} req/s) in this invocation")
                for rate in sorted(set(rates)):
                    run_interleaved(bench, sc, active, running, args, rate)
            else:
                run_interleaved(bench, sc, active, running, args, None)
            if sc.name == "h1":
                rs = [r["rps"] for r in bench.runs
                      if r["scenario"] == "h1" and r["proxy"] == "nginx" and not r["void"]]
                if rs:
                    nginx_h1 = statistics.median(rs)
    except (KeyboardInterrupt, Interrupted):
        interrupted = True
        log("interrupted: stopping every process this run started")
    except (RuntimeError, OSError) as e:
        log(f"error: {e}")
        return 1
    finally:
        # A second Ctrl-C must not cut the clean-up short.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        for px in running.values():
            px.stop()
        PROCS.stop_all()
        if args.keep_tmp:
            log(f"temporary directory kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if "weir" in proxies and weir_id is not None and binary_id(args.weir) != weir_id:
        msg = (f"{args.weir} changed while the benchmark ran (rebuilt?): processes started after "
               f"the change ran the new binary, so these results may mix two builds")
        log("warning: " + msg)
        bench.notes.append("**" + msg + "**")
    text = ["## weir vs nginx vs HAProxy" + (" (INTERRUPTED, partial)" if interrupted else ""),
            "", header]
    if args.quick:
        text.insert(2, "**Quick smoke run (`--quick`): too short to be more than a sanity "
                       "check.**\n")
    text.append("Scenarios:\n\n" + "\n".join(f"- `{s.name}`: {s.title}" for s in scenarios)
                + "\n")
    text.append(report(bench, scenarios, proxies))
    if bench.notes:
        text.append("Notes:\n\n" + "\n".join(f"- {n}" for n in bench.notes) + "\n")
    text.append(f"Total time: {time.monotonic() - started:.0f} s.\n")
    print("\n".join(text))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "header": header, "proxies": proxies,
                       "scenarios": [s.name for s in scenarios], "runs": bench.runs,
                       "notes": bench.notes}, f, indent=1)
        log(f"raw results written to {args.json}")
    return 130 if interrupted else 0


def smoke(px: Proxy, tls: bool, tools: dict) -> set:
    """What a running proxy serves correctly: a set of h1, h2c, h2-tls, h1-tls and h1.0-tls
    (HTTP/1.0 without Host over TLS, what `openssl s_time -www` sends)."""
    ok = set()
    try:
        good = True
        for path, size in [("/", len(BODY))] + list(BODY_SIZES.items()):
            status, body = http_get(px.ports["h1"], path)
            if status != 200 or len(body) != size:
                log(f"{px.name}: smoke GET {path} over HTTP/1.1 gave {status}, "
                    f"{len(body)} bytes")
                good = False
        if good:
            ok.add("h1")
    except OSError as e:
        log(f"{px.name}: smoke HTTP/1.1 failed: {e}")
    if tools["h2load"]:
        for proto, scheme in (("h2c", "http"), ("h2-tls", "https")):
            if proto == "h2-tls" and not tls:
                continue
            port = px.ports["h2c" if proto == "h2c" else "tls"]
            try:
                r = run(["h2load", "-n", "8", "-c", "1", "-m", "4",
                         f"{scheme}://127.0.0.1:{port}/"], timeout=30)
                out = r.stdout
            except subprocess.TimeoutExpired:
                out = "timed out"
            res = parse_h2load(out)
            if (res.get("tool_ok") and res["requests"] == 8 and res["errors"] == 0
                    and (proto == "h2c" or "Application protocol: h2" in out)):
                ok.add(proto)
            else:
                log(f"{px.name}: smoke h2load over {proto} failed:\n{out[-800:]}")
    if px.up_tls():
        try:
            status, body = http_get(px.ports["uptls"])
            if status == 200 and body == BODY:
                ok.add("h1-up-tls")
            else:
                log(f"{px.name}: smoke h1-up-tls gave {status} with {len(body)} bytes")
        except OSError as e:
            log(f"{px.name}: smoke h1-up-tls failed: {e}")
    if tls:
        for key, http10 in (("h1-tls", False), ("h1.0-tls", True)):
            try:
                status, body = http_get(px.ports["tls"], tls=True, http10=http10)
            except (OSError, ssl.SSLError) as e:
                log(f"{px.name}: smoke {key} failed: {e}")
                continue
            if status == 200 and body == BODY:
                ok.add(key)
            else:
                log(f"{px.name}: smoke {key} gave {status} with {len(body)} bytes"
                    + (" (the tls-handshake scenario, openssl s_time, sends HTTP/1.0 without "
                       "Host)" if http10 else ""))
    return ok


NEEDS = {"h1": "h1", "h1-1k": "h1", "h1-16k": "h1", "h1-256k": "h1", "h2c": "h2c",
         "h2-tls": "h2-tls", "h1-tls": "h1-tls", "tls-handshake": "h1.0-tls",
         "tls-resume": "h1-tls", "latency": "h1", "h1-up-tls": "h1-up-tls"}


def run_interleaved(bench: Bench, sc: Scenario, proxies: list[str], running: dict,
                    args, rate: int | None) -> None:
    label = sc.name + (f" @ {rate} req/s" if rate else "")

    def alive(p: str) -> bool:
        px = running[p]
        if px.proc is not None and px.proc.poll() is None:
            return True
        code = px.proc.returncode if px.proc is not None else None
        msg = (f"{p} was not running before {label} (exit status {code}); restarted. "
               f"Last log lines: {px.log_tail()}")
        log(msg)
        bench.notes.append(msg)
        px.proc = None
        try:
            px.start()
        except RuntimeError as e:
            log(f"{p}: restart failed: {e}")
            return False
        return True

    for p in proxies:
        if not alive(p):
            continue
        r = bench.load(running[p], sc, args.warmup, rate)
        log(f"{label}: {p} warm-up {fmt(r.get('rps'), 0)} req/s, errors {r.get('errors')}")
    for rep in range(args.reps):
        for p in proxies:
            if not alive(p):
                continue
            r = bench.load(running[p], sc, args.duration, rate)
            r.update({"scenario": sc.name, "proxy": p, "rep": rep})
            bench.runs.append(r)
            extra = ""
            if "p99_ms" in r:
                extra = f", p50 {fmt(r['p50_ms'], 3)} ms, p99 {fmt(r['p99_ms'], 3)} ms"
            log(f"{label} [{rep + 1}/{args.reps}] {p}: {fmt(r.get('rps'), 0)} req/s, "
                f"cpu {fmt(r.get('cpu_user_us'), 2)}+{fmt(r.get('cpu_sys_us'), 2)} µs/req, "
                f"syscalls/req {fmt(r.get('syscalls'), 2)}, upstream conns "
                f"{r.get('upstream_conns')} (steady part {r.get('upstream_conns_steady', '-')}), "
                f"proxy CPU {fmt(r.get('cpu_busy_pct'), 0)}%, errors {r.get('errors')}{extra}"
                + (" VOID" if r["void"] else "")
                + (f" ({r['error']})" if r.get("error") else "")
                + (f"\n{r['tool_output']}" if r.get("tool_output") else ""))


def run_idle(bench: Bench, sc: Scenario, proxies: list[str], tmp: str, origin: Origin,
             cert, pin: Pinning, args) -> None:
    for rep in range(args.reps):
        for p in proxies:
            px = PROXY_CLASSES[p](tmp, f"idle{rep}", origin,
                                  cert if sc.listener == "tls" else None, pin, args.weir)
            try:
                px.start()
                n = args.idle_conns if sc.listener != "tls" else min(args.idle_conns,
                                                                     IDLE_TLS_CONNS)
                r = bench.idle_memory(px, n, sc)
            except (RuntimeError, OSError) as e:
                r = {"tool_ok": False, "errors": 1, "void": True, "error": str(e)}
            finally:
                px.stop()
            r.update({"scenario": sc.name, "proxy": p, "rep": rep})
            bench.runs.append(r)
            log(f"{sc.name} [{rep + 1}/{args.reps}] {p}: {r.get('requests')} connections, "
                f"{fmt(r.get('kib_per_conn'), 2)} KiB/conn, errors {r.get('errors')}"
                + (f" ({r['error']})" if r.get("error") else "")
                + (" VOID" if r["void"] else ""))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        PROCS.stop_all()
        sys.exit(130)
