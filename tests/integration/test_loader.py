#!/usr/bin/env python3
"""Plugin loader refusals seen through `weir check`: broken plugins built into
$WEIR_BUILD_DIR/tests/broken-plugins/<case>/, a world-writable plugin, an unknown plugin name."""

import glob
import os
import re
import shutil
import stat

import weirtest as wt

# case -> phrases the one diagnostic line must contain (case-insensitive)
LOAD_CASES = {
    "no-entry": ["weir_plugin_entry"],
    "other-major": ["ABI 2."],
    "newer-minor": ["newer"],
    "missing-hook": ["pick"],
    "duplicate-module": ["headers", "already"],
}
CONFIG_CASES = {
    "throwing-config": "boom from config",
    "rejecting-config": "rejecting-config refuses every configuration",
}


def broken_dir(case: str) -> str:
    return os.path.join(wt.build_dir(), "tests", "broken-plugins", case)


def plugin_files(d: str) -> list[str]:
    return sorted(glob.glob(os.path.join(d, "*.so")))


def make_config(plugin_dir: str | None, filters: str = "", lb: str = "round-robin"):
    """Returns (text, {name: line number}) for a small config."""
    lines = ["[system]", "workers = 1"]
    if plugin_dir is not None:
        lines.append(f"plugin-dirs = [{wt.toml_str(plugin_dir)}]")
    lines += ["", "[upstreams.app]",
              'discovery = { use = "static", targets = ["127.0.0.1:9001"] }']
    where = {"lb": len(lines) + 1}
    lines.append(f'lb = {{ use = "{lb}" }}')
    lines += ["", "[services.web]", 'listeners = [{ address = "127.0.0.1:0" }]', 'upstream = "app"']
    where["filters"] = len(lines) + 1
    lines.append(f"filters = [{filters}]")
    return "\n".join(lines) + "\n", where


