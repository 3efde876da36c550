#!/usr/bin/env python3
"""Upstream connection pooling: keep-alive connections to origins are reused."""

import http.client

import weirtest as wt


class PoolTest(wt.WeirTestCase):

    def test_1000_requests_one_client_connection(self):
        o = self.origin("a", wt.fixed("pooled"))
        w = self.start_weir(wt.basic_config({"app": o.address}, upstream_extra="pool-size = 4",
                                            access_log=False))
        host, port = w.addr()
        conn = http.client.HTTPConnection(host, port, timeout=10)
        self.addCleanup(conn.close)
        first_sock = None
        for i in range(1000):
            conn.request("GET", f"/pool/{i}", headers={"Host": "pool.test"})
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 200, f"request {i}: {resp.status} {body[:200]!r}")
            self.assertEqual(body, b"pooled", f"request {i}")
            if first_sock is None:
                first_sock = conn.sock
            self.assertIs(conn.sock, first_sock,
                          f"weir closed the client keep-alive connection after request {i}")
            self.assertIsNotNone(conn.sock, f"weir closed the client connection at request {i}")
        self.assertEqual(o.request_count, 1000)
        self.assertLessEqual(o.accepted, 4, f"origin accepted {o.accepted} connections for 1000 "
                                            f"sequential requests with pool-size = 4")

    def test_pool_shared_across_client_connections(self):
        o = self.origin("a", wt.fixed("pooled"))
        w = self.start_weir(wt.basic_config({"app": o.address}, upstream_extra="pool-size = 4",
                                            access_log=False))
        for i in range(30):
            r = wt.curl(w.url(f"/fresh/{i}"))
            self.assertStatus(r, 200, f"request {i} on its own client connection")
        self.assertEqual(o.request_count, 30)
        self.assertLessEqual(o.accepted, 4, f"origin accepted {o.accepted} connections for 30 "
                                            f"sequential client connections with pool-size = 4")


if __name__ == "__main__":
    wt.main()
