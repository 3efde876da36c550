"""Certificates installed at run time by a plugin through the host API (ABI 1.1
install_certificate / remove_certificate): new handshakes get them at once, open connections keep
theirs, SIGHUP keeps them, and a removal falls back to the configured certificate.

The installing plugin is tests/plugins/cert-installer (built into
<build>/tests/plugins/cert-installer/), configured as the upstream's health checker: weir has no
configuration section for certificate providers yet, and a health checker runs on the control
thread with timers as a provider does. It installs when a trigger file appears and removes a name
when a second one does, so the test decides when each step happens.
"""

import os
import re
import signal
import socket
import ssl
import subprocess

import weirtest as wt


def openssl(*args: str, stdin: bytes | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, timeout=timeout)


class Pki:
    """A throw-away CA and leaf certificates (ECDSA P-256) signed by it (as in test_tls.py)."""

    def __init__(self, d: str):
        self.d = d
        self.ca_key = os.path.join(d, "ca.key")
        self.ca = os.path.join(d, "ca.pem")
        p = openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
                    "-subj", "/CN=weir test CA")
        assert p.returncode == 0, p.stderr.decode()

    def leaf(self, name: str, cn: str, sans: list[str], org: str) -> tuple[str, str]:
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


def tls_context(cafile: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    return ctx


def peer_org(addr: tuple[str, int], server_name: str | None, cafile: str) -> str:
    """Handshake with SNI `server_name` (None: no SNI); the O= of the certificate weir sent."""
    with socket.create_connection(addr, timeout=10) as raw:
        with tls_context(cafile).wrap_socket(raw, server_hostname=server_name) as s:
            return org_of(s.getpeercert())


def org_of(cert: dict) -> str:
    return {k: v for rdn in cert["subject"] for (k, v) in rdn}["organizationName"]


def s_client_subject(addr: tuple[str, int], server_name: str) -> str:
    """The subject line `openssl s_client` prints for the certificate weir sends to that name."""
    host, port = addr
    p = openssl("s_client", "-connect", f"{host}:{port}", "-servername", server_name, stdin=b"")
    out = p.stdout.decode()
    assert p.returncode == 0, out + p.stderr.decode()
    m = re.search(r"^subject=(.*)$", out, re.M)
    assert m, out
    return m.group(1)


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


def installer_dir() -> str:
    return os.path.join(wt.build_dir(), "tests", "plugins", "cert-installer")


class CertStoreTest(wt.WeirTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.isfile(os.path.join(installer_dir(), "test-cert-installer.so")):
            self.skipTest(f"test plugin not built in {installer_dir()}")
        self.pki = Pki(self.tmp)
        self.a = self.pki.leaf("a", "a.test", ["a.test"], org="file a")
        self.x = self.pki.leaf("x", "x.test", ["x.test"], org="file x")
        self.installed = self.pki.leaf("xi", "x.test", ["x.test", "y.test"], org="installed x")
        self.install_trigger = os.path.join(self.tmp, "install")
        self.remove_trigger = os.path.join(self.tmp, "remove")
        self.origin_ = self.origin("o", wt.echo())

    def config(self, cert: str, key: str) -> str:
        files = ", ".join(f"{{ cert = {wt.toml_str(c)}, key = {wt.toml_str(k)} }}"
                          for c, k in (self.a, self.x))
        installer = (f'{{ use = "cert-installer", cert = {wt.toml_str(cert)}, '
                     f'key = {wt.toml_str(key)}, delay = "100ms", '
                     f'trigger = {wt.toml_str(self.install_trigger)}, remove = "x.test", '
                     f'remove-trigger = {wt.toml_str(self.remove_trigger)}, poll = "20ms" }}')
        return f"""
[system]
workers = 2
plugin-dirs = [{wt.toml_str(installer_dir())}]
[log]
format = "json"
[upstreams.app]
discovery = {{ use = "static", targets = ["{wt.addr_str(self.origin_.addr)}"] }}
health = {installer}
[services.web]
listeners = [{{ address = "127.0.0.1:0", tls = {{ certificates = [{files}] }} }}]
upstream = "app"
"""

    def trigger(self, w: wt.Weir, path: str, line_part: str) -> str:
        mark = len(w.lines)
        with open(path, "w"):
            pass
        line = w.wait_for_line(lambda l: line_part in l, 10, start_index=mark)
        self.assertIsNotNone(line, f"no line with {line_part!r}\n{w.log_text(30)}")
        return line

    def test_install_serves_new_handshakes_keeps_open_connections_and_removes(self):
        w = self.start_weir(self.config(*self.installed))
        addr = w.addr()
        ca = self.pki.ca

        # Before the install: the configured certificates.
        self.assertEqual(peer_org(addr, "x.test", ca), "file x")
        self.assertEqual(peer_org(addr, "y.test", ca), "file a")  # unknown name: the default

        # A keep-alive TLS connection opened before the install.
        old = tls_context(ca).wrap_socket(socket.create_connection(addr, timeout=10),
                                          server_hostname="x.test")
        self.addCleanup(old.close)
        old.sendall(b"GET /before HTTP/1.1\r\nHost: x.test\r\n\r\n")
        self.assertIn(b"200 OK", read_response(old))

        line = self.trigger(w, self.install_trigger, "installed certificate")
        host_line = w.wait_for_line(lambda l: "installed for [x.test, y.test]" in l, 5)
        self.assertIsNotNone(host_line, w.log_text(30))
        self.assertIn("TLS listener", host_line)

        # New handshakes get the installed certificate, for each of its names; the others and
        # clients without SNI keep the configured ones.
        self.assertEqual(peer_org(addr, "x.test", ca), "installed x")
        self.assertEqual(peer_org(addr, "Y.TEST", ca), "installed x")
        self.assertEqual(peer_org(addr, "a.test", ca), "file a")
        self.assertEqual(peer_org(addr, None, ca), "file a")
        self.assertRegex(s_client_subject(addr, "x.test"), r"O ?= ?installed x, CN ?= ?x\.test")

        # The connection from before still works, with the certificate it had.
        old.sendall(b"GET /after HTTP/1.1\r\nHost: x.test\r\n\r\n")
        self.assertIn(b"200 OK", read_response(old))
        self.assertEqual(org_of(old.getpeercert()), "file x")

        # SIGHUP re-reads the configured files and keeps the installed certificate.
        mark = len(w.lines)
        w.send_signal(signal.SIGHUP)
        self.assertIsNotNone(w.wait_for_line(lambda l: "reloaded" in l, 10, start_index=mark),
                             w.log_text(20))
        self.assertEqual(peer_org(addr, "x.test", ca), "installed x")

        # After the removal: back to the configured certificate (the removal of "x.test" takes
        # the whole installed certificate, so y.test falls back to the default too).
        self.trigger(w, self.remove_trigger, "removed certificate x.test")
        self.assertEqual(peer_org(addr, "x.test", ca), "file x")
        self.assertEqual(peer_org(addr, "y.test", ca), "file a")
        self.assertRegex(s_client_subject(addr, "x.test"), r"O ?= ?file x, CN ?= ?x\.test")

        # Still serving plain requests through the same listener.
        old.sendall(b"GET /end HTTP/1.1\r\nHost: x.test\r\n\r\n")
        self.assertIn(b"200 OK", read_response(old))

    def test_a_mismatched_key_is_refused_and_logged(self):
        crt, _ = self.installed
        _, other_key = self.a
        w = self.start_weir(self.config(crt, other_key))
        addr = w.addr()
        line = self.trigger(w, self.install_trigger, "certificate not installed")
        self.assertIn("does not match", line)
        self.assertIsNotNone(w.wait_for_line(lambda l: "failed with status -5" in l, 5),
                             w.log_text(20))
        self.assertEqual(peer_org(addr, "x.test", self.pki.ca), "file x")
        self.assertTrue(w.alive())


if __name__ == "__main__":
    wt.main()
