#!/usr/bin/env python3
"""Command line: check, config dump, env, --version, --help, and the priority
command line > environment > file."""

import os
import re
import signal
import socket
import tomllib

import weirtest as wt

BAD_CONFIG = """\
[system]
workers = 1

[log]
level = "verbose"
colour = true

[upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001"] }
lb = { use = "round-robin" }

[services.web]
listeners = [{ address = "127.0.0.1:0" }]
upstream = "missing"
"""
# line -> key path expected in the diagnostic
BAD_CONFIG_ERRORS = {5: "log.level", 6: "log.colour", 14: "services.web.upstream"}

# Mistakes the configuration layer finds (a duration, a type, an unknown upstream) mixed with
# mistakes only the plugins and OpenSSL find (an unknown load balancer, a target's port, a filter's
# option, a missing certificate): one run reports all of them, in file order, each once.
MIXED_CONFIG = """\
[upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001", "127.0.0.1:99999"] }
lb = { use = "round-robbin" }
connect-timeout = "2x"
tls = { verify = "maybe", ca-file = "missing-ca.pem" }

[services.web]
listeners = [{ address = "127.0.0.1:0", tls = { cert = "missing.pem", key = "missing.key", min-version = "1.9" } }]
upstream = "nowhere"
filters = [{ use = "headerz" }, { use = "respond", status = 999 }]
"""
# (line, key path, a word of the message)
MIXED_CONFIG_ERRORS = [
    (2, "upstreams.app.discovery.targets[1]", "99999"),
    (3, "upstreams.app.lb", "did you mean \"round-robin\""),
    (4, "upstreams.app.connect-timeout", "duration"),
    (5, "upstreams.app.tls.verify", "boolean"),
    (5, "upstreams.app.tls.ca-file", "missing-ca.pem"),
    (8, "services.web.listeners[0].tls", "cannot load certificate"),
    (8, "services.web.listeners[0].tls.min-version", "1.9"),
    (9, "services.web.upstream", "nowhere"),
    (10, "services.web.filters[0]", "unknown filter \"headerz\""),
    (10, "services.web.filters[1].status", "999"),
]

GOOD_CONFIG = """\
[system]
workers = 3

[log]
level = "info"

[upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:9001", { address = "127.0.0.1:9002", weight = 2 }] }
lb = { use = "round-robin" }
pool-size = 7

[services.web]
listeners = [{ address = "127.0.0.1:0" }]
upstream = "app"

[[services.web.routes]]
path-prefix = "/static"
upstream = "app"
filters = [{ use = "headers", request-set = { "x-env" = "test" }, response-remove = ["server"] }]
"""

ENV_VARS = ["WEIR_CONFIG", "WEIR_WORKERS", "WEIR_LOG_LEVEL", "WEIR_LOG_FORMAT", "WEIR_PLUGIN_PATH"]


