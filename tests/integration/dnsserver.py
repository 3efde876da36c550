#!/usr/bin/env python3
"""A small DNS server for the tests that need one to misbehave on demand (stop answering a name,
answer late), and the wrapper that runs weir with it as the system's resolver: a mount namespace
where /etc/resolv.conf names it. Root only (port 53, the namespace)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading


def private_resolv_conf(tmp: str, host: str, copies: int = 1) -> tuple[list[str] | None, str]:
    """A command prefix that runs a program with /etc/resolv.conf naming `host` (a DnsServer's),
    `copies` times (a lookup that gets no answer then waits once per copy), or None and why it
    cannot be had here."""
    if os.geteuid() != 0:
        return None, "needs root (a mount namespace and port 53)"
    resolv = os.path.join(tmp, "resolv.conf")
    with open(resolv, "w") as f:
        f.write(f"nameserver {host}\n" * copies)
    wrap = ["unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"', resolv]
    try:
        pre = subprocess.run(wrap + ["true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"cannot run unshare: {e}"
    if pre.returncode != 0:
        return None, ("cannot bind-mount /etc/resolv.conf in a mount namespace: "
                      f"{pre.stderr.decode(errors='replace').strip()}")
    return wrap, ""


class DnsServer:
    """The test's own DNS server (Knot cannot stop answering one name on demand), on port 53 (UDP)
    of `host` (127.0.0.2 unless told: each test file its own, so that they may run at once): A
    records for `names` (name -> IPv4), NOERROR without data for their other types, NXDOMAIN for
    any other name. Queries for a name in `silent` are read and left
    unanswered (a server that hangs for that name); `unanswered` counts them. A name in `delay`
    (name -> seconds) is answered that much later (a slow server)."""

    HOST = "127.0.0.2"

    def __init__(self, names: dict[str, str], host: str = HOST):
        self.host = host
        self.names = {k.lower(): v for k, v in names.items()}
        self.silent: set[str] = set()
        self.delay: dict[str, float] = {}
        self.queries = 0
        self.unanswered = 0
        self._stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, 53))
        except OSError:
            self.sock.close()
            raise
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            reply, delay = self._answer(data)
            if reply and delay > 0:
                threading.Timer(delay, self._send, (reply, peer)).start()
            elif reply:
                self._send(reply, peer)

    def _send(self, reply: bytes, peer) -> None:
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass  # stopped meanwhile

    def _answer(self, q: bytes) -> tuple[bytes | None, float]:
        if len(q) < 12:
            return None, 0
        i, labels = 12, []
        while i < len(q) and q[i] != 0:
            n = q[i]
            labels.append(q[i + 1:i + 1 + n].decode("ascii", "replace").lower())
            i += 1 + n
        if i + 5 > len(q):
            return None, 0
        qtype = int.from_bytes(q[i + 1:i + 3], "big")
        question = q[12:i + 5]
        if ".".join(labels) in self.silent:
            self.unanswered += 1
            return None, 0
        addr = self.names.get(".".join(labels))
        answers, count, rcode = b"", 0, 0
        if addr is None:
            rcode = 3  # NXDOMAIN
        elif qtype == 1:  # A
            answers = (b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big")
                       + (5).to_bytes(4, "big") + (4).to_bytes(2, "big") + socket.inet_aton(addr))
            count = 1
        flags = 0x8000 | 0x0400 | (int.from_bytes(q[2:4], "big") & 0x0100) | 0x0080 | rcode
        return (q[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big")
                + count.to_bytes(2, "big") + b"\0\0\0\0" + question + answers,
                self.delay.get(".".join(labels), 0.0))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
