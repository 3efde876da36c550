#!/usr/bin/env python3
"""DNS service discovery against a real DNS server (Knot DNS, changed with nsupdate): A records
followed through additions and removals while a load loop sees no failure; a removed target
drains (its request in flight finishes, its pooled connections close); the last good set kept
while the DNS server is down (one warning, retries with backoff) and updates resuming when it is
back; SRV priorities and weights (the next priority takes over when a whole priority group is
unhealthy); DNS-SD instances with TXT metadata and weights; refresh following a record's TTL.

Needs knotd, nsupdate and dig (Debian: knot, bind9-dnsutils) and the plugins discovery-dns.so,
discovery-srv.so and discovery-dns-sd.so; skipped when one is missing. Everything runs on
loopback: origins that must share a port listen on distinct addresses of 127/8 (127.0.0.11,
127.0.0.12, ...) so that A records map to distinct origins."""

from __future__ import annotations

import base64
import collections
import errno
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest
import urllib.request

import weirtest as wt

PLUGIN_FILES = {"dns": "discovery-dns.so", "srv": "discovery-srv.so",
                "dns-sd": "discovery-dns-sd.so"}
TSIG_SECRET = base64.b64encode(b"weir integration test only, not a secret").decode()
ZONE = "example.test"


def find_tool(name: str) -> str | None:
    """A tool on PATH, or in /usr/sbin or /sbin (knotd is there and not every PATH has them)."""
    found = shutil.which(name)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/local/sbin"):
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def free_udp_tcp_port() -> int:
    """A port of 127.0.0.1 free for both TCP and UDP (a DNS server listens on both)."""
    for _ in range(100):
        port = wt.free_port()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
    raise AssertionError("no port free for both TCP and UDP on 127.0.0.1")


def log_msg(line: str) -> str:
    """The message of a json log line (the line itself when it is not json)."""
    try:
        return json.loads(line)["msg"]
    except (ValueError, KeyError, TypeError):
        return line


def log_level(line: str) -> str:
    try:
        return json.loads(line)["level"]
    except (ValueError, KeyError, TypeError):
        return ""


# --------------------------------------------------------------------------------------------------
# Knot DNS
# --------------------------------------------------------------------------------------------------

