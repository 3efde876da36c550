#!/usr/bin/env python3
"""TLS towards upstreams (docs/configuration.md, "Upstream tls"): certificate verification against
a private CA, the name checked (server-name or the target's IP address), a clear log line and 502
when verification fails, client certificates for origins that require mutual TLS, the SNI weir
sends, verify = false, and min-version.

Real peers only: curl in front of weir, and HTTPS origins made with Python's ssl module
(tlsutil.TlsOrigin) on 127.0.0.1. Every certificate is made for the run with the openssl command.
"""

import json
import os
import socket
import ssl
import time
import unittest

import tlsutil
import weirtest as wt


class UpstreamTlsTest(wt.WeirTestCase):

    def setUp(self):
        super().setUp()
        self.ca = tlsutil.Pki(self.tmp, "ca", "weir upstream CA")
        self.other_ca = tlsutil.Pki(self.tmp, "other-ca", "some other CA")
        # The origin's certificate names origin.test, backend.example.test and 127.0.0.1.
        self.good = self.ca.leaf("origin", "origin.test",
                                 dns=["origin.test", "backend.example.test"], ips=["127.0.0.1"])

    # -- helpers ----------------------------------------------------------------------------------
    def tls_origin(self, cert_key, **kw) -> tlsutil.TlsOrigin:
        o = tlsutil.TlsOrigin(*cert_key, **kw)
        self.addCleanup(o.stop)
        return o

    def config(self, upstreams: dict[str, tuple[str, str | None]], routes: dict[str, str] | None = None,
               default: str = "app") -> str:
        """upstreams: {name: (target address, inline tls table text or None)}; routes: {path
        prefix: upstream name}."""
        out = ['[system]\nworkers = 1\nshutdown-grace = "2s"\n',
               '[log]\nformat = "json"\nlevel = "info"\n']
        for name, (target, tls) in upstreams.items():
            out.append(f'[upstreams.{name}]\n'
                       f'discovery = {{ use = "static", targets = ["{target}"] }}\n'
                       f'connect-timeout = "3s"\nresponse-timeout = "5s"\n'
                       + (f"tls = {tls}\n" if tls is not None else ""))
        out.append(f'[services.web]\nlisteners = [{{ address = "127.0.0.1:0" }}]\n'
                   f'upstream = "{default}"\n')
        for prefix, up in (routes or {}).items():
            out.append(f'[[services.web.routes]]\npath-prefix = "{prefix}"\nupstream = "{up}"\n')
        return "\n".join(out)

    def get(self, w: wt.Weir, path: str) -> wt.CurlResult:
        return wt.curl(w.url(path), timeout=15)

    def body(self, r: wt.CurlResult) -> dict:
        try:
            return json.loads(r.body)
        except ValueError:
            self.fail(f"not a JSON body from the TLS origin: {r}")

    def lines_since(self, w: wt.Weir, mark: int, needle: str) -> list[str]:
        return [t for t in w.text_lines()[mark:] if needle in t]

    def access_for(self, w: wt.Weir, path: str, timeout: float = 5) -> dict:
        ok = wt.wait_until(lambda: any(a.get("path") == path for a in w.access_logs()), timeout)
        self.assertTrue(ok, f"no access-log line for {path}\n{w.log_text(30)}")
        return [a for a in w.access_logs() if a.get("path") == path][-1]

    # -- (a) verification against ca-file ---------------------------------------------------------
    def test_ca_file_and_server_name_verify_and_proxy(self):
        origin = self.tls_origin(self.good, name="secure")
        tls = f'{{ ca-file = {wt.toml_str(self.ca.ca)}, server-name = "origin.test" }}'
        w = self.start_weir(self.config({"app": (origin.address, tls)}))
        for i in range(3):
            r = self.get(w, f"/a/{i}")
            self.assertStatus(r, 200, f"GET /a/{i} through an upstream with tls + ca-file")
            b = self.body(r)
            self.assertEqual(b["origin"], "secure")
            self.assertEqual(b["path"], f"/a/{i}")
            self.assertEqual(b["sni"], "origin.test")
            xfp = [v for k, v in b["headers"] if k.lower() == "x-forwarded-proto"]
            self.assertEqual(xfp, ["http"], b["headers"])
        ok = origin.handshakes_ok()
        # One TLS connection carried all three requests (it went back to the pool in between).
        self.assertEqual(len(ok), 1, [dataclass_str(c) for c in origin.snapshot()])
        self.assertEqual(len(ok[0].requests), 3)
        self.assertIn(ok[0].version, ("TLSv1.2", "TLSv1.3"))
        self.assertEqual(ok[0].alpn, "http/1.1")  # protocol = "h1" offers only http/1.1
        self.assertEqual(self.access_for(w, "/a/2")["upstream"], origin.address)

    def test_a_pooled_connection_quiet_across_sweeps_is_reused(self):
        """A pooled TLS connection that stays idle gives OpenSSL's record buffers back at the
        worker's sweep (they are not freed between records while it is busy); its next request
        takes new ones and is answered on the same connection."""
        origin = self.tls_origin(self.good, name="secure")
        tls = f'{{ ca-file = {wt.toml_str(self.ca.ca)}, server-name = "origin.test" }}'
        w = self.start_weir(self.config({"app": (origin.address, tls)}))
        for i in range(3):
            if i > 0:
                time.sleep(3)  # (up to two seconds: a worker without client connections rests)
            r = self.get(w, f"/q/{i}")
            self.assertStatus(r, 200, f"GET /q/{i}")
            self.assertEqual(self.body(r)["path"], f"/q/{i}")
        ok = origin.handshakes_ok()
        self.assertEqual(len(ok), 1, [dataclass_str(c) for c in origin.snapshot()])
        self.assertEqual(len(ok[0].requests), 3)

    def test_ip_target_is_checked_against_ip_san_without_sni(self):
        with_ip = self.tls_origin(self.good, name="with-ip")
        dns_only = self.ca.leaf("dnsonly", "origin.test", dns=["origin.test"])
        without_ip = self.tls_origin(dns_only, name="without-ip")
        ca = wt.toml_str(self.ca.ca)
        w = self.start_weir(self.config(
            {"app": (with_ip.address, f"{{ ca-file = {ca} }}"),
             "noip": (without_ip.address, f"{{ ca-file = {ca} }}")}, routes={"/noip": "noip"}))
        r = self.get(w, "/ip")
        self.assertStatus(r, 200, "IP target whose certificate lists 127.0.0.1")
        self.assertIsNone(self.body(r)["sni"], "an IP-address target must get no SNI (RFC 6066)")

        mark = len(w.lines)
        r = self.get(w, "/noip")
        self.assertStatus(r, 502, "IP target whose certificate lists no IP address")
        self.access_for(w, "/noip")
        lines = self.lines_since(w, mark, "certificate verification failed")
        self.assertEqual(len(lines), 1, w.log_text(20))
        self.assertIn("IP address mismatch", lines[0])
        self.assertEqual(without_ip.requests(), [])

    # -- (b) a certificate that does not verify --------------------------------------------------
    def test_untrusted_ca_gives_502_and_one_log_line_per_request(self):
        bad = self.other_ca.leaf("stranger", "origin.test", dns=["origin.test"], ips=["127.0.0.1"])
        origin = self.tls_origin(bad, name="stranger")
        tls = f'{{ ca-file = {wt.toml_str(self.ca.ca)}, server-name = "origin.test" }}'
        w = self.start_weir(self.config({"app": (origin.address, tls)}))
        for i in range(2):
            mark = len(w.lines)
            r = self.get(w, f"/bad/{i}")
            self.assertStatus(r, 502, "origin certificate from an untrusted CA")
            acc = self.access_for(w, f"/bad/{i}")
            self.assertEqual(acc["status"], 502)
            lines = self.lines_since(w, mark, "certificate verification failed")
            self.assertEqual(len(lines), 1,
                             f"expected exactly one verification line for /bad/{i}:\n"
                             + "\n".join(w.text_lines()[mark:]))
            line = lines[0]
            self.assertIn(origin.address, line)
            self.assertIn("upstream app", line)
            self.assertIn("unable to get local issuer certificate", line)
            # Nothing else about the failure: one line per failed request, not a cascade.
            others = [t for t in w.text_lines()[mark:]
                      if '"logger":"access"' not in t and t not in lines and origin.address in t]
            self.assertEqual(others, [], "\n".join(w.text_lines()[mark:]))
        self.assertEqual(origin.requests(), [], "a request reached an unverified origin")
        self.assertFalse(origin.handshakes_ok(), "weir completed a handshake it should refuse")

    def test_wrong_name_gives_502_hostname_mismatch(self):
        origin = self.tls_origin(self.good, name="named")
        tls = f'{{ ca-file = {wt.toml_str(self.ca.ca)}, server-name = "other.test" }}'
        w = self.start_weir(self.config({"app": (origin.address, tls)}))
        mark = len(w.lines)
        r = self.get(w, "/wrong-name")
        self.assertStatus(r, 502, "server-name not in the origin's certificate")
        self.access_for(w, "/wrong-name")
        lines = self.lines_since(w, mark, "certificate verification failed")
        self.assertEqual(len(lines), 1, w.log_text(20))
        self.assertIn("hostname mismatch", lines[0])
        self.assertEqual(origin.requests(), [])
        # The SNI weir sent was the configured (wrong) name.
        origin.settle()
        self.assertEqual({c.sni for c in origin.snapshot()}, {"other.test"})

    def test_default_verification_uses_the_system_roots(self):
        # tls = {} verifies against the system's roots, which do not include the test CA.
        origin = self.tls_origin(self.good, name="private")
        w = self.start_weir(self.config({"app": (origin.address, '{ server-name = "origin.test" }')}))
        mark = len(w.lines)
        r = self.get(w, "/system-roots")
        self.assertStatus(r, 502, "private-CA origin against the system roots")
        self.access_for(w, "/system-roots")
        self.assertEqual(len(self.lines_since(w, mark, "certificate verification failed")), 1,
                         w.log_text(20))
        self.assertEqual(origin.requests(), [])

    # -- (c) mutual TLS ---------------------------------------------------------------------------
    def test_client_certificate_for_an_origin_that_requires_one(self):
        client_ca = tlsutil.Pki(self.tmp, "client-ca", "weir client CA")
        good_client = client_ca.leaf("weir-client", "weir-client", org="weir proxies", client=True)
        rogue_client = self.other_ca.leaf("rogue-client", "weir-client", client=True)
        # One origin per upstream: the pool is keyed per target (see
        # test_upstreams_sharing_a_target_do_not_share_connections).
        origin, origin_nocert, origin_rogue = (
            self.tls_origin(self.good, name="mtls", client_ca=client_ca.ca, require_client_cert=True)
            for _ in range(3))
        ca = wt.toml_str(self.ca.ca)
        with_cert = (f'{{ ca-file = {ca}, server-name = "origin.test", '
                     f'cert = {wt.toml_str(good_client[0])}, key = {wt.toml_str(good_client[1])} }}')
        rogue = (f'{{ ca-file = {ca}, server-name = "origin.test", '
                 f'cert = {wt.toml_str(rogue_client[0])}, key = {wt.toml_str(rogue_client[1])} }}')
        without = f'{{ ca-file = {ca}, server-name = "origin.test" }}'
        w = self.start_weir(self.config(
            {"app": (origin.address, with_cert), "nocert": (origin_nocert.address, without),
             "rogue": (origin_rogue.address, rogue)},
            routes={"/nocert": "nocert", "/rogue": "rogue"}))

        r = self.get(w, "/mtls")
        self.assertStatus(r, 200, "mutual TLS with the configured client certificate")
        b = self.body(r)
        self.assertEqual(b["client_cn"], "weir-client")
        conns = [c for c in origin.handshakes_ok() if c.requests]
        self.assertEqual(len(conns), 1, [dataclass_str(c) for c in origin.snapshot()])
        self.assertEqual(conns[0].client_subject,
                         {"organizationName": "weir proxies", "commonName": "weir-client"})

        for path, what, o in (
                ("/nocert", "no client certificate", origin_nocert),
                ("/rogue", "a client certificate from a CA the origin does not trust", origin_rogue)):
            with self.subTest(case=what):
                r = self.get(w, path)
                self.assertStatus(r, 502, what)
                self.access_for(w, path)
                o.settle()
                new = o.snapshot()
                self.assertTrue(new, "weir did not even connect")
                self.assertTrue(all(c.requests == [] for c in new),
                                f"{what}: the origin served a request: {new}")
                self.assertTrue(any(c.state == "failed" for c in new),
                                f"{what}: the origin's handshake did not fail: {new}")

    # -- (d) SNI ----------------------------------------------------------------------------------
    def test_server_name_is_sent_as_sni(self):
        origin = self.tls_origin(self.good, name="sni")
        other = self.tls_origin(self.good, name="sni-other")
        ca = wt.toml_str(self.ca.ca)
        w = self.start_weir(self.config(
            {"app": (origin.address, f'{{ ca-file = {ca}, server-name = "Backend.Example.Test" }}'),
             "other": (other.address, f'{{ ca-file = {ca}, server-name = "origin.test" }}')},
            routes={"/other": "other"}))
        r = self.get(w, "/sni")
        self.assertStatus(r, 200, "server-name backend.example.test")
        self.assertEqual(self.body(r)["sni"], "backend.example.test")  # stored in lowercase
        r = self.get(w, "/other")
        self.assertStatus(r, 200, "server-name origin.test")
        self.assertEqual(self.body(r)["sni"], "origin.test")
        self.assertEqual([c.sni for c in origin.handshakes_ok()], ["backend.example.test"])
        self.assertEqual([c.sni for c in other.handshakes_ok()], ["origin.test"])

    def test_host_name_target_is_sent_and_verified(self):
        """Without server-name, a target published as a host name is checked against that name
        and gets it as SNI."""
        try:
            first = socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0]
        except socket.gaierror as e:  # a bare chroot may have no /etc/hosts
            self.skipTest(f"the name localhost does not resolve here: {e}")
        local = self.ca.leaf("localhost", "localhost", dns=["localhost"])
        named = self.tls_origin(local, name="localhost", host=first)
        wrong = self.tls_origin(self.good, name="not-localhost", host=first)
        ca = wt.toml_str(self.ca.ca)
        w = self.start_weir(self.config(
            {"app": (f"localhost:{named.addr[1]}", f"{{ ca-file = {ca} }}"),
             "wrong": (f"localhost:{wrong.addr[1]}", f"{{ ca-file = {ca} }}")},
            routes={"/wrong": "wrong"}))
        r = self.get(w, "/localhost")
        self.assertStatus(r, 200, "host-name target whose certificate names it")
        self.assertEqual(self.body(r)["sni"], "localhost")
        mark = len(w.lines)
        r = self.get(w, "/wrong")
        self.assertStatus(r, 502, "host-name target whose certificate names something else")
        self.access_for(w, "/wrong")
        lines = self.lines_since(w, mark, "certificate verification failed")
        self.assertEqual(len(lines), 1, w.log_text(20))
        self.assertIn("hostname mismatch", lines[0])
        self.assertEqual(wrong.requests(), [])

    def test_proxy_header_comes_before_the_tls_handshake(self):
        for version in ("v1", "v2"):
            with self.subTest(version=version):
                origin = self.tls_origin(self.good, name=f"pp-{version}", proxy_protocol=True)
                text = self.config({"app": (origin.address, f'{{ ca-file = {wt.toml_str(self.ca.ca)}, '
                                                            f'server-name = "origin.test" }}')})
                text = text.replace('response-timeout = "5s"\n',
                                    f'response-timeout = "5s"\nproxy-protocol = "{version}"\n')
                w = self.start_weir(text)
                r = wt.curl("-w", "%{local_port}", w.url(f"/pp-{version}"), timeout=15)
                self.assertStatus(r, 200, f"TLS upstream with proxy-protocol {version}")
                conns = origin.handshakes_ok()
                self.assertEqual(len(conns), 1, [dataclass_str(c) for c in origin.snapshot()])
                header = conns[0].proxy_header
                lport, wport = int(r.stdout), w.addr()[1]
                if version == "v1":
                    self.assertEqual(header, f"PROXY TCP4 127.0.0.1 127.0.0.1 {lport} {wport}\r\n"
                                     .encode())
                else:
                    self.assertEqual(header, b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"
                                     + bytes([127, 0, 0, 1, 127, 0, 0, 1])
                                     + lport.to_bytes(2, "big") + wport.to_bytes(2, "big"))
                w.stop()

    # -- (e) verify = false -----------------------------------------------------------------------
    def test_verify_false_accepts_a_self_signed_origin(self):
        crt_key = tlsutil.self_signed(self.tmp, "selfsigned", "self.test", dns=["self.test"])
        origin, strict, misnamed = (self.tls_origin(crt_key, name="selfsigned") for _ in range(3))
        w = self.start_weir(self.config(
            {"app": (origin.address, "{ verify = false }"),
             "strict": (strict.address, '{ server-name = "self.test" }'),
             "misnamed": (misnamed.address, '{ verify = false, server-name = "not-self.test" }')},
            routes={"/strict": "strict", "/misnamed": "misnamed"}))
        r = self.get(w, "/insecure")
        self.assertStatus(r, 200, "verify = false, self-signed origin")
        self.assertEqual(self.body(r)["origin"], "selfsigned")
        r = self.get(w, "/misnamed")
        self.assertStatus(r, 200, "verify = false ignores the name too")
        self.assertEqual(self.body(r)["sni"], "not-self.test")  # but still sends the SNI
        mark = len(w.lines)
        r = self.get(w, "/strict")
        self.assertStatus(r, 502, "the same self-signed origin with verification on")
        self.access_for(w, "/strict")
        lines = self.lines_since(w, mark, "certificate verification failed")
        self.assertEqual(len(lines), 1, w.log_text(20))
        self.assertIn("self-signed certificate", lines[0])
        self.assertEqual(strict.requests(), [])

    # -- min-version ------------------------------------------------------------------------------
    def test_min_version_13_refuses_a_tls12_origin(self):
        origin, origin2 = (self.tls_origin(self.good, name="old", max_version=ssl.TLSVersion.TLSv1_2)
                           for _ in range(2))
        ca = wt.toml_str(self.ca.ca)
        w = self.start_weir(self.config(
            {"app": (origin.address, f'{{ ca-file = {ca}, server-name = "origin.test" }}'),
             "modern": (origin2.address,
                        f'{{ ca-file = {ca}, server-name = "origin.test", min-version = "1.3" }}')},
            routes={"/modern": "modern"}))
        r = self.get(w, "/default")
        self.assertStatus(r, 200, "TLS 1.2 origin with the default min-version 1.2")
        self.assertEqual(origin.handshakes_ok()[0].version, "TLSv1.2")
        mark = len(w.lines)
        r = self.get(w, "/modern")
        self.assertStatus(r, 502, "TLS 1.2 origin with min-version 1.3")
        self.access_for(w, "/modern")
        self.assertEqual(len(self.lines_since(w, mark, "TLS handshake")), 1, w.log_text(20))
        self.assertEqual(origin2.requests(), [])
        self.assertFalse(origin2.handshakes_ok())

    # -- the connection pool and TLS settings -----------------------------------------------------
    def test_upstreams_sharing_a_target_do_not_share_connections(self):
        """Two upstreams may list the same target address with different TLS settings. A pooled
        connection made for one must never carry a request of the other: that would skip the
        other's certificate verification, client certificate, SNI or min-version."""
        client_ca = tlsutil.Pki(self.tmp, "client-ca", "weir client CA")
        client = client_ca.leaf("weir-client", "weir-client", client=True)
        stranger = self.other_ca.leaf("stranger", "origin.test", dns=["origin.test"])
        ca = wt.toml_str(self.ca.ca)
        cases = [
            # (what, origin certificate, origin options, first upstream's tls, second's tls)
            ("verify = false, then a verifying upstream", stranger, {},
             "{ verify = false }",
             f'{{ ca-file = {ca}, server-name = "origin.test" }}'),
            ("a client certificate, then none", self.good,
             {"client_ca": client_ca.ca, "require_client_cert": True},
             f'{{ ca-file = {ca}, server-name = "origin.test", cert = {wt.toml_str(client[0])}, '
             f'key = {wt.toml_str(client[1])} }}',
             f'{{ ca-file = {ca}, server-name = "origin.test" }}'),
            ("TLS 1.2 allowed, then min-version 1.3", self.good,
             {"max_version": ssl.TLSVersion.TLSv1_2},
             f'{{ ca-file = {ca}, server-name = "origin.test" }}',
             f'{{ ca-file = {ca}, server-name = "origin.test", min-version = "1.3" }}'),
        ]
        for what, cert, opts, first, second in cases:
            with self.subTest(case=what):
                origin = self.tls_origin(cert, name="shared", **opts)
                w = self.start_weir(self.config(
                    {"app": (origin.address, first), "second": (origin.address, second)},
                    routes={"/second": "second"}))
                r = self.get(w, "/first")
                self.assertStatus(r, 200, f"{what}: first upstream")
                r = self.get(w, "/second")
                self.assertStatus(r, 502, f"{what}: second upstream, whose TLS settings the "
                                          f"origin does not satisfy (a pooled connection of the "
                                          f"first upstream was reused)")
                self.assertEqual([q["path"] for q in origin.requests()], ["/first"])
                w.stop()

        # SNI: each upstream's own server-name, even on one target address.
        origin = self.tls_origin(self.good, name="shared-sni")
        w = self.start_weir(self.config(
            {"app": (origin.address, f'{{ ca-file = {ca}, server-name = "origin.test" }}'),
             "second": (origin.address, f'{{ ca-file = {ca}, server-name = "backend.example.test" }}')},
            routes={"/second": "second"}))
        self.assertEqual(self.body(self.get(w, "/first"))["sni"], "origin.test")
        self.assertEqual(self.body(self.get(w, "/second"))["sni"], "backend.example.test")

    # -- files ------------------------------------------------------------------------------------
    def test_check_reports_unusable_tls_files(self):
        missing = os.path.join(self.tmp, "missing-ca.pem")
        garbage = os.path.join(self.tmp, "garbage.pem")
        with open(garbage, "w") as f:
            f.write("not a certificate\n")
        path = os.path.join(self.tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(self.config({"app": ("127.0.0.1:9", f"{{ ca-file = {wt.toml_str(missing)} }}")}))
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"upstreams\.app\.tls\.ca-file: cannot read .*missing-ca\.pem")
        with open(path, "w") as f:
            f.write(self.config({"app": ("127.0.0.1:9", f"{{ ca-file = {wt.toml_str(garbage)} }}")}))
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("cannot load CA file", p.stderr)
        self.assertIn(garbage, p.stderr)


def dataclass_str(c) -> str:
    return (f"conn {c.conn_id}: {c.state} sni={c.sni} version={c.version} error={c.error} "
            f"requests={[r['path'] for r in c.requests]}")


if __name__ == "__main__":
    unittest.main()
