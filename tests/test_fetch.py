"""Posters by URL, against a loopback HTTP server the test starts and stops: good posters,
and each hostile answer (404, a slow drip, an endless body, the wrong content type, a
redirect loop, 500 then 200, a refused scheme). Every failure is a row of rejects.csv with
its reason; the rest goes through; a rerun fetches nothing again."""

from __future__ import annotations

import collections
import http.server
import io
import threading
import time
from typing import ClassVar

import pandas as pd
import pytest
from PIL import Image

from poster_ml.cli import main
from poster_ml.data.fetch import FetchLimits, Refused, fetch_posters


def poster_bytes(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 60), (shade, 255 - shade, 90)).save(buffer, "PNG")
    return buffer.getvalue()


class Hostile(http.server.BaseHTTPRequestHandler):
    """Answers by path: /good/N, /missing, /drip, /endless, /html, /loop, /flaky/N."""

    requests: ClassVar[collections.Counter] = collections.Counter()

    def log_message(self, *arguments) -> None:  # Quiet: the test reads the counts.
        pass

    def send(self, status: int, kind: str, body: bytes = b"", length: bool = True) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        Hostile.requests[self.path] += 1
        kind, _, number = self.path.strip("/").partition("/")
        if kind == "good":
            self.send(200, "image/png", poster_bytes(int(number) * 20))
        elif kind == "flaky" and Hostile.requests[self.path] == 1:
            self.send(500, "text/plain", b"try again")
        elif kind == "flaky":
            self.send(200, "image/png", poster_bytes(200))
        elif kind == "html":
            self.send(200, "text/html", b"<html>not a poster</html>")
        elif kind == "loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.end_headers()
        elif kind in ("drip", "endless"):
            self.drip(slow=kind == "drip")
        else:
            self.send(404, "text/plain", b"no such poster")

    def drip(self, slow: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        try:
            for _ in range(100_000):
                self.wfile.write(b"\0" if slow else b"\0" * 65536)
                if slow:
                    self.wfile.flush()
                    time.sleep(0.1)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def hostile_server():
    Hostile.requests.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


LIMITS = FetchLimits(max_bytes=2 * 2**20, seconds=2.0, backoff=0.05)


def test_each_hostile_answer_is_refused_with_its_reason_and_a_500_is_retried(hostile_server):
    urls = {
        "good": f"{hostile_server}/good/1",
        "missing": f"{hostile_server}/missing",
        "drip": f"{hostile_server}/drip",
        "endless": f"{hostile_server}/endless",
        "html": f"{hostile_server}/html",
        "loop": f"{hostile_server}/loop",
        "flaky": f"{hostile_server}/flaky/1",
        "scheme": "ftp://127.0.0.1/poster.png",
    }
    started = time.monotonic()
    results = fetch_posters(list(urls.values()), LIMITS)
    assert time.monotonic() - started < 20  # The drip and the endless body were cut off.
    reasons = {
        name: result.reason if isinstance(result, Refused) else "fetched"
        for name, result in ((name, results[url]) for name, url in urls.items())
    }
    assert reasons == {
        "good": "fetched",
        "missing": "HTTP 404",
        "drip": "timeout",
        "endless": "too large",
        "html": "not an image",
        "loop": "redirect loop",
        "flaky": "fetched",
        "scheme": "refused scheme",
    }
    assert Hostile.requests["/flaky/1"] == 2  # Once refused with a 500, then fetched.
    assert results[urls["good"]].read_bytes() == poster_bytes(20)


def test_a_labels_csv_of_urls_is_prepared_with_rejects_and_a_rerun_fetches_nothing(
    hostile_server, tmp_path
):
    rows = [
        (f"m{n}", f"{hostile_server}/good/{n}", "fresh" if n % 2 else "rotten") for n in range(12)
    ]
    rows += [
        ("lost", f"{hostile_server}/missing", "fresh"),
        ("page", f"{hostile_server}/html", "rotten"),
    ]
    rows += [("local", "file:///etc/passwd", "fresh")]
    labels = tmp_path / "labels.csv"
    pd.DataFrame(rows, columns=["id", "poster", "label"]).to_csv(labels, index=False)
    arguments = [
        "preprocess",
        "--source",
        str(labels),
        "--size",
        "16",
        "--out",
        str(tmp_path / "p"),
    ]
    arguments += ["--near-duplicate-bits", "0"]
    assert main(arguments) == 0
    rejects = pd.read_csv(tmp_path / "p" / "rejects.csv")
    assert dict(zip(rejects["id"], rejects["reason"], strict=True)) == {
        "lost": "HTTP 404",
        "page": "not an image",
        "local": "refused scheme",
    }
    manifest = pd.read_csv(tmp_path / "p" / "manifest.csv")
    assert len(manifest) == 12 and manifest["source"].str.startswith(hostile_server).all()
    fetched = sum(Hostile.requests.values())
    assert main(arguments) == 0
    # The good posters come from the cache; only the refused ones are asked again.
    assert sum(Hostile.requests.values()) - fetched == 2
