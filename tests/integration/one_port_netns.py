#!/usr/bin/env python3
"""Runs a command in the network namespace this script was started in (`unshare -n`), after
bringing its loopback interface up and narrowing the ephemeral port range to one port:
    unshare -n python3 one_port_netns.py PORT -- COMMAND [ARG...]
Every connect() without a bound source port then leaves from PORT, so a connection to
127.0.0.1:PORT with nothing listening there reaches itself (TCP simultaneous open) every time.
Used by test_errors; needs root (CAP_SYS_ADMIN for the namespace, CAP_NET_ADMIN inside it)."""

import fcntl
import os
import socket
import struct
import sys

SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit("usage: one_port_netns.py PORT -- COMMAND [ARG...]")
    port = int(sys.argv[1])
    with socket.socket() as s:
        ifreq = struct.pack("16sH14s", b"lo", 0, b"")
        flags = struct.unpack("16sH14s", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags | IFF_UP, b""))
    with open("/proc/sys/net/ipv4/ip_local_port_range", "w") as f:
        f.write(f"{port} {port}\n")
    os.execvp(sys.argv[3], sys.argv[3:])


if __name__ == "__main__":
    main()