class CliTest(wt.WeirTestCase):

    def write(self, name: str, text: str) -> str:
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def dump(self, path: str | None, extra_args=(), env=None) -> str:
        """`weir config dump [-c path] [extra_args]`; tries the options after, then before the
        subcommand (the contract does not fix their position)."""
        base = ["config", "dump"] + (["-c", path] if path else [])
        p = wt.run_weir_cmd(base + list(extra_args), env=env)
        if p.returncode != 0 and extra_args:
            p2 = wt.run_weir_cmd(list(extra_args) + base, env=env)
            if p2.returncode == 0:
                p = p2
        self.assertEqual(p.returncode, 0, f"weir config dump {extra_args} env={env}: "
                                          f"exit {p.returncode}\nstderr: {p.stderr}")
        return p.stdout

    # ---------------------------------------------------------------------------------------------
    def test_check_reports_every_mistake_with_position(self):
        path = self.write("bad.toml", BAD_CONFIG)
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, f"stdout: {p.stdout}\nstderr: {p.stderr}")
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 3, f"expected one line per mistake, got:\n{p.stderr}")
        pat = re.compile(re.escape(path) + r":(\d+):(\d+): ([\w.\-\[\]]+): (.+)$")
        found = {}
        for line in lines:
            m = pat.match(line)
            self.assertIsNotNone(m, f"not in the form FILE:LINE:COL: key.path: message: {line!r}")
            found[int(m.group(1))] = (m.group(3), line)
        self.assertEqual(sorted(found), sorted(BAD_CONFIG_ERRORS), f"lines reported:\n{p.stderr}")
        for ln, key in BAD_CONFIG_ERRORS.items():
            # An unknown key may be reported at its own path or at its table's path, the message
            # then naming the key.
            parent, _, leaf = key.rpartition(".")
            if found[ln][0] == parent:
                self.assertIn(leaf, found[ln][1].split(f": {parent}: ", 1)[1],
                              f"line {ln}: {found[ln][1]}")
            else:
                self.assertEqual(found[ln][0], key, f"line {ln}: {found[ln][1]}")
        self.assertIn("missing", found[14][1])

    def test_check_reports_plugin_mistakes_with_the_others(self):
        path = self.write("mixed.toml", MIXED_CONFIG)
        pat = re.compile(re.escape(path) + r":(\d+):(\d+): ([\w.\-\[\]]+): (.+)$")
        for command in ("check", "run"):
            p = wt.run_weir_cmd([command, "-c", path], timeout=15)
            self.assertEqual(p.returncode, 1, f"{command}: {p.stdout}\n{p.stderr}")
            lines = [l for l in p.stderr.splitlines() if l.strip()]
            got = []
            for line in lines:
                m = pat.match(line)
                self.assertIsNotNone(m, f"{command}: not FILE:LINE:COL: key.path: message: {line!r}")
                got.append((int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
            self.assertEqual(got, sorted(got), f"{command}: not in file order:\n{p.stderr}")
            self.assertEqual([(ln, key) for ln, _, key, _ in got],
                             [(ln, key) for ln, key, _ in MIXED_CONFIG_ERRORS],
                             f"{command}: one line per mistake, each once:\n{p.stderr}")
            for (ln, _, key, message), (_, _, word) in zip(got, MIXED_CONFIG_ERRORS):
                self.assertIn(word, message, f"{command}: line {ln} {key}")

    def test_check_missing_plugin_dir_is_not_also_an_unknown_plugin(self):
        path = self.write("dirs.toml", """\
[system]
plugin-dirs = ["no-such-dir"]

[upstreams.app]
discovery = { use = "static", targets = ["127.0.0.1:99999"] }
lb = { use = "from-that-dir" }

[services.web]
listeners = [{ address = "127.0.0.1:0" }]
upstream = "app"
""")
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stderr)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 2, f"the directory and the target, nothing else:\n{p.stderr}")
        self.assertIn("system.plugin-dirs", lines[0])
        self.assertIn("no-such-dir", lines[0])
        self.assertIn("upstreams.app.discovery.targets[0]", lines[1])
        self.assertNotIn("from-that-dir", p.stderr)

    def test_check_syntax_error_has_position(self):
        path = self.write("syntax.toml", "[log]\nlevel = \"info\n[system]\n")
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertRegex(p.stderr, re.escape(path) + r":2:\d+: ")

    def test_check_good_file(self):
        path = self.write("good.toml", GOOD_CONFIG)
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 0, f"stderr: {p.stderr}")

    def test_check_does_not_bind(self):
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        self.addCleanup(busy.close)
        port = busy.getsockname()[1]
        path = self.write("busy.toml", GOOD_CONFIG.replace("127.0.0.1:0", f"127.0.0.1:{port}"))
        p = wt.run_weir_cmd(["check", "-c", path])
        self.assertEqual(p.returncode, 0, f"check with a listener on a busy port: {p.stderr}")

    def test_run_refuses_bad_config(self):
        path = self.write("bad.toml", BAD_CONFIG)
        p = wt.run_weir_cmd(["run", "-c", path], timeout=15)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(f"{path}:14:", p.stderr + p.stdout)

    # ---------------------------------------------------------------------------------------------
    def test_config_dump_round_trip(self):
        path = self.write("good.toml", GOOD_CONFIG)
        text1 = self.dump(path)
        cfg = tomllib.loads(text1)
        # every default is spelled out
        self.assertEqual(cfg["system"]["workers"], 3)
        for key in ("plugin-dirs", "shutdown-grace"):
            self.assertIn(key, cfg["system"], f"system.{key} missing from the dump:\n{text1}")
        for key in ("level", "format", "access-log"):
            self.assertIn(key, cfg["log"], f"log.{key} missing from the dump:\n{text1}")
        app = cfg["upstreams"]["app"]
        self.assertEqual(app["pool-size"], 7)
        for key in ("discovery", "lb", "connect-timeout", "response-timeout", "idle-timeout"):
            self.assertIn(key, app, f"upstreams.app.{key} missing from the dump:\n{text1}")
        web = cfg["services"]["web"]
        limits = web["limits"]
        self.assertEqual(limits["max-request-line"], 8192)
        self.assertEqual(limits["max-header-bytes"], 32768)
        self.assertEqual(limits["max-headers"], 100)
        self.assertEqual(limits["max-body"], 0)
        for key in ("header-timeout", "keepalive-timeout"):
            self.assertIn(key, limits)
        self.assertEqual(web["routes"][0]["path-prefix"], "/static")
        # loads back, and dumping the dump gives the same text
        dumped = self.write("dumped.toml", text1)
        p = wt.run_weir_cmd(["check", "-c", dumped])
        self.assertEqual(p.returncode, 0, f"the dump does not load back:\n{p.stderr}\n{text1}")
        text2 = self.dump(dumped)
        self.assertEqual(text2, text1, "dump of the dump differs")

    def test_config_dump_of_minimal_file(self):
        path = self.write("min.toml", "[services.web]\nlisteners = [{ address = \"127.0.0.1:0\" }]\n")
        text1 = self.dump(path)
        cfg = tomllib.loads(text1)
        self.assertIn("system", cfg)
        self.assertIn("log", cfg)
        self.assertEqual(cfg["log"]["level"], "info")
        self.assertEqual(cfg["log"]["format"], "text")
        self.assertEqual(cfg["log"]["access-log"], True)
        dumped = self.write("dumped.toml", text1)
        self.assertEqual(self.dump(dumped), text1)

    # ---------------------------------------------------------------------------------------------
    def test_priority_workers(self):
        path = self.write("good.toml", GOOD_CONFIG)

        def workers(extra=(), env=None):
            return tomllib.loads(self.dump(path, extra, env))["system"]["workers"]

        self.assertEqual(workers(), 3, "file value")
        self.assertEqual(workers(env={"WEIR_WORKERS": "5"}), 5, "environment over file")
        self.assertEqual(workers(("--workers", "7")), 7, "command line over file")
        self.assertEqual(workers(("--workers", "7"), env={"WEIR_WORKERS": "5"}), 7,
                         "command line over environment")

    def test_priority_log(self):
        path = self.write("good.toml", GOOD_CONFIG)

        def log(extra=(), env=None):
            return tomllib.loads(self.dump(path, extra, env))["log"]

        self.assertEqual(log()["level"], "info")
        self.assertEqual(log(env={"WEIR_LOG_LEVEL": "debug"})["level"], "debug")
        self.assertEqual(log(("--log-level", "warn"), env={"WEIR_LOG_LEVEL": "debug"})["level"],
                         "warn")
        self.assertEqual(log(env={"WEIR_LOG_FORMAT": "json"})["format"], "json")
        self.assertEqual(log(("--log-format", "text"), env={"WEIR_LOG_FORMAT": "json"})["format"],
                         "text")

    def test_weir_config_env(self):
        path = self.write("good.toml", GOOD_CONFIG)
        self.assertEqual(self.dump(None, env={"WEIR_CONFIG": path}), self.dump(path))

    # ---------------------------------------------------------------------------------------------
    def test_env_lists_variables(self):
        p = wt.run_weir_cmd(["env"])
        self.assertEqual(p.returncode, 0, p.stderr)
        for var in ENV_VARS:
            lines = [l for l in p.stdout.splitlines() if var in l]
            self.assertTrue(lines, f"{var} not listed by `weir env`:\n{p.stdout}")
            described = any(len(l.replace(var, "").strip(" :=-\t")) > 5 for l in lines) or \
                any(var in a and b.strip() for a, b in zip(p.stdout.splitlines(),
                                                           p.stdout.splitlines()[1:]))
            self.assertTrue(described, f"{var} listed without a meaning:\n{p.stdout}")

    def test_version_and_help(self):
        p = wt.run_weir_cmd(["--version"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertRegex(p.stdout, r"\d+\.\d+\.\d+")
        p = wt.run_weir_cmd(["--help"])
        self.assertEqual(p.returncode, 0, p.stderr)
        for word in ("run", "check", "config", "env"):
            self.assertIn(word, p.stdout, f"--help does not mention {word!r}:\n{p.stdout}")

    def test_bare_c_option_runs(self):
        o = self.origin("a", wt.fixed("bare"))
        cfg = wt.basic_config({"app": o.address}, log_format="text")
        w = wt.Weir(cfg, args=[])
        w.argv = [wt.weir_bin(), "-c", w.config_path]
        self._weirs.append(w)
        self.addCleanup(self._finish_weir, w)
        w.start()
        r = wt.curl(w.url("/"))
        self.assertStatus(r, 200, "GET via `weir -c FILE`")
        self.assertEqual(r.body, b"bare")
        # text format: "2026-11-26 14:00:00.123 [info] [core] listening on ..."
        listen = [l for l in w.text_lines("out") if "listening on" in l]
        self.assertRegex(listen[0], r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} \[info\] \[\w+\] "
                                    r"listening on \S+ \(service web\)$")
        self.assertEqual(w.stop(signal.SIGTERM), 0)


if __name__ == "__main__":
    wt.main()