class Knot:
    """One knotd serving the zone example.test on 127.0.0.1:port (UDP and TCP), with dynamic
    updates allowed from loopback with a TSIG key. The zone lives in memory only: every start
    loads the zone file (zonefile-sync = -1, no journal)."""

    def __init__(self, directory: str, records: str):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_udp_tcp_port()
        self.conf = os.path.join(self.dir, "knot.conf")
        self.zone_file = os.path.join(self.dir, f"{ZONE}.zone")
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        with open(self.conf, "w") as f:
            f.write(f"""server:
    rundir: "{self.dir}"
    listen: [ 127.0.0.1@{self.port} ]
database:
    storage: "{self.dir}"
log:
  - target: stderr
    any: info
key:
  - id: test-key
    algorithm: hmac-sha256
    secret: {TSIG_SECRET}
acl:
  - id: update
    address: [ 127.0.0.0/8, ::1 ]
    key: test-key
    action: update
zone:
  - domain: {ZONE}
    storage: "{self.dir}"
    file: {ZONE}.zone
    zonefile-sync: -1
    journal-content: none
    acl: update
""")
        self.write_zone(records, serial=1)

    def write_zone(self, records: str, serial: int) -> None:
        with open(self.zone_file, "w") as f:
            f.write(f"$ORIGIN {ZONE}.\n$TTL 30\n"
                    f"@ SOA ns1 hostmaster {serial} 3600 600 86400 5\n"
                    "@ NS ns1\nns1 A 127.0.0.1\n" + records.strip() + "\n")

    def start(self, timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([find_tool("knotd"), "-c", self.conf],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=self.dir, start_new_session=True)
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if any(x.startswith(f"ns1.{ZONE}. hostmaster.{ZONE}.") for x in self.dig(ZONE, "SOA")):
                return
            time.sleep(0.05)
        code = self.proc.poll()
        self.stop()
        raise AssertionError(f"knotd did not serve {ZONE} within {timeout:.0f}s (exit code "
                             f"{code})\nconfig:\n{open(self.conf).read()}\nzone:\n"
                             f"{open(self.zone_file).read()}\nknotd output:\n{self.log_text()}")

    def _read(self, stream) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    def log_text(self) -> str:
        return "\n".join(self.lines[-60:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        self.proc = None

    def dig(self, name: str, rtype: str) -> list[str]:
        """The answer of `dig +short` (an empty list on no answer; dig prints errors there too)."""
        p = subprocess.run([find_tool("dig"), "@127.0.0.1", "-p", str(self.port), "+short",
                            "+time=1", "+tries=1", name, rtype],
                           capture_output=True, text=True, timeout=10)
        return [x for x in p.stdout.splitlines() if x.strip()]

    def update(self, *commands: str) -> None:
        """One atomic dynamic update: "update add ..." / "update delete ..." lines."""
        script = "".join([f"server 127.0.0.1 {self.port}\n", f"zone {ZONE}\n",
                          *(c + "\n" for c in commands), "send\n"])
        p = subprocess.run([find_tool("nsupdate"), "-y", f"hmac-sha256:test-key:{TSIG_SECRET}"],
                           input=script, capture_output=True, text=True, timeout=15)
        if p.returncode != 0:
            raise AssertionError(f"nsupdate failed ({p.returncode}): {p.stderr.strip()}\n"
                                 f"script:\n{script}\nknotd output:\n{self.log_text()}")


# --------------------------------------------------------------------------------------------------
# Origins, clients, weir config
# --------------------------------------------------------------------------------------------------

def addr_origin(name: str, host: str = "127.0.0.1", port: int = 0,
                wait_free: float = 0) -> wt.Origin:
    """An origin on a chosen address and port whose fixed responses leave in one send (stopping
    it never cuts a response weir has begun to relay)."""
    return wt.Origin(name, host=host, port=port, wait_free=wait_free, one_send=True)


class Client:
    """A keep-alive HTTP/1.1 connection to weir; get() returns (status, serving origin)."""

    def __init__(self, addr, timeout: float = 10.0):
        self.addr = addr
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def get(self, path: str = "/") -> tuple[int, str | None]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.addr[0], self.addr[1],
                                                   timeout=self.timeout)
        try:
            self.conn.request("GET", path, headers={"Host": "dns.test"})
            resp = self.conn.getresponse()
            resp.read()
        except (OSError, http.client.HTTPException):
            self.close()
            raise
        if resp.will_close:
            self.close()
        return resp.status, resp.getheader("x-origin")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


class LoadLoop:
    """A thread sending sequential keep-alive GETs through weir until stopped (at most `limit`
    seconds and `max_requests` requests), recording every result and failure."""

    def __init__(self, addr, limit: float = 30.0, max_requests: int = 50000,
                 gap: float = 0.003):
        self.addr = addr
        self.limit = limit
        self.max_requests = max_requests
        self.gap = gap
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.results: list[tuple[float, int, str | None]] = []
        self.failures: list[str] = []
        self.thread = threading.Thread(target=self._run, daemon=True, name="load-loop")

    def start(self) -> "LoadLoop":
        self.thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.limit
        client = Client(self.addr)
        try:
            for i in range(self.max_requests):
                if self.stop_event.is_set() or time.monotonic() >= deadline:
                    break
                try:
                    status, origin = client.get(f"/load/{i}")
                except (OSError, http.client.HTTPException) as e:
                    with self.lock:
                        self.failures.append(f"{time.monotonic():.3f} request {i}: "
                                             f"{type(e).__name__}: {e}")
                    continue
                with self.lock:
                    self.results.append((time.monotonic(), status, origin))
                    if status != 200:
                        self.failures.append(f"{time.monotonic():.3f} request {i}: status "
                                             f"{status}")
                time.sleep(self.gap)
        finally:
            client.close()

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(15)

    def served_by(self, name: str, since: float = 0.0) -> int:
        with self.lock:
            return len([r for r in self.results if r[2] == name and r[0] >= since])

    def count(self) -> int:
        with self.lock:
            return len(self.results)


def dns_config(knot_port: int, discovery: str, *, admin_port: int, workers: int = 1,
               level: str = "info", health: str = "", upstream_extra: str = "max-tries = 3\n"
               ) -> str:
    """One upstream `app` found by `discovery` (an inline table), weir's resolver being knotd."""
    up = f"[upstreams.app]\ndiscovery = {discovery}\nlb = {{ use = \"round-robin\" }}\n"
    if health:
        up += f"health = {health}\n"
    return (f"[system]\nworkers = {workers}\nshutdown-grace = \"2s\"\n\n"
            f"[log]\nformat = \"json\"\nlevel = \"{level}\"\naccess-log = false\n\n"
            f"[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n\n"
            f"[dns]\nservers = [\"127.0.0.1:{knot_port}\"]\ntimeout = \"500ms\"\ntries = 2\n\n"
            f"{up}{upstream_extra}\n"
            "[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\nupstream = \"app\"\n")


def admin_group(port: int, name: str = "app") -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/upstreams", timeout=5) as r:
        doc = json.loads(r.read())
    return {g["name"]: g for g in doc["upstreams"]}[name]


def admin_targets(port: int) -> dict[str, dict]:
    """Upstream `app`'s targets in the admin endpoint: address -> target object."""
    return {t["address"]: t for t in admin_group(port)["targets"]}


_CHANGE_RE = re.compile(r"upstream app: (\d+) targets \(added: \[(.*?)\], removed: \[(.*?)\]"
                        r"(?:, changed: \[(.*?)\])?\)")


class Change:
    """A `upstream app: N targets (added: [...], removed: [...][, changed: [...]])` line."""

    def __init__(self, index: int, when: float, m: re.Match):
        self.index = index
        self.time = when
        self.count = int(m.group(1))
        self.added = [x.strip() for x in m.group(2).split(",") if x.strip()]
        self.removed = [x.strip() for x in m.group(3).split(",") if x.strip()]
        self.changed = [x.strip() for x in (m.group(4) or "").split(",") if x.strip()]
        self.text = m.group(0)

    def __repr__(self) -> str:
        return self.text


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

class DnsDiscoveryTest(wt.WeirTestCase):

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        for tool, package in (("knotd", "knot"), ("nsupdate", "bind9-dnsutils"),
                              ("dig", "bind9-dnsutils")):
            if find_tool(tool) is None:
                raise unittest.SkipTest(f"{tool} is not installed (Debian: apt-get install "
                                        f"{package})")

    def require_plugin(self, use: str) -> None:
        path = os.path.join(wt.builtin_plugin_dir(), PLUGIN_FILES[use])
        if not os.path.isfile(path):
            self.skipTest(f"the {use} discovery plugin is not built ({path} does not exist)")

    def knot(self, records: str) -> Knot:
        k = Knot(os.path.join(self.tmp, "knot"), records)
        self.addCleanup(k.stop)
        k.start()
        return k

    def addr_origin(self, name: str, host: str = "127.0.0.1", port: int = 0,
                    wait_free: float = 0) -> wt.Origin:
        o = addr_origin(name, host, port, wait_free)
        self.addCleanup(o.stop)
        return o

    def origins_on_one_port(self, names_hosts: list[tuple[str, str]]) -> list[wt.Origin]:
        """Origins on distinct loopback addresses sharing one port."""
        for _ in range(20):
            port = wt.free_port()
            made: list[wt.Origin] = []
            try:
                for name, host in names_hosts:
                    made.append(addr_origin(name, host, port))
            except OSError:
                for o in made:
                    o.stop()
                continue
            for o in made:
                self.addCleanup(o.stop)
            return made
        raise AssertionError("no port free on all of " + ", ".join(h for _, h in names_hosts))

    def changes(self, w: wt.Weir, start: int = 0) -> list[Change]:
        out = []
        with w._lock:
            lines = list(w.lines)
        for i in range(start, len(lines)):
            m = _CHANGE_RE.search(log_msg(lines[i][2]))
            if m:
                out.append(Change(i, lines[i][0], m))
        return out

    def change_after(self, w: wt.Weir, start: int, timeout: float, pred) -> Change | None:
        """The first change line at index >= start satisfying pred, waiting up to timeout (the
        line's time is when it arrived, not when it was found)."""
        deadline = time.monotonic() + timeout
        while True:
            for ch in self.changes(w, start):
                if pred(ch):
                    return ch
            if time.monotonic() >= deadline or not w.alive():
                return None
            time.sleep(0.02)

    def line_after(self, w: wt.Weir, pred, timeout: float,
                   start: int = 0) -> tuple[int, float, str, str] | None:
        """Waits for a log line whose message satisfies pred(msg, level): (index, time, msg,
        level)."""
        if w.wait_for_line(lambda s: pred(log_msg(s), log_level(s)), timeout,
                           start_index=start) is None:
            return None
        with w._lock:
            lines = list(w.lines)
        for i in range(start, len(lines)):
            t, _, text = lines[i]
            if pred(log_msg(text), log_level(text)):
                return i, t, log_msg(text), log_level(text)
        return None

    def messages(self, w: wt.Weir, start: int = 0) -> list[tuple[str, str]]:
        with w._lock:
            lines = list(w.lines)
        return [(log_level(t), log_msg(t)) for (_, _, t) in lines[start:]]

    # ---------------------------------------------------------------------------------------------
    def test_a_records_added_and_removed_under_load(self):
        self.require_plugin("dns")
        a, b, c, d = self.origins_on_one_port(
            [("a", "127.0.0.11"), ("b", "127.0.0.12"), ("c", "127.0.0.13"), ("d", "127.0.0.14")])
        port = a.addr[1]
        knot = self.knot("web 1 A 127.0.0.11\nweb 1 A 127.0.0.12\nweb 1 A 127.0.0.13\n")
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, f'{{ use = "dns", name = "web.example.test", port = {port}, '
                       f'family = "ipv4", refresh = "ttl", ttl-min = "500ms" }}',
            admin_port=admin))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual((first.count, sorted(first.added), first.removed),
                         (3, sorted([a.address, b.address, c.address]), []), f"{first}")
        view = admin_targets(admin)
        self.assertEqual(sorted(view), sorted([a.address, b.address, c.address]), f"{view}")
        for addr, t in view.items():
            self.assertEqual((t["id"], t["weight"], t["healthy"]), (addr, 1, True), f"{t}")

        load = LoadLoop(w.addr(), limit=40.0).start()
        self.addCleanup(load.stop)
        self.assertTrue(wt.wait_until(lambda: all(o.request_count > 5 for o in (a, b, c)), 3),
                        f"traffic: {[o.request_count for o in (a, b, c)]}")

        # A fourth A record: within its TTL (1 s) plus a margin, weir logs it and sends to it.
        t0 = time.monotonic()
        knot.update("update add web.example.test 1 A 127.0.0.14")
        added = self.change_after(w, first.index + 1, 5.0, lambda ch: d.address in ch.added)
        self.assertIsNotNone(added, f"no change line adding {d.address} within 5 s "
                                    f"(dig: {knot.dig('web.example.test', 'A')})")
        self.assertLess(added.time - t0, 3.0, f"{d.address} added {added.time - t0:.2f}s after "
                                              f"the update (TTL 1 s)")
        self.assertEqual((added.count, added.removed), (4, []), f"{added}")
        self.assertTrue(wt.wait_until(lambda: d.request_count > 0, t0 + 3.0 - time.monotonic()),
                        f"{d.address} got no request within 3 s of the update")
        t_first_d = time.monotonic() - t0
        self.assertTrue(wt.wait_until(lambda: d.request_count > 5, 2.0))

        # Remove b: within TTL + margin weir drops it and sends it nothing more.
        t1 = time.monotonic()
        knot.update("update delete web.example.test A 127.0.0.12")
        removed = self.change_after(w, added.index + 1, 5.0, lambda ch: b.address in ch.removed)
        self.assertIsNotNone(removed, f"no change line removing {b.address} within 5 s")
        self.assertLess(removed.time - t1, 3.0, f"{b.address} removed {removed.time - t1:.2f}s "
                                                f"after the update (TTL 1 s)")
        self.assertEqual((removed.count, removed.added), (3, []), f"{removed}")
        time.sleep(0.3)  # a request already sent to b finishes (the removed target drains)
        b_count = b.request_count
        since = time.monotonic()
        time.sleep(1.5)
        self.assertEqual(b.request_count, b_count, "the removed target kept getting requests")
        for o in (a, c, d):
            self.assertGreater(load.served_by(o.name, since), 5, f"{o.name} starved")
        self.assertEqual(sorted(admin_targets(admin)), sorted([a.address, c.address, d.address]))
        # b goes away for good: nothing is sent to it any more, so nothing fails.
        b.stop()
        time.sleep(1.0)
        load.stop()
        self.assertEqual(load.failures, [], f"failed requests ({load.count()} in all)")
        self.assertGreater(load.count(), 300)
        # One line per change: the first set, the addition, the removal.
        self.assertEqual([ch.text for ch in self.changes(w)],
                         [first.text, added.text, removed.text])
        print(f"\n  timings: added after {added.time - t0:.2f}s (first request after "
              f"{t_first_d:.2f}s), removed after {removed.time - t1:.2f}s", flush=True)

    # ---------------------------------------------------------------------------------------------
    def test_aaaa_and_both_families(self):
        # family = "ipv6" follows AAAA records only; "both" takes A and AAAA. Loopback has one
        # IPv6 address, so the IPv6 origin is [::1] and the IPv4 one 127.0.0.1 on the same port.
        self.require_plugin("dns")
        if not socket.has_ipv6:
            self.skipTest("no IPv6")
        for _ in range(20):
            port = wt.free_port()
            try:
                v6 = addr_origin("v6", "::1", port)
            except OSError as e:
                if e.errno == errno.EADDRNOTAVAIL:
                    self.skipTest("::1 is not configured")
                continue
            try:
                v4 = addr_origin("v4", "127.0.0.1", port)
            except OSError:
                v6.stop()
                continue
            break
        else:
            raise AssertionError("no port free on both 127.0.0.1 and ::1")
        self.addCleanup(v6.stop)
        self.addCleanup(v4.stop)
        knot = self.knot("web 1 A 127.0.0.1\nweb 1 AAAA ::1\nsix 1 AAAA ::1\n")
        self.assertEqual(knot.dig("web.example.test", "AAAA"), ["::1"])
        for family, name, expect in (("ipv6", "six", [v6]), ("ipv6", "web", [v6]),
                                     ("both", "web", [v4, v6]), ("ipv4", "web", [v4])):
            with self.subTest(family=family, name=name):
                admin = wt.free_port()
                w = self.start_weir(dns_config(
                    knot.port, f'{{ use = "dns", name = "{name}.example.test", port = {port}, '
                               f'family = "{family}" }}', admin_port=admin))
                first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
                self.assertIsNotNone(first, "weir published no target within 5 s")
                self.assertEqual(sorted(first.added), sorted(o.address for o in expect),
                                 f"{first}")
                client = Client(w.addr())
                seen = collections.Counter(client.get(f"/{family}/{i}")[1] for i in range(10))
                client.close()
                self.assertEqual(seen, {o.name: 10 // len(expect) for o in expect})
                w.stop()

    # ---------------------------------------------------------------------------------------------
    def test_removed_target_drains(self):
        # docs/configuration.md: "Targets that leave the set drain: requests already sent
        # finish, no new request goes there, and their pooled connections close."
        self.require_plugin("dns")
        a, b, c = self.origins_on_one_port(
            [("a", "127.0.0.31"), ("b", "127.0.0.32"), ("c", "127.0.0.33")])
        for o in (a, b, c):
            o.paths["/slow/*"] = wt.fixed(o.name, delay=3.0)
        knot = self.knot("web 1 A 127.0.0.31\nweb 1 A 127.0.0.32\nweb 1 A 127.0.0.33\n")
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, f'{{ use = "dns", name = "web.example.test", port = {a.addr[1]}, '
                       f'family = "ipv4", refresh = "ttl", ttl-min = "500ms" }}',
            admin_port=admin))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(first.count, 3, f"{first}")

        # One slow request per target (three consecutive round-robin picks, one worker): each
        # holds a connection. Then three quick ones: b's needs a second connection, which then
        # waits in the pool. b has one busy and one idle connection from weir.
        slow: dict[int, tuple[float, int, str | None] | str] = {}

        def slow_get(k: int) -> None:
            cl = Client(w.addr())
            try:
                status, origin = cl.get(f"/slow/{k}")
                slow[k] = (time.monotonic(), status, origin)
            except (OSError, http.client.HTTPException) as e:
                slow[k] = f"{type(e).__name__}: {e}"
            finally:
                cl.close()

        threads = [threading.Thread(target=slow_get, args=(k,), daemon=True) for k in range(3)]
        for th in threads:
            th.start()
        self.assertTrue(wt.wait_until(lambda: all(any(r.path.startswith("/slow/")
                                                      for r in o.snapshot())
                                                  for o in (a, b, c)), 2.0),
                        "the three slow requests did not reach the three targets")
        client = Client(w.addr())
        self.addCleanup(client.close)
        quick = sorted(client.get(f"/quick/{i}")[1] for i in range(3))
        self.assertEqual(quick, ["a", "b", "c"])
        self.assertEqual(b.open_conns, 2, "b should have a busy and an idle connection")

        t0 = time.monotonic()
        knot.update("update delete web.example.test A 127.0.0.32")
        removed = self.change_after(w, first.index + 1, 5.0, lambda ch: b.address in ch.removed)
        self.assertIsNotNone(removed, f"no change line removing {b.address} within 5 s")
        self.assertLess(removed.time - t0, 2.5)
        # The idle connection closes at once; the busy one carries its request to the end.
        self.assertTrue(wt.wait_until(lambda: b.open_conns == 1, 1.0),
                        f"b has {b.open_conns} connections from weir 1 s after its removal "
                        "(its idle pooled connection should have closed)")
        b_before = b.request_count
        after = [client.get(f"/after/{i}") for i in range(6)]
        self.assertEqual(sorted(after), [(200, "a")] * 3 + [(200, "c")] * 3)
        self.assertEqual(b.request_count, b_before, "a request went to the removed target")
        for th in threads:
            th.join(10)
        self.assertEqual(sorted((v[1], v[2]) if isinstance(v, tuple) else (0, v)
                                for v in slow.values()),
                         [(200, "a"), (200, "b"), (200, "c")],
                         "the slow requests (one was on its way to the removed target)")
        b_done = next(v[0] for v in slow.values() if v[2] == "b")
        self.assertLess(removed.time, b_done, "b was removed only after its slow request "
                                              "ended: the drain was not tested")
        # Its request done, the last connection to the removed target closes too.
        closed = wt.wait_until(lambda: b.open_conns == 0, 2.0)
        self.assertTrue(closed, f"2 s after its last request ended, weir still keeps "
                                f"{b.open_conns} connection(s) to the removed target {b.address} "
                                "open (the connection that was busy when the target left the "
                                "set went back to the pool)")

    # ---------------------------------------------------------------------------------------------
    def test_dns_server_down_keeps_last_set_then_resumes(self):
        self.require_plugin("dns")
        a, b, c, d = self.origins_on_one_port(
            [("a", "127.0.0.21"), ("b", "127.0.0.22"), ("c", "127.0.0.23"), ("d", "127.0.0.24")])
        port = a.addr[1]
        records = "web 1 A 127.0.0.21\nweb 1 A 127.0.0.22\nweb 1 A 127.0.0.23\n"
        knot = self.knot(records)
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, f'{{ use = "dns", name = "web.example.test", port = {port}, '
                       f'family = "ipv4", refresh = "ttl", ttl-min = "500ms", '
                       f'retry-min = "250ms", retry-max = "1s" }}',
            admin_port=admin, level="debug"))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(first.count, 3, f"{first}")
        load = LoadLoop(w.addr(), limit=40.0).start()
        self.addCleanup(load.stop)
        self.assertTrue(wt.wait_until(lambda: all(o.request_count > 5 for o in (a, b, c)), 3))

        # The DNS server goes away: the next refresh (TTL 1 s) fails, weir warns once and keeps
        # the three targets while it retries.
        idx = len(w.lines)
        t_stop = time.monotonic()
        knot.stop()

        def is_failure_warning(msg: str, level: str) -> bool:
            return level.startswith("warn") and "web.example.test" in msg

        warn = self.line_after(w, is_failure_warning, 5.0, start=idx)
        self.assertIsNotNone(warn, "no warning within 5 s of stopping the DNS server")
        self.assertLess(warn[1] - t_stop, 3.5, f"warned {warn[1] - t_stop:.2f}s after the stop")
        self.assertIn("keeping the last 3 target(s)", warn[2], f"the warning: {warn[2]}")
        since = time.monotonic()
        time.sleep(max(0.0, t_stop + 4.0 - time.monotonic()))  # >= 3 s of serving without DNS
        for o in (a, b, c):
            self.assertGreater(load.served_by(o.name, since), 5,
                               f"{o.name} got no traffic while the DNS server was down")
        self.assertEqual(load.failures, [], "requests failed while the DNS server was down")
        self.assertEqual(sorted(admin_targets(admin)), sorted([a.address, b.address, c.address]))
        during = self.messages(w, idx)
        warnings = [m for lv, m in during if lv.startswith("warn") and "web.example.test" in m]
        self.assertEqual(len(warnings), 1, f"one warning per failure streak, got {warnings}")
        # The refreshes kept failing meanwhile (retry-min 250 ms doubling up to 1 s: about five
        # tries in 3 s), logged at debug level only.
        again = [m for lv, m in during if lv == "debug" and "web.example.test" in m
                 and "fail" in m]
        self.assertGreaterEqual(len(again), 2, f"no retry logged: {during[-40:]}")
        # Retries back off: retry-min doubling up to retry-max.
        delays = [int(x) for _, m in during if "web.example.test" in m
                  for x in re.findall(r"retrying in (\d+)ms", m)]
        self.assertEqual(delays[:3], [250, 500, 1000], f"retry delays: {delays}")
        self.assertEqual(set(delays[2:]), {1000}, f"retry delays: {delays}")
        self.assertEqual([ch.text for ch in self.changes(w, idx)], [],
                         "the target set changed while the DNS server was down")

        # Back with one more record: updates resume within the retry delay (<= 1 s) + margin.
        knot.write_zone(records + "web 1 A 127.0.0.24\n", serial=2)
        t_back = time.monotonic()
        knot.start()
        back = self.change_after(w, idx, 5.0, lambda ch: d.address in ch.added)
        self.assertIsNotNone(back, f"no change line adding {d.address} within 5 s of the DNS "
                                   "server's return")
        self.assertLess(back.time - t_back, 3.0, f"resumed {back.time - t_back:.2f}s after the "
                                                 f"restart")
        self.assertEqual((back.count, back.removed), (4, []), f"{back}")
        self.assertTrue(wt.wait_until(lambda: d.request_count > 0, 2.0))
        recovered = [m for lv, m in self.messages(w, idx) if "works again" in m]
        self.assertEqual(len(recovered), 1, f"recovery lines: {recovered}")
        load.stop()
        self.assertEqual(load.failures, [], f"failed requests ({load.count()} in all)")
        print(f"\n  timings: warning {warn[1] - t_stop:.2f}s after the stop, resumed "
              f"{back.time - t_back:.2f}s after the restart, {len(again)} retries logged",
              flush=True)

    # ---------------------------------------------------------------------------------------------
    def test_srv_priority_and_weight(self):
        self.require_plugin("srv")
        a = self.addr_origin("a")
        b = self.addr_origin("b")
        c = self.addr_origin("c")
        knot = self.knot(
            f"_http._tcp 2 SRV 10 3 {a.addr[1]} host-a\n"
            f"_http._tcp 2 SRV 10 1 {b.addr[1]} host-b\n"
            f"_http._tcp 2 SRV 20 1 {c.addr[1]} host-c\n"
            "host-a 2 A 127.0.0.1\nhost-b 2 A 127.0.0.1\nhost-c 2 A 127.0.0.1\n")
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, '{ use = "srv", name = "_http._tcp.example.test", refresh = "ttl", '
                       'ttl-min = "500ms" }',
            admin_port=admin,
            health='{ use = "tcp", interval = "200ms", timeout = "200ms", fall = 1, rise = 1 }'))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(sorted(first.added), sorted([a.address, b.address, c.address]))
        self.assertTrue(wt.wait_until(lambda: admin_group(admin)["targets-healthy"] == 3, 3),
                        f"admin: {admin_group(admin)}")
        view = admin_targets(admin)
        got = {addr: (t["priority"], t["weight"], t["serving"],
                      (t.get("metadata") or {}).get("srv-target")) for addr, t in view.items()}
        self.assertEqual(got, {a.address: (10, 3, True, "host-a.example.test"),
                               b.address: (10, 1, True, "host-b.example.test"),
                               c.address: (20, 1, False, "host-c.example.test")}, f"{view}")

        client = Client(w.addr())
        self.addCleanup(client.close)
        seen = collections.Counter()
        for i in range(400):
            status, origin = client.get(f"/srv/{i}")
            self.assertEqual(status, 200, f"request {i}")
            seen[origin] += 1
        self.assertEqual(seen["c"], 0, f"the priority-20 target got requests: {seen}")
        self.assertEqual(seen["a"] + seen["b"], 400, f"{seen}")
        self.assertTrue(280 <= seen["a"] <= 320, f"weights 3:1 over 400 requests: {seen}")

        # Both priority-10 targets die: the priority-20 one takes the requests.
        idx = len(w.lines)
        a_port = a.addr[1]
        t_kill = time.monotonic()
        a.stop()
        b.stop()
        over = self.line_after(w, lambda m, lv: "priority 20 now takes the requests" in m, 3.0,
                               start=idx)
        self.assertIsNotNone(over, "priority 20 did not take over within 3 s:\n"
                                   f"{json.dumps(admin_group(admin), indent=1)}")
        view = admin_targets(admin)
        self.assertEqual({addr: (t["healthy"], t["serving"]) for addr, t in view.items()},
                         {a.address: (False, False), b.address: (False, False),
                          c.address: (True, True)}, f"{view}")
        for i in range(20):
            self.assertEqual(client.get(f"/fallback/{i}"), (200, "c"), f"request {i}")

        # a comes back: priority 10 takes the requests again (b is still down).
        a2 = self.addr_origin("a", port=a_port, wait_free=3.0)
        back = self.line_after(w, lambda m, lv: "priority 10 now takes the requests" in m, 3.0,
                               start=over[0] + 1)
        self.assertIsNotNone(back, "priority 10 did not take the requests back within 3 s")
        for i in range(10):
            self.assertEqual(client.get(f"/back/{i}"), (200, "a"), f"request {i}")
        self.assertEqual(a2.request_count, 10)
        print(f"\n  timings: priority 20 took over {over[1] - t_kill:.2f}s after the kill; "
              f"split {dict(seen)}", flush=True)

    # ---------------------------------------------------------------------------------------------
    def test_srv_weight_change_followed_under_load(self):
        # The weights of records that stay are changed in the zone: weir logs the change, the
        # split follows within the TTL plus a margin, and a load loop sees no failure.
        self.require_plugin("srv")
        a = self.addr_origin("a")
        b = self.addr_origin("b")
        knot = self.knot(
            f"_http._tcp 1 SRV 10 3 {a.addr[1]} host-a\n"
            f"_http._tcp 1 SRV 10 1 {b.addr[1]} host-b\n"
            "host-a 1 A 127.0.0.1\nhost-b 1 A 127.0.0.1\n")
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, '{ use = "srv", name = "_http._tcp.example.test", refresh = "ttl", '
                       'ttl-min = "500ms" }', admin_port=admin))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(sorted(first.added), sorted([a.address, b.address]), f"{first}")
        self.assertEqual({k: t["weight"] for k, t in admin_targets(admin).items()},
                         {a.address: 3, b.address: 1})

        client = Client(w.addr())
        self.addCleanup(client.close)
        seen = collections.Counter(client.get(f"/w1/{i}")[1] for i in range(80))
        self.assertEqual(seen, {"a": 60, "b": 20}, "SRV weights 3:1")

        load = LoadLoop(w.addr(), limit=30.0).start()
        self.addCleanup(load.stop)
        self.assertTrue(wt.wait_until(lambda: load.count() > 20, 3.0))
        # One atomic update: a's weight 3 -> 1, b's 1 -> 3 (an SRV record's weight is part of
        # its data, so the record is replaced).
        t0 = time.monotonic()
        knot.update(f"update delete _http._tcp.example.test SRV 10 3 {a.addr[1]} "
                    "host-a.example.test.",
                    f"update delete _http._tcp.example.test SRV 10 1 {b.addr[1]} "
                    "host-b.example.test.",
                    f"update add _http._tcp.example.test 1 SRV 10 1 {a.addr[1]} "
                    "host-a.example.test.",
                    f"update add _http._tcp.example.test 1 SRV 10 3 {b.addr[1]} "
                    "host-b.example.test.")
        ch = self.change_after(w, first.index + 1, 5.0, lambda ch: len(ch.changed) == 2)
        self.assertIsNotNone(ch, "no change line naming the two new weights within 5 s (dig: "
                                 f"{knot.dig('_http._tcp.example.test', 'SRV')})")
        self.assertLess(ch.time - t0, 3.0, f"weights followed {ch.time - t0:.2f}s after the "
                                           "update (TTL 1 s)")
        self.assertEqual((ch.count, ch.added, ch.removed), (2, [], []), f"{ch}")
        self.assertEqual(sorted(ch.changed), sorted([f"{a.address} weight 3->1",
                                                     f"{b.address} weight 1->3"]), f"{ch}")
        self.assertEqual({k: t["weight"] for k, t in admin_targets(admin).items()},
                         {a.address: 1, b.address: 3})
        since = time.monotonic()
        time.sleep(1.0)
        load.stop()
        self.assertEqual(load.failures, [], f"failed requests ({load.count()} in all)")
        after_a, after_b = load.served_by("a", since), load.served_by("b", since)
        self.assertGreater(after_a + after_b, 40, "the load loop stalled after the change")
        self.assertLess(abs(after_b - 3 * after_a), 8,
                        f"load after the change: a {after_a}, b {after_b} (weights 1:3)")
        seen = collections.Counter(client.get(f"/w2/{i}")[1] for i in range(80))
        self.assertEqual(seen, {"a": 20, "b": 60}, "SRV weights 1:3 after the change")
        print(f"\n  timings: weights followed {ch.time - t0:.2f}s after the update; "
              f"{load.count()} requests under load, 0 failed", flush=True)

    # ---------------------------------------------------------------------------------------------
    def test_dns_sd_instances_metadata_and_changes(self):
        self.require_plugin("dns-sd")
        o = {n: self.addr_origin(n) for n in ("one", "two", "three", "four")}
        weights = {"one": 3, "two": 1, "three": 2, "four": 2}

        def instance(n: str, zone: str) -> list[str]:
            return [f"{n}._http._tcp 1 SRV 0 0 {o[n].addr[1]} host-{n}",
                    f'{n}._http._tcp 1 TXT "weight={weights[n]}" "zone={zone}"',
                    f"host-{n} 1 A 127.0.0.1"]

        records = [f"_http._tcp 1 PTR {n}._http._tcp" for n in ("one", "two", "three")]
        for n, z in (("one", "a"), ("two", "b"), ("three", "c")):
            records += instance(n, z)
        knot = self.knot("\n".join(records))
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, '{ use = "dns-sd", service = "_http._tcp.example.test", refresh = "ttl", '
                       'ttl-min = "500ms", family = "ipv4" }', admin_port=admin))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(sorted(first.added), sorted(o[n].address for n in ("one", "two", "three")))
        view = admin_targets(admin)
        for n, zone in (("one", "a"), ("two", "b"), ("three", "c")):
            t = view[o[n].address]
            meta = t.get("metadata") or {}
            self.assertEqual(t["weight"], weights[n], f"{n}: {t}")
            self.assertEqual((meta.get("weight"), meta.get("zone")), (str(weights[n]), zone),
                             f"{n}: {t}")
            self.assertEqual(meta.get("instance"), f"{n}._http._tcp.example.test", f"{n}: {t}")

        client = Client(w.addr())
        self.addCleanup(client.close)
        seen = collections.Counter(client.get(f"/sd/{i}")[1] for i in range(60))
        self.assertEqual(seen, {"one": 30, "two": 10, "three": 20}, "TXT weights 3:1:2")

        # Instance two leaves (its PTR goes), instance four arrives, in one update.
        t0 = time.monotonic()
        knot.update("update delete _http._tcp.example.test PTR two._http._tcp.example.test.",
                    "update add _http._tcp.example.test 1 PTR four._http._tcp.example.test.",
                    f"update add four._http._tcp.example.test 1 SRV 0 0 {o['four'].addr[1]} "
                    "host-four.example.test.",
                    'update add four._http._tcp.example.test 1 TXT "weight=2" "zone=d"',
                    "update add host-four.example.test 1 A 127.0.0.1")
        ch = self.change_after(w, first.index + 1, 5.0,
                               lambda ch: o["four"].address in ch.added
                               or o["two"].address in ch.removed)
        self.assertIsNotNone(ch, "weir did not follow the instances within 5 s")
        self.assertLess(ch.time - t0, 3.0, f"followed {ch.time - t0:.2f}s after the update")
        self.assertEqual((ch.count, ch.added, ch.removed),
                         (3, [o["four"].address], [o["two"].address]), f"{ch}")
        view = admin_targets(admin)
        self.assertEqual(sorted(view), sorted(o[n].address for n in ("one", "three", "four")))
        meta = view[o["four"].address].get("metadata") or {}
        self.assertEqual((meta.get("instance"), meta.get("srv-target"), meta.get("zone"),
                          view[o["four"].address]["weight"]),
                         ("four._http._tcp.example.test", "host-four.example.test", "d", 2),
                         f"{view[o['four'].address]}")
        before_two = o["two"].request_count
        seen = collections.Counter(client.get(f"/sd2/{i}")[1] for i in range(70))
        self.assertEqual(seen, {"one": 30, "three": 20, "four": 20}, "TXT weights 3:2:2")
        self.assertEqual(o["two"].request_count, before_two)

        # Instance one's TXT weight changes 3 -> 1: the same target, a new weight.
        t1 = time.monotonic()
        knot.update("update delete one._http._tcp.example.test TXT",
                    'update add one._http._tcp.example.test 1 TXT "weight=1" "zone=a"')
        ch2 = self.change_after(w, ch.index + 1, 5.0, lambda c: len(c.changed) == 1)
        self.assertIsNotNone(ch2, "the TXT weight change was not followed within 5 s")
        self.assertLess(ch2.time - t1, 3.0, f"followed {ch2.time - t1:.2f}s after the update")
        self.assertEqual((ch2.added, ch2.removed), ([], []), f"{ch2}")
        self.assertTrue(ch2.changed[0].startswith(f"{o['one'].address} weight 3->1"), f"{ch2}")
        self.assertEqual(admin_targets(admin)[o["one"].address]["weight"], 1)
        seen = collections.Counter(client.get(f"/sd3/{i}")[1] for i in range(50))
        self.assertEqual(seen, {"one": 10, "three": 20, "four": 20}, "TXT weights 1:2:2")
        print(f"\n  timings: instances followed {ch.time - t0:.2f}s after the update", flush=True)

    # ---------------------------------------------------------------------------------------------
    def test_refresh_follows_ttl_changes(self):
        self.require_plugin("dns")
        a, b, c, d = self.origins_on_one_port(
            [("a", "127.0.0.41"), ("b", "127.0.0.42"), ("c", "127.0.0.43"), ("d", "127.0.0.44")])
        port = a.addr[1]
        knot = self.knot("web 1 A 127.0.0.41\n")
        admin = wt.free_port()
        w = self.start_weir(dns_config(
            knot.port, f'{{ use = "dns", name = "web.example.test", port = {port}, '
                       f'family = "ipv4", refresh = "ttl", ttl-min = "500ms", ttl-max = "1m" }}',
            admin_port=admin))
        first = self.change_after(w, 0, 5.0, lambda ch: ch.count > 0)
        self.assertIsNotNone(first, "weir published no target within 5 s")
        self.assertEqual(first.added, [a.address])

        def rrset(ttl: int, hosts: list[str]) -> list[str]:
            return ["update delete web.example.test A",
                    *(f"update add web.example.test {ttl} A {h}" for h in hosts)]

        # TTL 1 s -> 4 s, with b added so that the round that reads the new TTL shows.
        t0 = time.monotonic()
        knot.update(*rrset(4, ["127.0.0.41", "127.0.0.42"]))
        ch1 = self.change_after(w, first.index + 1, 5.0, lambda ch: b.address in ch.added)
        self.assertIsNotNone(ch1, "the change was not noticed within 5 s (TTL was 1 s)")
        self.assertLess(ch1.time - t0, 3.0)
        # Right after that round: back to TTL 1 s with c added. weir asks again only when the
        # 4 s TTL it read has run out.
        knot.update(*rrset(1, ["127.0.0.41", "127.0.0.42", "127.0.0.43"]))
        ch2 = self.change_after(w, ch1.index + 1, 8.0, lambda ch: c.address in ch.added)
        self.assertIsNotNone(ch2, "the change was not noticed within 8 s (TTL was 4 s)")
        self.assertGreater(ch2.time - ch1.time, 3.0,
                           f"re-resolved {ch2.time - ch1.time:.2f}s after reading a 4 s TTL")
        self.assertLess(ch2.time - ch1.time, 5.5,
                        f"re-resolved {ch2.time - ch1.time:.2f}s after reading a 4 s TTL")
        # TTL 1 s again: the next change is noticed within about a second.
        knot.update(*rrset(1, ["127.0.0.41", "127.0.0.42", "127.0.0.43", "127.0.0.44"]))
        t3 = time.monotonic()
        ch3 = self.change_after(w, ch2.index + 1, 5.0, lambda ch: d.address in ch.added)
        self.assertIsNotNone(ch3, "the change was not noticed within 5 s (TTL back to 1 s)")
        self.assertLess(ch3.time - t3, 2.5, f"noticed {ch3.time - t3:.2f}s after the update")
        self.assertEqual(ch3.count, 4)
        print(f"\n  timings: TTL 1 s -> noticed {ch1.time - t0:.2f}s; TTL 4 s -> next round "
              f"{ch2.time - ch1.time:.2f}s later; TTL 1 s -> noticed {ch3.time - t3:.2f}s",
              flush=True)


if __name__ == "__main__":
    wt.main()
