#!/usr/bin/env python3
"""Unix domain sockets (docs/configuration.md, listeners and discovery static): a `unix:/path`
listener with its file mode, carrying traffic from curl --unix-socket; a static target
`unix:/path` to an origin on a Unix socket; the socket file replaced at start when stale, never
when it is not a socket, and removed when weir exits.

Peers: curl, raw AF_UNIX sockets and the weirtest origin listening on a Unix socket.
"""

import os
import signal
import socket
import stat
import time
import unittest

import weirtest as wt


class UnixSocketTest(wt.WeirTestCase):

    def config(self, upstream_target: str, listeners: str, workers: int = 1) -> str:
        return f"""
[system]
workers = {workers}
shutdown-grace = "2s"
[log]
format = "json"
[upstreams.app]
discovery = {{ use = "static", targets = ["{upstream_target}"] }}
[services.web]
listeners = [{listeners}]
upstream = "app"
"""

    def curl_unix(self, path: str, url: str, *args: str) -> wt.CurlResult:
        return wt.curl("--unix-socket", path, *args, url, timeout=15)

    def test_listener_mode_and_traffic(self):
        o = self.origin("o", wt.echo())
        modes = {"a.sock": ("0o640", 0o640), "b.sock": ('"0600"', 0o600), "c.sock": (None, 0o660)}
        listeners = []
        for name, (text, _) in modes.items():
            path = os.path.join(self.tmp, name)
            listeners.append(f'{{ address = "unix:{path}"' + (f", mode = {text}" if text else "")
                             + " }")
        listeners.append('{ address = "127.0.0.1:0" }')
        w = self.start_weir(self.config(o.address, ", ".join(listeners), workers=2))
        self.assertEqual(sorted(w.unix_listeners["web"]),
                         sorted(os.path.join(self.tmp, n) for n in modes))
        self.assertEqual(len(w.listeners["web"]), 1)  # and the TCP one
        for name, (_, mode) in modes.items():
            path = os.path.join(self.tmp, name)
            with self.subTest(socket=name):
                st = os.stat(path)
                self.assertTrue(stat.S_ISSOCK(st.st_mode), oct(st.st_mode))
                self.assertEqual(stat.S_IMODE(st.st_mode), mode, oct(st.st_mode))
                for i in range(4):  # both workers accept on the one socket
                    r = self.curl_unix(path, f"http://unix.test/{name}/{i}")
                    self.assertStatus(r, 200, f"GET over {path}")
                    rec = o.last()
                    self.assertEqual(rec.path, f"/{name}/{i}")
                    self.assertEqual(rec.header("x-forwarded-host"), "unix.test")
                    self.assertEqual(rec.header("x-forwarded-proto"), "http")
        acc = [a for a in w.wait_access_logs(12) if a["path"].startswith("/a.sock/")]
        self.assertEqual(len(acc), 4, w.access_logs())
        self.assertTrue(all(a["status"] == 200 for a in acc))
        # The TCP listener of the same service works as well.
        self.assertStatus(wt.curl(w.url("/tcp")), 200, "TCP listener next to Unix ones")

    def test_raw_keepalive_and_pipelining_over_a_unix_listener(self):
        o = self.origin("o", wt.fixed("unix ok"))
        path = os.path.join(self.tmp, "raw.sock")
        w = self.start_weir(self.config(o.address, f'{{ address = "unix:{path}" }}'))
        self.assertEqual(w.unix_path(), path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            s.sendall(b"GET /one HTTP/1.1\r\nHost: u\r\n\r\nGET /two HTTP/1.1\r\nHost: u\r\n\r\n")
            rd = wt.SockReader(s, None, 10)
            for p in ("/one", "/two"):
                head = rd.read_until(b"\r\n\r\n", 65536)
                first, headers = wt.parse_head(head)
                self.assertTrue(first.startswith("HTTP/1.1 200"), first)
                self.assertEqual(rd.read_exact(int(wt.hget(headers, "content-length"))), b"unix ok")
        self.assertEqual([r.path for r in o.snapshot()], ["/one", "/two"])

    def test_parked_unix_connection_is_served_again(self):
        # Quiet for longer than weir's park delay (100 ms), a keep-alive connection on a Unix
        # listener is parked like a TCP one; its next request is served on the same connection.
        o = self.origin("o", wt.fixed("unix ok"))
        path = os.path.join(self.tmp, "park.sock")
        w = self.start_weir(self.config(o.address, f'{{ address = "unix:{path}" }}'))
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(path)
            rd = wt.SockReader(s, None, 10)
            for p in ("/before", "/after"):
                s.sendall(f"GET {p} HTTP/1.1\r\nHost: u\r\n\r\n".encode())
                head = rd.read_until(b"\r\n\r\n", 65536)
                first, headers = wt.parse_head(head)
                self.assertTrue(first.startswith("HTTP/1.1 200"), first)
                self.assertEqual(rd.read_exact(int(wt.hget(headers, "content-length"))), b"unix ok")
                time.sleep(0.5)
        self.assertEqual([r.path for r in o.snapshot()], ["/before", "/after"])
        acc = [a for a in w.wait_access_logs(2) if a["path"] in ("/before", "/after")]
        self.assertEqual(len(acc), 2, w.access_logs())
        # The client shows as the Unix socket peer before and after parking alike.
        self.assertEqual(acc[0]["client"], acc[1]["client"], acc)
        self.assertTrue(acc[1]["client"].startswith("unix"), acc)

    def test_static_unix_target(self):
        origin_path = os.path.join(self.tmp, "origin.sock")
        o = self.origin("unix-origin", wt.echo(), unix_path=origin_path)
        self.assertEqual(o.address, f"unix:{origin_path}")
        w = self.start_weir(self.config(o.address, '{ address = "127.0.0.1:0" }'))
        for i in range(3):
            r = wt.curl("--data-binary", f"body-{i}", w.url(f"/to-unix/{i}"))
            self.assertStatus(r, 200, "GET to a unix: target")
            self.assertEqual(r.header("x-origin"), "unix-origin")
        recs = o.snapshot()
        self.assertEqual([r.path for r in recs], ["/to-unix/0", "/to-unix/1", "/to-unix/2"])
        self.assertEqual([r.body for r in recs], [b"body-0", b"body-1", b"body-2"])
        self.assertEqual(recs[0].header("x-forwarded-for"), "127.0.0.1")
        # Keep-alive towards the Unix target: one connection for the three requests.
        self.assertEqual(o.accepted, 1)
        acc = w.wait_access_logs(3)[-1]
        self.assertEqual(acc["upstream"], f"unix:{origin_path}")

    def test_unix_listener_to_unix_target(self):
        origin_path = os.path.join(self.tmp, "o.sock")
        listen_path = os.path.join(self.tmp, "l.sock")
        o = self.origin("u", wt.echo(), unix_path=origin_path)
        w = self.start_weir(self.config(o.address, f'{{ address = "unix:{listen_path}" }}'))
        r = self.curl_unix(w.unix_path(), "http://both.test/both")
        self.assertStatus(r, 200, "Unix socket on both sides")
        self.assertEqual(o.last().path, "/both")

    def test_unreachable_unix_target_gives_502(self):
        missing = os.path.join(self.tmp, "nobody-listens.sock")
        w = self.start_weir(self.config(f"unix:{missing}", '{ address = "127.0.0.1:0" }'))
        mark = len(w.lines)
        r = wt.curl(w.url("/nobody"))
        self.assertStatus(r, 502, "unix: target without a listener")
        line = w.wait_for_line(lambda l: "connect to" in l and missing in l, 5, start_index=mark)
        self.assertIsNotNone(line, w.log_text(10))
        self.assertIn("No such file or directory", line)

    def test_stale_socket_replaced_and_file_removed_at_exit(self):
        o = self.origin("o")
        path = os.path.join(self.tmp, "stale.sock")
        # A socket file left behind by a process that died: bound, never unlinked.
        def leave_stale_file():
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.bind(path)
            s.close()
            self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(5)
                with self.assertRaises(ConnectionRefusedError):  # nobody listens on it
                    c.connect(path)

        leave_stale_file()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=sig.name):
                w = self.start_weir(self.config(o.address, f'{{ address = "unix:{path}" }}'))
                st = os.stat(path)
                self.assertTrue(stat.S_ISSOCK(st.st_mode))
                self.assertEqual(stat.S_IMODE(st.st_mode), 0o660)
                self.assertStatus(self.curl_unix(path, "http://s.test/after-stale"), 200,
                                  "request on the replaced socket")
                self.assertEqual(w.stop(sig, timeout=15), 0, w.log_text(10))
                self.assertFalse(os.path.exists(path), f"socket file left after {sig.name}")
                leave_stale_file()  # again, for the next round

    def test_socket_of_a_running_server_is_not_taken_over(self):
        o = self.origin("o")
        path = os.path.join(self.tmp, "busy.sock")
        live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        live.bind(path)
        live.listen(4)
        self.addCleanup(live.close)
        w = self.start_weir(self.config(o.address, f'{{ address = "unix:{path}" }}'),
                            wait_ready=False)
        self.assertEqual(w.wait(15), 1, w.log_text(10))
        self.assertRegex(w.log_text(), r"cannot listen on unix:.*busy\.sock: .*[Aa]ddress already "
                                       r"in use")
        # The other server's socket is still there and still answers.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(path)

    def test_regular_file_is_not_replaced(self):
        o = self.origin("o")
        path = os.path.join(self.tmp, "precious.txt")
        with open(path, "w") as f:
            f.write("do not delete\n")
        w = self.start_weir(self.config(o.address, f'{{ address = "unix:{path}" }}'),
                            wait_ready=False)
        self.assertEqual(w.wait(15), 1, w.log_text(10))
        self.assertRegex(w.log_text(), r"cannot listen on unix:.*precious\.txt: the file exists and "
                                       r"is not a socket")
        with open(path) as f:
            self.assertEqual(f.read(), "do not delete\n")

    def test_socket_file_removed_when_startup_fails_later(self):
        """The socket file is removed whenever weir exits, also when a later listener cannot be
        bound and weir gives up during start-up."""
        o = self.origin("o")
        path = os.path.join(self.tmp, "early.sock")
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        w = self.start_weir(self.config(
            o.address, f'{{ address = "unix:{path}" }}, {{ address = "127.0.0.1:{port}" }}'),
            wait_ready=False)
        self.assertEqual(w.wait(15), 1, w.log_text(10))
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", w.log_text())
        self.assertFalse(os.path.exists(path), "weir exited but left its socket file behind")

    def test_check_refuses_bad_unix_addresses(self):
        path = os.path.join(self.tmp, "weir.toml")
        long_path = "/" + "x" * 120
        with open(path, "w") as f:
            f.write(self.config("unix:relative/origin.sock",
                                f'{{ address = "unix:{long_path}" }}, '
                                '{ address = "unix:/tmp/weir-x.sock", mode = 660 }, '
                                '{ address = "127.0.0.1:0", mode = "0600" }'))
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        err = p.stderr
        self.assertIn("at most 107 fit in a Unix socket address", err)
        self.assertIn("must be at most 0o777 (got 660)", err)
        self.assertIn("applies only to \"unix:/path\" addresses", err)


if __name__ == "__main__":
    unittest.main()
