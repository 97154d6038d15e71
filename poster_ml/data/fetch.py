"""Posters named by URL, as the public poster datasets list them: fetched concurrently,
cached on disk by URL (a rerun fetches nothing again), retried with backoff where the
server asks for patience (429, 5xx, a timeout), and limited in size, time, content type,
redirects and scheme. A poster that cannot be had is a reason, never an exception: the
caller turns it into a row of rejects.csv and the rest goes through.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import time
from pathlib import Path

import requests
from tqdm import tqdm

from poster_ml.config import environment
from poster_ml.errors import first_line


@dataclasses.dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 20 * 2**20  # The largest poster file accepted.
    seconds: float = 30.0  # The whole answer, a slow drip included.
    redirects: int = 5
    attempts: int = 4  # For answers worth trying again: 429, 5xx, a timeout.
    backoff: float = 0.5  # Seconds before the second attempt, doubling after.
    workers: int = 8


RETRY_STATUSES = {429, 500, 502, 503, 504}


def cache_folder() -> Path:
    """Where fetched posters are kept: beside the prepared-data cache."""
    return environment.cache_root() / "posters"


def cached_path(url: str, folder: Path) -> Path:
    return folder / hashlib.sha256(url.encode()).hexdigest()


class Refused(Exception):
    """A poster that cannot be had, and why, in the words rejects.csv uses."""

    def __init__(self, reason: str, detail: str = "", retry: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.detail, self.retry = reason, detail, retry


def download(session: requests.Session, url: str, limits: FetchLimits) -> bytes:
    """One attempt: the body, or Refused with the reason."""
    if not url.lower().startswith(("http://", "https://")):
        raise Refused("refused scheme", url.split("://", 1)[0])
    deadline = time.monotonic() + limits.seconds
    try:
        with session.get(url, stream=True, timeout=min(10.0, limits.seconds)) as answer:
            if answer.status_code != 200:
                raise Refused(
                    f"HTTP {answer.status_code}",
                    answer.reason or "",
                    retry=answer.status_code in RETRY_STATUSES,
                )
            kind = answer.headers.get("Content-Type", "")
            if not kind.lower().startswith("image/"):
                raise Refused("not an image", kind or "no content type")
            declared = int(answer.headers.get("Content-Length") or 0)
            if declared > limits.max_bytes:
                raise Refused("too large", f"{declared} bytes")
            return read_limited(answer, limits, deadline)
    except requests.TooManyRedirects:
        raise Refused("redirect loop", f"more than {limits.redirects} redirects") from None
    except requests.exceptions.InvalidSchema as error:
        raise Refused("refused scheme", first_line(error, 120)) from None
    except (requests.Timeout, requests.ConnectionError) as error:
        raise Refused("timeout or connection error", first_line(error, 120), retry=True) from None


def read_limited(answer: requests.Response, limits: FetchLimits, deadline: float) -> bytes:
    """The body, at most max_bytes and within the deadline (a slow drip or an endless
    body is cut off, not waited for)."""
    body = bytearray()
    # read1 returns what has arrived, so that the deadline is checked as bytes trickle in
    # (a fixed-size read would wait for the whole chunk).
    while chunk := answer.raw.read1(64 * 1024):
        body.extend(chunk)
        if len(body) > limits.max_bytes:
            raise Refused("too large", f"over {limits.max_bytes} bytes")
        if time.monotonic() > deadline:
            raise Refused("timeout", f"not whole after {limits.seconds:g} s", retry=False)
    return bytes(body)


def fetch_one(url: str, folder: Path, limits: FetchLimits) -> Path | Refused:
    """The cached file of one URL, fetched (and retried) if not cached yet."""
    target = cached_path(url, folder)
    if target.is_file():
        return target
    with requests.Session() as session:
        session.max_redirects = limits.redirects
        session.headers["User-Agent"] = "poster-ml"
        for attempt in range(limits.attempts):
            try:
                body = download(session, url, limits)
            except Refused as refused:
                if not refused.retry or attempt == limits.attempts - 1:
                    return refused
                time.sleep(limits.backoff * 2**attempt)
                continue
            partial = target.with_name(target.name + f".{os.getpid()}.partial")
            partial.write_bytes(body)
            os.replace(partial, target)  # Whole or not at all, for the next run to trust.
            return target
    return Refused("not fetched")  # Unreachable: the loop returns.


def fetch_posters(urls: list[str], limits: FetchLimits | None = None) -> dict[str, Path | Refused]:
    """Each URL's cached file, or why it could not be had; concurrently, with a progress bar."""
    limits = limits or FetchLimits()
    folder = cache_folder()
    folder.mkdir(parents=True, exist_ok=True)
    unique = list(dict.fromkeys(urls))
    with (
        concurrent.futures.ThreadPoolExecutor(limits.workers) as pool,
        tqdm(total=len(unique), desc="fetching posters", unit="poster", disable=None) as bar,
    ):
        futures = {pool.submit(fetch_one, url, folder, limits): url for url in unique}
        results = {}
        for future in concurrent.futures.as_completed(futures):
            results[futures[future]] = future.result()
            bar.update(1)
    return results
