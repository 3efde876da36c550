#!/usr/bin/env python3
"""1 GiB request and response bodies stream through weir with bounded memory (VmHWM < 64 MiB)."""

import json
import os
import time

import weirtest as wt

GIB = 1 << 30
MAX_HWM_KIB = 64 * 1024
CURL_TIMEOUT = 60  # the brief: each transfer within ~60 s


class LargeBodiesTest(wt.WeirTestCase):

    def setUp(self):
        super().setUp()
        self.o = self.origin("a", wt.echo(), paths={
            "/down/cl": wt.stream(GIB, chunked=False),
            "/down/chunked": wt.stream(GIB, chunked=True),
            "/down/128m": wt.stream(128 << 20, chunked=False),
        })
        self.w = self.start_weir(wt.basic_config({"app": self.o.address}))
        self.sparse = os.path.join(self.tmp, "one-gib.bin")
        with open(self.sparse, "wb") as f:
            f.truncate(GIB)  # sparse: costs no disk, reads as zeros

    def assert_hwm(self, what: str) -> None:
        hwm = self.w.vm_hwm_kib()
        self.assertIsNotNone(hwm, "cannot read VmHWM")
        print(f"  {what}: weir VmHWM = {hwm / 1024:.1f} MiB", flush=True)
        self.assertLess(hwm, MAX_HWM_KIB, f"{what}: weir VmHWM {hwm} KiB >= 64 MiB")

    def _upload(self, chunked: bool):
        t0 = time.monotonic()
        if chunked:
            with open(self.sparse, "rb") as stdin:
                r = wt.curl("-T", "-", "-H", "Transfer-Encoding: chunked", "-H", "Expect:",
                            self.w.url("/up/chunked"), timeout=CURL_TIMEOUT, stdin=stdin)
        else:
            r = wt.curl("-T", self.sparse, "-H", "Expect:", self.w.url("/up/cl"),
                        timeout=CURL_TIMEOUT)
        dt = time.monotonic() - t0
        print(f"  upload {'chunked' if chunked else 'content-length'}: {dt:.1f}s", flush=True)
        self.assertEqual(r.rc, 0, str(r))
        self.assertStatus(r, 200, f"1 GiB upload ({'chunked' if chunked else 'content-length'})")
        body = json.loads(r.body)
        self.assertEqual(body["body_len"], GIB, "bytes counted at the origin")
        rec = self.o.last()
        self.assertEqual(rec.method, "PUT")
        self.assertTrue(rec.body_complete)
        self.assertEqual(rec.body_len, GIB)
        self.assertEqual(rec.body[:4096], b"\0" * 4096)
        self.assert_hwm(f"after 1 GiB {'chunked' if chunked else 'content-length'} upload")

    def test_upload_1gib_content_length(self):
        self._upload(chunked=False)

    def test_upload_1gib_chunked(self):
        self._upload(chunked=True)

    def _download(self, path: str, label: str):
        t0 = time.monotonic()
        p = wt.curl_raw("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                        self.w.url(path), timeout=CURL_TIMEOUT)
        dt = time.monotonic() - t0
        print(f"  download {label}: {dt:.1f}s", flush=True)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        code, size = p.stdout.decode().split()
        self.assertEqual(code, "200")
        self.assertEqual(int(size), GIB, "bytes counted at the client")
        self.assert_hwm(f"after 1 GiB {label} download")

    def test_download_1gib_content_length(self):
        self._download("/down/cl", "content-length")

    def test_download_1gib_chunked(self):
        self._download("/down/chunked", "chunked")

    def test_slow_reader_backpressure(self):
        """A client that does not read must not make weir buffer the origin's response."""
        with wt.RawConn(self.w.addr(), timeout=30) as c:
            c.send("GET /down/128m HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(3.0)  # the origin pushes as fast as weir takes it; we read nothing
            self.assert_hwm("client not reading a 128 MiB response for 3 s")
            r, _ = c.read_final_response()
            self.assertStatus(r, 200, "GET /down/128m")
            self.assertEqual(len(r.body), 128 << 20)
        self.assert_hwm("after the 128 MiB response")


if __name__ == "__main__":
    wt.main()
