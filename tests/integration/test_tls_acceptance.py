"""TLS acceptance checks that no other test file makes.

The acceptance items for downstream TLS and the tests that cover them:

  * A TLS 1.1 handshake is refused when the minimum is 1.2: test_tls.py
    test_tls11_refused_and_versions_enforced (`openssl s_client -tls1_1 -cipher
    'DEFAULT@SECLEVEL=0'`, so that the client really offers TLS 1.1; it asserts weir's
    protocol_version alert and that no cipher was agreed), and test_tls13_only_listener_refuses_tls12.
  * Session resumption with `openssl s_client -sess_out` then `-sess_in` ("Reused"), TLS 1.2 and
    TLS 1.3: test_tls.py test_session_resumption.
  * A certificate replaced at run time is served to the next handshake while a keep-alive TLS
    connection opened before keeps working (another request on it): test_tls.py
    test_certificate_replaced_at_run_time (new files + SIGHUP) and test_cert_store.py
    test_install_serves_new_handshakes_keeps_open_connections_and_removes (a plugin's
    install_certificate).
  * `curl --http2` over TLS negotiates h2: test_h2.py test_curl_over_tls_negotiates_h2 reads it
    from curl's verbose output ("ALPN: server accepted h2", "< HTTP/2 200"). This file adds the
    check with what curl itself reports as the HTTP version of the response
    (`-w '%{http_version}'`), on a listener with the default TLS settings.
"""

import os
import subprocess

import weirtest as wt


def openssl(*args: str) -> None:
    p = subprocess.run(["openssl", *args], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


class TlsAcceptanceTest(wt.WeirTestCase):
    def setUp(self):
        super().setUp()
        d = self.tmp
        self.ca, ca_key = os.path.join(d, "ca.pem"), os.path.join(d, "ca.key")
        self.cert, self.key = os.path.join(d, "a.pem"), os.path.join(d, "a.key")
        csr = os.path.join(d, "a.csr")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", ca_key, "-out", self.ca, "-days", "2", "-subj", "/CN=weir test CA")
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", csr, "-subj", "/O=weir/CN=a.test",
                "-addext", "subjectAltName=DNS:a.test")
        openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
                "-days", "2", "-out", self.cert, "-copy_extensions", "copy")
        self.origin_ = self.origin("o", wt.echo())

    def test_curl_http2_over_tls_reports_http_version_2(self):
        w = self.start_weir(f"""
[log]
format = "json"
[upstreams.app]
discovery = {{ use = "static", targets = ["{wt.addr_str(self.origin_.addr)}"] }}
[services.web]
listeners = [{{ address = "127.0.0.1:0", tls = {{ cert = {wt.toml_str(self.cert)}, key = {wt.toml_str(self.key)} }} }}]
upstream = "app"
""")
        host, port = w.addr()
        common = ["--cacert", self.ca, "--resolve", f"a.test:{port}:{host}", "-o", "/dev/null",
                  "-w", "%{http_code} %{http_version} %{ssl_verify_result}"]
        # "2": curl offered h2 and http/1.1 by ALPN, weir chose h2, and the response came over
        # HTTP/2; "0": the certificate chain verified.
        p = wt.curl_raw("--http2", *common, f"https://a.test:{port}/h2", timeout=15)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stdout.decode(), "200 2 0", p.stderr.decode(errors="replace"))
        rec = self.origin_.last()
        self.assertEqual(rec.target, "/h2")
        self.assertEqual(rec.header("x-forwarded-proto"), "https")

        # The same listener keeps HTTP/1.1 for a client that offers only http/1.1.
        p = wt.curl_raw("--http1.1", *common, f"https://a.test:{port}/h1", timeout=15)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        self.assertEqual(p.stdout.decode(), "200 1.1 0", p.stderr.decode(errors="replace"))
        self.assertEqual(self.origin_.last().target, "/h1")


if __name__ == "__main__":
    wt.main()
