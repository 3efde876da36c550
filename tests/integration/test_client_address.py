#!/usr/bin/env python3
"""The client address from trusted proxies (docs/configuration.md, "Client address"):
trusted-proxies makes weir believe X-Forwarded-For and Forwarded from the listed peers, walking the
chain from the right to the first address that is not a trusted proxy; untrusted peers are their
own client address whatever they send. The access log shows the client address; the origin sees
X-Forwarded-For with the peer appended (weir never rewrites what came before).

Peers: curl and raw sockets on 127.0.0.1, the weirtest echo origin.
"""

import unittest

import weirtest as wt


def client_ip(access: dict) -> str:
    return access["client"].rpartition(":")[0].strip("[]")


class ClientAddressTest(wt.WeirTestCase):

    def setUp(self):
        super().setUp()
        self.o = self.origin("o", wt.echo())

    def start(self, trusted: list[str] | None, listener_extra: str = "") -> wt.Weir:
        extra = ""
        if trusted is not None:
            extra = "trusted-proxies = [" + ", ".join(wt.toml_str(t) for t in trusted) + "]\n"
        text = wt.basic_config({"app": self.o.address}, service_extra=extra)
        if listener_extra:
            text = text.replace('listeners = [{ address = "127.0.0.1:0" }]',
                                f'listeners = [{{ address = "127.0.0.1:0"{listener_extra} }}]')
        return self.start_weir(text)

    def request(self, w: wt.Weir, path: str, *headers: tuple[str, str]) -> tuple[dict, wt.RequestRecord]:
        args = []
        for k, v in headers:
            args += ["-H", f"{k}: {v}"]
        r = wt.curl(*args, w.url(path))
        self.assertStatus(r, 200, f"GET {path}")
        rec = self.o.last()
        self.assertEqual(rec.path, path)
        ok = wt.wait_until(lambda: any(a.get("path") == path for a in w.access_logs()), 5)
        self.assertTrue(ok, f"no access-log line for {path}")
        return [a for a in w.access_logs() if a.get("path") == path][-1], rec

    def test_trusted_peer_x_forwarded_for(self):
        w = self.start(["127.0.0.1/32"])
        cases = [
            # (path, headers, expected client, expected X-Forwarded-For at the origin)
            ("/xff", [("X-Forwarded-For", "198.51.100.9")], "198.51.100.9",
             "198.51.100.9, 127.0.0.1"),
            # The rightmost untrusted address wins; trusted hops (127.0.0.1) are skipped.
            ("/xff-chain", [("X-Forwarded-For", "192.0.2.1, 198.51.100.9, 127.0.0.1")],
             "198.51.100.9", "192.0.2.1, 198.51.100.9, 127.0.0.1, 127.0.0.1"),
            # A list split over two header lines is one chain.
            ("/xff-lines", [("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "198.51.100.10:8080")],
             "198.51.100.10", "192.0.2.1, 198.51.100.10:8080, 127.0.0.1"),
            # Something that is not an address stops the walk: the last trusted address read.
            ("/xff-garbage", [("X-Forwarded-For", "198.51.100.9, unknown")], "127.0.0.1",
             "198.51.100.9, unknown, 127.0.0.1"),
            # Every hop trusted: the leftmost one.
            ("/xff-all-trusted", [("X-Forwarded-For", "127.0.0.1")], "127.0.0.1",
             "127.0.0.1, 127.0.0.1"),
        ]
        for path, headers, client, xff in cases:
            with self.subTest(path=path):
                acc, rec = self.request(w, path, *headers)
                self.assertEqual(client_ip(acc), client, acc)
                self.assertEqual(rec.header_all("x-forwarded-for"), [xff], rec.headers)

    def test_trusted_peer_forwarded(self):
        w = self.start(["127.0.0.1/32", "10.0.0.0/8"])
        cases = [
            ("/fwd", [("Forwarded", "for=198.51.100.9")], "198.51.100.9"),
            ("/fwd-quoted-v6", [("Forwarded", 'for="[2001:db8::9]:4711";proto=https')], "2001:db8::9"),
            ("/fwd-chain", [("Forwarded", "for=192.0.2.1, for=198.51.100.11;by=10.0.0.1, for=10.1.2.3")],
             "198.51.100.11"),
            # Forwarded, when present, is used instead of X-Forwarded-For.
            ("/fwd-over-xff", [("Forwarded", "for=198.51.100.12"), ("X-Forwarded-For", "192.0.2.99")],
             "198.51.100.12"),
            # An obfuscated identifier stops the walk at the last trusted address (the peer).
            ("/fwd-obfuscated", [("Forwarded", "for=_hidden")], "127.0.0.1"),
        ]
        for path, headers, client in cases:
            with self.subTest(path=path):
                acc, rec = self.request(w, path, *headers)
                self.assertEqual(client_ip(acc), client, acc)
                # Forwarded is passed on untouched; X-Forwarded-For gets the peer appended.
                fwd = [v for k, v in headers if k == "Forwarded"]
                self.assertEqual(rec.header_all("forwarded"), fwd)
                xff = [v for k, v in headers if k == "X-Forwarded-For"]
                self.assertEqual(rec.header_all("x-forwarded-for"),
                                 [", ".join(xff + ["127.0.0.1"])])

    def test_untrusted_peer_keeps_its_own_address(self):
        for trusted in (None, ["10.0.0.0/8", "::1"]):
            with self.subTest(trusted=trusted):
                w = self.start(trusted)
                acc, rec = self.request(w, "/untrusted", ("X-Forwarded-For", "198.51.100.9"),
                                        ("Forwarded", "for=198.51.100.10"))
                self.assertEqual(client_ip(acc), "127.0.0.1", acc)
                self.assertEqual(rec.header_all("x-forwarded-for"), ["198.51.100.9, 127.0.0.1"])
                w.stop()

    def test_http2_requests_follow_the_same_rules(self):
        w = self.start(["127.0.0.1/32"], listener_extra=", h2c = true")
        p = wt.curl_raw("--http2-prior-knowledge", "-H", "X-Forwarded-For: 198.51.100.9",
                        "-o", "/dev/null", "-w", "%{http_code} %{http_version}", w.url("/h2"),
                        timeout=15)
        self.assertEqual(p.stdout.decode(), "200 2", p.stderr)
        self.assertEqual(self.o.last().header_all("x-forwarded-for"), ["198.51.100.9, 127.0.0.1"])
        acc = [a for a in w.wait_access_logs(1) if a["path"] == "/h2"][0]
        self.assertEqual(client_ip(acc), "198.51.100.9", acc)

    def test_proxy_protocol_peer_then_trusted_proxies(self):
        """The documented example: a load balancer sends a PROXY header naming a CDN edge
        (trusted), which appended the visitor to X-Forwarded-For: the visitor is the client."""
        w = self.start(["203.0.113.0/24"], listener_extra=', proxy-protocol-from = ["127.0.0.1"]')
        with wt.RawConn(w.addr(), timeout=10) as c:
            c.send(b"PROXY TCP4 203.0.113.9 192.0.2.10 40000 80\r\n"
                   b"GET /cdn HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 198.51.100.7\r\n\r\n")
            self.assertStatus(c.read_final_response()[0], 200, "PROXY header + XFF")
            # A request whose chain is only trusted hops: the leftmost of them.
            c.send(b"GET /cdn-only HTTP/1.1\r\nHost: a.test\r\n\r\n")
            self.assertStatus(c.read_final_response()[0], 200, "PROXY header, no XFF")
        acc = [a for a in w.wait_access_logs(2) if a["path"] == "/cdn"][0]
        self.assertEqual(client_ip(acc), "198.51.100.7", acc)
        self.assertEqual(self.o.snapshot()[0].header("x-forwarded-for"), "198.51.100.7, 203.0.113.9")
        acc = [a for a in w.access_logs() if a["path"] == "/cdn-only"][0]
        self.assertEqual(acc["client"], "203.0.113.9:40000", acc)


if __name__ == "__main__":
    unittest.main()
