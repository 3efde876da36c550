#!/usr/bin/env python3
"""Routing: routes by host (exact names and *.wildcards), by method, by path regular expression;
precedence (exact path, then the longest prefix, then regular expressions in file order); the
no-route response; per-route timeout overrides."""

import http.client
import time

import weirtest as wt


def routing_config(upstreams: dict[str, str], routes: str, *, default: str | None = None,
                   service_extra: str = "", extra: str = "") -> str:
    """One upstream per origin ({name: address}), service `web` with these [[routes]] text."""
    out = ["[system]\nworkers = 1\nshutdown-grace = \"2s\"\n",
           "[log]\nformat = \"json\"\naccess-log = true\n"]
    for name, address in upstreams.items():
        out.append(f"[upstreams.{name}]\n"
                   f"discovery = {{ use = \"static\", targets = [{wt.toml_str(address)}] }}\n")
    svc = "[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\n"
    if default:
        svc += f"upstream = \"{default}\"\n"
    out.append(svc + service_extra)
    out.append(routes.replace("[[routes]]", "[[services.web.routes]]"))
    out.append(extra)
    return "\n".join(out)


def request(addr, method: str, path: str, host: str = "routing.test", body: bytes | None = None,
            timeout: float = 10.0) -> tuple[int, str | None, bytes, http.client.HTTPResponse]:
    """One request on its own connection: (status, x-origin, body, response)."""
    conn = http.client.HTTPConnection(addr[0], addr[1], timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Host": host})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheader("x-origin"), data, resp
    finally:
        conn.close()


class RoutingTest(wt.WeirTestCase):

    def named_origins(self, *names, **behaviours):
        """An origin per name (answering its own name, in x-origin and in the body)."""
        return {n: self.origin(n, behaviours.get(n.replace("-", "_"))) for n in names}

    def assertRoutes(self, w, cases, origins):
        """cases: (method, path, host, expected origin name)."""
        for method, path, host, want in cases:
            with self.subTest(method=method, path=path, host=host):
                status, origin, body, _ = request(w.addr(), method, path, host)
                self.assertEqual(status, 200, f"{method} {path} Host: {host}: {body[:200]!r}")
                self.assertEqual(origin, want, f"{method} {path} Host: {host} went to {origin}, "
                                               f"expected {want}")
                # The chosen origin got the request as sent.
                last = origins[want].last()
                self.assertEqual((last.method, last.target), (method, path))

    # ---------------------------------------------------------------------------------------------
    def test_host_routes(self):
        names = ("host-exact", "host-wild", "host-list", "default")
        o = self.named_origins(*names)
        routes = """
[[routes]]
host = "api.example.test"
upstream = "host-exact"

[[routes]]
host = "*.example.test"
upstream = "host-wild"

[[routes]]
host = ["one.test", "Two.Test"]
path-prefix = "/only"
upstream = "host-list"
"""
        w = self.start_weir(routing_config({n: o[n].address for n in names}, routes,
                                           default="default"))
        self.assertRoutes(w, [
            ("GET", "/x", "api.example.test", "host-exact"),
            ("GET", "/x", "API.Example.TEST:8443", "host-exact"),  # no case, no port
            ("GET", "/x", "api.example.test.", "host-exact"),  # trailing dot
            ("GET", "/x", "www.example.test", "host-wild"),
            ("GET", "/deep/path", "WWW.example.test:80", "host-wild"),
            ("GET", "/x", "a.b.example.test", "default"),  # a wildcard is one label
            ("GET", "/x", "example.test", "default"),
            ("GET", "/x", "notexample.test", "default"),
            ("GET", "/only/x", "two.test", "host-list"),
            ("GET", "/only", "one.test", "host-list"),
            ("GET", "/other", "two.test", "default"),  # host matches, path does not
            ("GET", "/only", "three.test", "default"),
        ], o)
        # A request in absolute form is routed by the authority of its target, not by Host.
        r = wt.raw_exchange(w.addr(), "GET http://api.example.test/abs HTTP/1.1\r\n"
                                      "Host: other.test\r\nConnection: close\r\n\r\n")
        self.assertEqual((r.status, r.header("x-origin")), (200, "host-exact"), str(r))
        self.assertEqual(o["host-exact"].last().header("host"), "api.example.test")

    def test_method_routes(self):
        names = ("writes", "reads", "deleter", "default")
        o = self.named_origins(*names)
        routes = """
[[routes]]
path-prefix = "/m"
methods = ["POST", "PUT"]
upstream = "writes"

[[routes]]
path-prefix = "/m"
upstream = "reads"

[[routes]]
methods = ["DELETE"]
upstream = "deleter"
"""
        w = self.start_weir(routing_config({n: o[n].address for n in names}, routes,
                                           default="default"))
        self.assertRoutes(w, [
            ("GET", "/m", "r.test", "reads"),
            ("POST", "/m", "r.test", "writes"),
            ("PUT", "/m/x", "r.test", "writes"),
            ("DELETE", "/m", "r.test", "reads"),  # a prefix route beats a route without a path
            ("OPTIONS", "/m/y", "r.test", "reads"),
            ("DELETE", "/zzz", "r.test", "deleter"),
            ("GET", "/zzz", "r.test", "default"),
            ("POST", "/zzz", "r.test", "default"),
        ], o)
        status, origin, _, _ = request(w.addr(), "HEAD", "/m", "r.test")
        self.assertEqual((status, origin), (200, "reads"))

    def test_path_precedence_exact_prefix_regex(self):
        names = ("regex-abc", "regex-ab", "prefix-a", "prefix-ab", "exact-abc", "regex-png",
                 "regex-img", "default")
        o = self.named_origins(*names)
        # Written so that file order alone would give other answers: regexes first, the shorter
        # prefix before the longer one, the exact path last.
        routes = r"""
[[routes]]
path-regex = "^/a/b/c"
upstream = "regex-abc"

[[routes]]
path-regex = "^/a/b"
upstream = "regex-ab"

[[routes]]
path-prefix = "/a"
upstream = "prefix-a"

[[routes]]
path-prefix = "/a/b"
upstream = "prefix-ab"

[[routes]]
path-exact = "/a/b/c"
upstream = "exact-abc"

[[routes]]
path-regex = '\.png$'
upstream = "regex-png"

[[routes]]
path-regex = "^/img/"
upstream = "regex-img"
"""
        w = self.start_weir(routing_config({n: o[n].address for n in names}, routes,
                                           default="default"))
        self.assertRoutes(w, [
            ("GET", "/a/b/c", "p.test", "exact-abc"),  # exact beats the longest prefix
            ("GET", "/a/b/c?q=1", "p.test", "exact-abc"),  # the query is not part of the path
            ("GET", "/a/b/c/d", "p.test", "prefix-ab"),  # a prefix beats an earlier regex
            ("GET", "/a/b", "p.test", "prefix-ab"),
            ("GET", "/a/bc", "p.test", "prefix-a"),  # /a/b only on a segment boundary
            ("GET", "/a/x", "p.test", "prefix-a"),
            ("GET", "/a", "p.test", "prefix-a"),
            ("GET", "/ax", "p.test", "default"),  # no prefix on a segment boundary, no regex
            ("GET", "/img/logo.png", "p.test", "regex-png"),  # both regexes match: file order
            ("GET", "/img/logo.gif", "p.test", "regex-img"),
            ("GET", "/deep/down/x.png", "p.test", "regex-png"),  # a search, not anchored
            ("GET", "/x.png?size=2", "p.test", "regex-png"),
            ("GET", "/x?f=.png", "p.test", "default"),  # regexes see the path only
            ("GET", "/zzz", "p.test", "default"),
        ], o)
        # The access log names the upstream target each request went to.
        logs = w.wait_access_logs(14)
        self.assertEqual(len([a for a in logs if a.get("upstream") == o["default"].address]), 3,
                         f"access log: {logs}")

    # ---------------------------------------------------------------------------------------------
    def test_no_route_response(self):
        known = self.origin("known")
        routes = """
[[routes]]
path-prefix = "/known"
upstream = "known"
"""
        service_extra = ('no-route = { status = 421, body = "no route for this request\\n", '
                         'content-type = "text/x-no-route" }\n')
        # A second service without no-route: the plain 404.
        extra = ("[services.plain]\nlisteners = [{ address = \"127.0.0.1:0\" }]\n\n"
                 "[[services.plain.routes]]\npath-prefix = \"/known\"\nupstream = \"known\"\n")
        w = self.start_weir(routing_config({"known": known.address}, routes,
                                           service_extra=service_extra, extra=extra))
        status, origin, body, resp = request(w.addr(), "GET", "/unknown/x")
        self.assertEqual(status, 421)
        self.assertIsNone(origin)
        self.assertEqual(body, b"no route for this request\n")
        self.assertEqual(resp.getheader("content-type"), "text/x-no-route")
        self.assertEqual(resp.getheader("content-length"), str(len(body)))
        status, _, body, resp = request(w.addr(), "HEAD", "/unknown/x")
        self.assertEqual(status, 421)
        self.assertEqual(body, b"")
        status, _, body, resp = request(w.addr(), "POST", "/nothing", body=b"payload")
        self.assertEqual(status, 421, "POST with a body to no route")
        self.assertEqual(body, b"no route for this request\n")
        self.assertEqual(known.request_count, 0, "a request with no route reached an upstream")
        status, origin, _, _ = request(w.addr(), "GET", "/known/y")
        self.assertEqual((status, origin), (200, "known"))
        status, origin, body, _ = request(w.addr("plain"), "GET", "/unknown")
        self.assertEqual(status, 404, "the default no-route response")
        self.assertIsNone(origin)
        self.assertEqual(known.request_count, 1)
        logs = [a for a in w.wait_access_logs(5) if a.get("path", "").startswith("/unknown")]
        self.assertEqual(sorted(a["status"] for a in logs), [404, 421, 421], f"access log: {logs}")

    # ---------------------------------------------------------------------------------------------
    def test_per_route_response_timeout(self):
        late = wt.fixed("late", delay=1.0)
        o = self.origin("app", wt.fixed("app"),
                        paths={"/short/*": late, "/long/*": late, "/whole/*": late})
        routes = """
[[routes]]
path-prefix = "/short"
upstream = "app"
response-timeout = "300ms"

[[routes]]
path-prefix = "/whole"
upstream = "app"
request-timeout = "400ms"

[[routes]]
path-prefix = "/long"
upstream = "app"
"""
        w = self.start_weir(routing_config({"app": o.address}, routes, default="app"))
        t0 = time.monotonic()
        status, origin, body, _ = request(w.addr(), "GET", "/short/x")
        dt = time.monotonic() - t0
        self.assertEqual(status, 504, f"route with response-timeout = 300ms, origin takes 1 s: "
                                      f"{body[:200]!r}")
        self.assertGreaterEqual(dt, 0.25, f"504 after {dt:.2f}s, before the 300ms timeout")
        self.assertLess(dt, 0.9, f"504 only after {dt:.2f}s with response-timeout = 300ms")
        t0 = time.monotonic()
        status, origin, body, _ = request(w.addr(), "GET", "/whole/x")
        dt = time.monotonic() - t0
        self.assertEqual(status, 504, f"route with request-timeout = 400ms: {body[:200]!r}")
        self.assertGreaterEqual(dt, 0.35, f"504 after {dt:.2f}s, before the 400ms timeout")
        self.assertLess(dt, 0.9, f"504 only after {dt:.2f}s with request-timeout = 400ms")
        t0 = time.monotonic()
        status, origin, body, _ = request(w.addr(), "GET", "/long/x")
        dt = time.monotonic() - t0
        self.assertEqual((status, origin, body), (200, "app", b"late"),
                         "route with the upstream's default response-timeout (60s)")
        self.assertGreaterEqual(dt, 0.9)
        status, origin, _, _ = request(w.addr(), "GET", "/other")
        self.assertEqual((status, origin), (200, "app"))
        # A response timeout is not retried.
        self.assertEqual(len([r for r in o.snapshot() if r.path == "/short/x"]), 1)


if __name__ == "__main__":
    wt.main()