class LoaderTest(wt.WeirTestCase):

    def check(self, text: str):
        path = os.path.join(self.tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(text)
        return path, wt.run_weir_cmd(["check", "-c", path])

    def one_line(self, p, context: str) -> str:
        self.assertEqual(p.returncode, 1, f"{context}: exit {p.returncode}\nstderr: {p.stderr}")
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"{context}: expected one stderr line:\n{p.stderr}")
        return lines[0]

    def test_baseline_empty_plugin_dir(self):
        empty = os.path.join(self.tmp, "empty")
        os.mkdir(empty)
        text, _ = make_config(empty)
        _, p = self.check(text)
        self.assertEqual(p.returncode, 0, f"plugin-dirs = [empty dir] should pass:\n{p.stderr}")

    def test_broken_plugins(self):
        for case, phrases in LOAD_CASES.items():
            with self.subTest(case=case):
                d = broken_dir(case)
                files = plugin_files(d)
                if not files:
                    self.skipTest(f"broken plugin {case!r} not built (no .so in {d})")
                text, _ = make_config(d)
                _, p = self.check(text)
                line = self.one_line(p, case)
                self.assertIn("plugin", line.lower(), f"{case}: {line}")
                paths = files + (plugin_files(wt.builtin_plugin_dir()) if case == "duplicate-module"
                                 else [])
                self.assertTrue(any(f in line for f in paths),
                                f"{case}: the line does not name the plugin file {files}: {line}")
                for ph in phrases:
                    self.assertIn(ph.lower(), line.lower(), f"{case}: {line}")

    def test_run_refuses_broken_plugin(self):
        d = broken_dir("no-entry")
        if not plugin_files(d):
            self.skipTest(f"broken plugin 'no-entry' not built (no .so in {d})")
        text, _ = make_config(d)
        path = os.path.join(self.tmp, "weir.toml")
        with open(path, "w") as f:
            f.write(text)
        p = wt.run_weir_cmd(["run", "-c", path], timeout=15)
        self.assertNotEqual(p.returncode, 0, "weir run started with a plugin lacking its entry")
        self.assertIn("weir_plugin_entry", p.stderr + p.stdout)

    def test_plugin_config_refusals(self):
        for case, message in CONFIG_CASES.items():
            with self.subTest(case=case):
                d = broken_dir(case)
                if not plugin_files(d):
                    self.skipTest(f"broken plugin {case!r} not built (no .so in {d})")
                text, where = make_config(d, filters=f'{{ use = "{case}" }}')
                path, p = self.check(text)
                line = self.one_line(p, case)
                m = re.match(re.escape(path) + r":(\d+):(\d+): ", line)
                self.assertIsNotNone(m, f"{case}: no {path}:LINE:COL: prefix: {line}")
                self.assertEqual(int(m.group(1)), where["filters"],
                                 f"{case}: wrong line (filters are on line {where['filters']}): "
                                 f"{line}")
                self.assertIn(message, line)

    def test_throwing_filter_fails_only_its_request(self):
        d = broken_dir("throwing-request")
        if not plugin_files(d):
            self.skipTest(f"broken plugin 'throwing-request' not built (no .so in {d})")
        w = self.start_weir(f"""
[system]
workers = 1
plugin-dirs = [{wt.toml_str(d)}]
[services.web]
listeners = [{{ address = "127.0.0.1:0" }}]
filters = [{{ use = "throwing-request" }}, {{ use = "respond", body = "fine\\n" }}]
""")
        self.assertEqual(wt.curl(w.url("/ok")).status, 200)
        r = wt.curl(w.url("/boom"))
        self.assertEqual(r.status, 500, r)
        # A throw in the response stage is logged; the response still goes out.
        self.assertEqual(wt.curl(w.url("/boom-response")).status, 200)
        for _ in range(3):
            r = wt.curl(w.url("/ok"))
            self.assertEqual((r.status, r.body), (200, b"fine\n"))
        self.assertTrue(w.alive())
        log = w.log_text()
        self.assertIn("boom from on_request", log)
        self.assertIn("boom from on_response", log)
        self.assertIn('filter "throwing-request"', log)

    def test_world_writable_plugin(self):
        builtin = plugin_files(wt.builtin_plugin_dir())
        if not builtin:
            self.skipTest(f"no built-in plugin in {wt.builtin_plugin_dir()}")
        src = next((f for f in builtin if "headers" in os.path.basename(f)), builtin[0])
        d = os.path.join(self.tmp, "ww")
        os.mkdir(d, 0o755)
        dst = os.path.join(d, os.path.basename(src))
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o666)
        self.assertEqual(stat.S_IMODE(os.stat(dst).st_mode), 0o666)
        text, _ = make_config(d)
        _, p = self.check(text)
        line = self.one_line(p, "world-writable plugin")
        self.assertIn("plugin", line.lower())
        self.assertIn(dst, line)
        self.assertIn("writable", line.lower())

    def test_unknown_plugin_name(self):
        text, where = make_config(None, lb="round-robbin")
        path, p = self.check(text)
        line = self.one_line(p, "unknown load balancer")
        m = re.match(re.escape(path) + r":(\d+):(\d+): upstreams\.app\.lb: (.*)$", line)
        self.assertIsNotNone(m, f"not FILE:L:C: upstreams.app.lb: ...: {line}")
        self.assertEqual(int(m.group(1)), where["lb"], line)
        self.assertIn("unknown", m.group(3))
        self.assertIn("round-robbin", m.group(3))
        self.assertIn("round-robin", m.group(3).replace("round-robbin", ""))

    def test_unknown_filter_name(self):
        text, where = make_config(None, filters='{ use = "hedaers" }')
        path, p = self.check(text)
        line = self.one_line(p, "unknown filter")
        self.assertRegex(line, re.escape(path) + rf":{where['filters']}:\d+: ")
        self.assertIn("unknown", line)
        self.assertIn("hedaers", line)


if __name__ == "__main__":
    wt.main()
