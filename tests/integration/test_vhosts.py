#!/usr/bin/env python3
"""Virtual hosts (docs/configuration.md, "Virtual hosts"; docs/tls.md, SNI): several services on
one listener address. On a TLS address each service brings its own certificate and SNI picks it;
curl over HTTP/1.1 and HTTP/2 reaches each name's own origin. On a plain address the Host header
(without port, any case) picks the service; exact names beat wildcards; a host no service claims,
or no host at all, goes to the first service listed for the address (the default).

Shared addresses use a real port (weirtest.free_port()): listeners on port 0 are never shared.
Peers: curl, openssl s_client, raw sockets, weirtest origins.
"""

import os
import re
import subprocess
import unittest

import tlsutil
import weirtest as wt


class VhostTest(wt.WeirTestCase):

    def setUp(self):
        super().setUp()
        self.oa = self.origin("origin-a", wt.echo())
        self.ob = self.origin("origin-b", wt.echo())
        self.oc = self.origin("origin-c", wt.echo())

    def upstreams(self) -> str:
        return "\n".join(
            f'[upstreams.{n}]\ndiscovery = {{ use = "static", targets = ["{o.address}"] }}\n'
            for n, o in (("a", self.oa), ("b", self.ob), ("c", self.oc)))

    def head(self) -> str:
        return '[system]\nworkers = 2\nshutdown-grace = "2s"\n[log]\nformat = "json"\n' + self.upstreams()

    # -- TLS --------------------------------------------------------------------------------------
    def tls_setup(self):
        self.pki = tlsutil.Pki(self.tmp)
        self.cert_a = self.pki.leaf("a", "a.test", dns=["a.test"], org="site a")
        self.cert_b = self.pki.leaf("b", "b.test", dns=["b.test", "*.b.test"], org="site b")
        self.port = wt.free_port()
        addr = f"127.0.0.1:{self.port}"

        def tls(cert):
            return f'tls = {{ cert = {wt.toml_str(cert[0])}, key = {wt.toml_str(cert[1])} }}'

        text = self.head() + f"""
[services.site-a]
listeners = [{{ address = "{addr}", {tls(self.cert_a)} }}]
server-names = ["a.test"]
upstream = "a"

[services.site-b]
listeners = [{{ address = "{addr}", {tls(self.cert_b)} }}]
server-names = ["b.test", "*.b.test"]
upstream = "b"
"""
        return self.start_weir(text)

    def test_tls_each_name_gets_its_certificate_and_origin(self):
        w = self.tls_setup()
        # One address, shared by both services, logged once with both names.
        self.assertEqual(w.addr("site-a"), ("127.0.0.1", self.port))
        self.assertEqual(w.addr("site-b"), ("127.0.0.1", self.port))
        self.assertTrue(any(re.search(r"listening on 127\.0\.0\.1:%d \(services site-a, site-b\) "
                                      r"with TLS" % self.port, l) for l in w.text_lines()),
                        w.log_text(10))
        cases = [("a.test", "site a", "a.test", self.oa, "site-a"),
                 ("b.test", "site b", "b.test", self.ob, "site-b"),
                 ("x.b.test", "site b", "b.test", self.ob, "site-b")]
        for proto in ("--http1.1", "--http2"):
            for name, org, cn, origin, service in cases:
                with self.subTest(proto=proto, name=name):
                    path = f"/{proto.strip('-')}/{name}"
                    r = wt.curl(proto, "-v", "--cacert", self.pki.ca, "--resolve",
                                f"{name}:{self.port}:127.0.0.1", f"https://{name}:{self.port}{path}")
                    self.assertStatus(r, 200, f"{proto} https://{name}")
                    self.assertRegex(r.stderr, rf"subject: O ?= ?{org}; CN ?= ?{re.escape(cn)}")
                    want_alpn = "h2" if proto == "--http2" else "http/1.1"
                    self.assertIn(f"ALPN: server accepted {want_alpn}", r.stderr)
                    self.assertEqual(r.header("x-origin"), origin.name)
                    rec = origin.last()
                    self.assertEqual(rec.path, path)
                    self.assertEqual(rec.header("x-forwarded-proto"), "https")
                    self.assertEqual(rec.header("x-forwarded-host"), f"{name}:{self.port}")
                    self.assertTrue(wt.wait_until(
                        lambda: any(a["path"] == path for a in w.access_logs()), 5))
                    acc = [a for a in w.access_logs() if a["path"] == path][-1]
                    self.assertEqual(acc["service"], service)
        self.assertEqual(self.oc.request_count, 0)

    def test_tls_openssl_s_client_sees_each_certificate(self):
        w = self.tls_setup()
        for name, subject in (("a.test", "CN = a.test"), ("b.test", "CN = b.test"),
                              ("y.b.test", "CN = b.test"),
                              ("unknown.test", "CN = a.test")):  # the default: first certificate
            with self.subTest(name=name):
                p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{self.port}",
                                    "-servername", name, "-CAfile", self.pki.ca,
                                    "-verify_return_error"],
                                   input=b"", capture_output=True, timeout=20)
                out = p.stdout.decode(errors="replace")
                self.assertEqual(p.returncode, 0, out + p.stderr.decode(errors="replace"))
                m = re.search(r"^subject=(.*)$", out, re.M)
                self.assertIsNotNone(m, out)
                self.assertTrue(m.group(1).endswith(subject), m.group(1))
        # No SNI at all: the default certificate too.
        self.assertEqual(tlsutil.peer_subject(w.addr("site-a"), None, self.pki.ca)["commonName"],
                         "a.test")

    def test_tls_unknown_name_goes_to_the_default_service(self):
        self.tls_setup()
        r = wt.curl("--http1.1", "-k", "--resolve", f"other.test:{self.port}:127.0.0.1",
                    f"https://other.test:{self.port}/other")
        self.assertStatus(r, 200, "unknown name over TLS")
        self.assertEqual(r.header("x-origin"), "origin-a")
        # The Host header decides, as documented ("the request's host name: the Host header").
        r = wt.curl("--http1.1", "--cacert", self.pki.ca, "--resolve",
                    f"a.test:{self.port}:127.0.0.1", "-H", f"Host: b.test:{self.port}",
                    f"https://a.test:{self.port}/host-over-sni")
        self.assertStatus(r, 200, "SNI a.test, Host b.test")
        self.assertEqual(r.header("x-origin"), "origin-b")

    # -- plain ------------------------------------------------------------------------------------
    def plain_setup(self):
        self.port = wt.free_port()
        addr = f"127.0.0.1:{self.port}"
        text = self.head() + f"""
[services.default]
listeners = [{{ address = "{addr}" }}]
upstream = "a"

[services.bee]
listeners = [{{ address = "{addr}" }}]
server-names = ["b.test", "www.b.test"]
upstream = "b"

[services.wild]
listeners = [{{ address = "{addr}" }}]
server-names = ["*.b.test", "c.test"]
upstream = "c"
"""
        return self.start_weir(text)

    def test_host_header_selects_the_service(self):
        w = self.plain_setup()
        addr = ("127.0.0.1", self.port)
        cases = [
            ("b.test", self.ob, "bee"),
            (f"B.TEST:{self.port}", self.ob, "bee"),     # case and port do not matter
            ("b.test.", self.ob, "bee"),                  # nor a trailing dot
            ("www.b.test", self.ob, "bee"),               # exact beats the wildcard *.b.test
            ("api.b.test", self.oc, "wild"),              # wildcard, one label
            ("c.test", self.oc, "wild"),
            ("a.b.b.test", self.oa, "default"),           # a wildcard covers one label only
            ("unknown.test", self.oa, "default"),
            ("127.0.0.1", self.oa, "default"),
        ]
        for i, (host, origin, service) in enumerate(cases):
            with self.subTest(host=host):
                path = f"/host/{i}"
                r = wt.curl("-H", f"Host: {host}", wt.url(addr, path))
                self.assertStatus(r, 200, f"Host: {host}")
                self.assertEqual(r.header("x-origin"), origin.name, f"Host: {host}")
                self.assertEqual(origin.last().path, path)
                self.assertTrue(wt.wait_until(
                    lambda: any(a["path"] == path for a in w.access_logs()), 5))
                acc = [a for a in w.access_logs() if a["path"] == path][-1]
                self.assertEqual(acc["service"], service, acc)

    def test_no_host_and_absolute_form(self):
        self.plain_setup()
        addr = ("127.0.0.1", self.port)
        # HTTP/1.0 without Host: the default service.
        r = wt.raw_exchange(addr, "GET /no-host HTTP/1.0\r\n\r\n")
        self.assertStatus(r, 200, "HTTP/1.0 without Host")
        self.assertEqual(self.oa.last().path, "/no-host")
        # Absolute form: its authority replaces Host (RFC 9112 3.2.2) and picks the service.
        r = wt.raw_exchange(addr, "GET http://c.test/abs HTTP/1.1\r\nHost: b.test\r\n"
                                  "Connection: close\r\n\r\n")
        self.assertStatus(r, 200, "absolute-form target")
        self.assertEqual(self.oc.last().path, "/abs")
        # Keep-alive: each request on one connection is routed by its own Host.
        with wt.RawConn(addr) as c:
            for host, origin in (("b.test", self.ob), ("c.test", self.oc), ("x.test", self.oa)):
                c.send(f"GET /ka/{host} HTTP/1.1\r\nHost: {host}\r\n\r\n")
                self.assertStatus(c.read_final_response()[0], 200, f"keep-alive Host {host}")
                self.assertEqual(origin.last().path, f"/ka/{host}")

    def test_h2c_authority_selects_the_service(self):
        port = wt.free_port()
        addr = f"127.0.0.1:{port}"
        text = self.head() + f"""
[services.default]
listeners = [{{ address = "{addr}", h2c = true }}]
upstream = "a"

[services.bee]
listeners = [{{ address = "{addr}", h2c = true }}]
server-names = ["b.test"]
upstream = "b"
"""
        self.start_weir(text)
        for host, origin in (("b.test", self.ob), ("nobody.test", self.oa)):
            with self.subTest(host=host):
                p = wt.curl_raw("--http2-prior-knowledge", "-H", f"Host: {host}", "-o", "/dev/null",
                                "-w", "%{http_code} %{http_version}", f"http://{addr}/h2c/{host}",
                                timeout=15)
                self.assertEqual(p.stdout.decode(), "200 2", p.stderr)
                self.assertEqual(origin.last().path, f"/h2c/{host}")

    def test_ipv6_spellings_of_one_address_are_one_listener(self):
        """"[::1]:P" and "[0:0::1]:P" are the same address (the check compares normalised
        addresses and treats the two services as virtual hosts): weir must open it once, so
        that every connection sees both services."""
        port = wt.free_port()
        text = self.head() + f"""
[services.default]
listeners = [{{ address = "[::1]:{port}" }}]
upstream = "a"

[services.bee]
listeners = [{{ address = "[0:0::1]:{port}" }}]
server-names = ["b.test"]
upstream = "b"
"""
        w = self.start_weir(text)
        wrong = []
        for i in range(20):
            for host, origin in (("b.test", "origin-b"), ("other.test", "origin-a")):
                r = wt.raw_exchange(("::1", port), f"GET /v6/{i} HTTP/1.1\r\nHost: {host}\r\n"
                                                   f"Connection: close\r\n\r\n")
                if r.status != 200 or r.header("x-origin") != origin:
                    wrong.append(f"Host {host}: {r.status} from {r.header('x-origin')}")
        self.assertEqual(wrong, [], f"{len(wrong)} of 40 requests reached the wrong service; "
                                    f"listening lines: "
                                    f"{[l for l in w.text_lines() if 'listening on' in l]}")

    def test_port_zero_listeners_are_not_shared(self):
        """docs: "Listeners on port 0 are never shared: each gets a port of its own." Two services
        on 127.0.0.1:0 (the second without server-names, which a shared address would refuse)
        each get a port and their own traffic."""
        text = self.head() + """
[services.one]
listeners = [{ address = "127.0.0.1:0" }]
upstream = "a"

[services.two]
listeners = [{ address = "127.0.0.1:0" }]
upstream = "b"
"""
        w = self.start_weir(text)
        one, two = w.addr("one"), w.addr("two")
        self.assertNotEqual(one, two, "both services got the same listener")
        self.assertEqual(wt.curl(wt.url(one, "/one")).header("x-origin"), "origin-a")
        self.assertEqual(wt.curl(wt.url(two, "/two")).header("x-origin"), "origin-b")

    def test_check_reports_vhost_mistakes(self):
        port = wt.free_port()
        addr = f"127.0.0.1:{port}"
        path = os.path.join(self.tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(self.head() + f"""
[services.site]
listeners = [{{ address = "{addr}" }}]
server-names = ["www.example.test"]
upstream = "a"

[services.api]
listeners = [{{ address = "{addr}", h2c = true }}]
server-names = ["api.example.test", "WWW.example.test"]
upstream = "b"

[services.extra]
listeners = [{{ address = "{addr}" }}]
upstream = "c"
""")
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        err = p.stderr
        self.assertIn(f'services.api.listeners[0]: listener "{addr}" is shared with service "site"',
                      err)
        self.assertIn('server name "www.example.test" is also listed by service "site"', err)
        self.assertIn("services.extra.listeners[0]", err)
        self.assertIn("this service has no server-names, so it could never be chosen", err)


if __name__ == "__main__":
    unittest.main()
