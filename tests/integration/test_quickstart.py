"""The bundled quickstart configuration (README command a) works as shipped.

The file binds fixed ports (8080-8082); the test moves them to free ports, keeping every other
line as written, so it also runs where the quickstart itself is already running.
"""

import os
import re
import unittest

import weirtest as wt


class QuickstartTest(wt.WeirTestCase):
    def test_quickstart_round_robins_between_its_origins(self):
        path = os.path.join(wt.source_dir(), "examples", "quickstart.toml")
        with open(path, encoding="utf-8") as f:
            text = f.read()
        ports = sorted(set(re.findall(r"127\.0\.0\.1:(80\d\d)", text)))
        self.assertEqual(ports, ["8080", "8081", "8082"])
        for p in ports:
            text = text.replace(f"127.0.0.1:{p}", f"127.0.0.1:{wt.free_port()}")
        w = self.start_weir(text)
        bodies = []
        for _ in range(4):
            r = wt.curl(w.url("/", service="web"))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.header("x-proxied-by"), "weir")
            bodies.append(r.body.decode())
        self.assertEqual(bodies, ["hello from origin a\n", "hello from origin b\n"] * 2)


if __name__ == "__main__":
    unittest.main()
