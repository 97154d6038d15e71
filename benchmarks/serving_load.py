"""The load mode of bench_serving.py: one logged model, served by `poster-ml serve` and by
the stock `mlflow models serve` at 1 and 2 workers, each hit by 1, 4 and 16 concurrent
clients with a fixed number of requests: real-size posters, one per request and 32 per
request. The clients are threads of this process, each on its own keep-alive connection;
on a 2-core machine they share the cores with the server, as a client on the same box
would."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from posters import logged_model, real_size_posters

CLIENTS = (1, 4, 16)
WORKERS = (1, 2)
BATCH = 32


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_command(kind: str, model_uri: str, port: int, workers: int) -> list[str]:
    common = ["--port", str(port), "--workers", str(workers)]
    if kind == "poster-ml serve":
        # A 32-poster request of real-size posters is about 30 MB of JSON.
        serve = ["serve", "--model", model_uri, *common, "--max-request-mb", "64"]
        return [sys.executable, "-m", "poster_ml.cli", *serve]
    stock = ["serve", "-m", model_uri, *common, "--env-manager", "local", "--host", "127.0.0.1"]
    return [sys.executable, "-m", "mlflow", "models", *stock]


def start_server(kind: str, model_uri: str, store: str, workers: int) -> tuple:
    port = free_port()
    command = server_command(kind, model_uri, port, workers)
    server = subprocess.Popen(
        command,
        # The stock server starts `uvicorn` by name: this environment's must be on PATH.
        env=os.environ
        | {
            "MLFLOW_TRACKING_URI": store,
            "PATH": os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]]),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                return server, port
        except OSError:
            time.sleep(0.5)
    stop(server)
    raise RuntimeError(f"{kind} did not come up")


def stop(server: subprocess.Popen) -> None:
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)


def server_rss(server: subprocess.Popen) -> int:
    """Resident memory of the server and every process it started, in bytes."""
    parent = psutil.Process(server.pid)
    processes = [parent, *parent.children(recursive=True)]
    return sum(process.memory_info().rss for process in processes if process.is_running())


def request_body(jpegs: list[bytes]) -> bytes:
    rows = [[base64.b64encode(jpeg).decode()] for jpeg in jpegs]
    return json.dumps({"dataframe_split": {"columns": ["image"], "data": rows}}).encode()


def fire(port: int, bodies: list[bytes], requests: int, clients: int) -> dict:
    """Sends `requests` requests (cycling through `bodies`) from `clients` threads."""
    latencies: list[float] = []
    errors = [0]
    next_request = iter(range(requests))
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        while True:
            with lock:
                number = next(next_request, None)
            if number is None:
                return
            started = time.perf_counter()
            try:
                connection.request(
                    "POST",
                    "/invocations",
                    bodies[number % len(bodies)],
                    {"Content-Type": "application/json"},
                )
                answer = connection.getresponse()
                answer.read()
                ok = answer.status == 200
            except OSError:
                ok = False
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
            with lock:
                latencies.append(time.perf_counter() - started)
                errors[0] += not ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "requests_per_s": requests / elapsed,
        "median_ms": statistics.median(ordered) * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000,
        "errors": errors[0],
    }


def load_benchmark(size: int, requests: int, batches: int) -> None:
    folder = Path(tempfile.gettempdir()) / "poster-ml-bench-posters"
    jpegs = [path.read_bytes() for path in real_size_posters(folder, 64)]
    singles = [request_body([jpeg]) for jpeg in jpegs]
    batched = [request_body(jpegs[:BATCH]), request_body(jpegs[BATCH : 2 * BATCH])]
    store, model_uri = logged_model("basic_cnn", size, jpegs[0])
    print(
        f"basic_cnn at {size} px on {os.cpu_count()} cores; posters of 1236 x 1830, "
        f"{statistics.mean(map(len, jpegs)) / 2**20:.2f} MB JPEG each; {requests} one-poster "
        f"and {batches} {BATCH}-poster requests per line"
    )
    header = f"{'server':<18}{'W':>2}{'clients':>8}{'posters':>8}{'req/s':>8}{'posters/s':>10}"
    print(header + f"{'median ms':>10}{'p99 ms':>9}{'errors':>7}{'RSS MB before/after':>21}")
    table = {}
    for kind in ("poster-ml serve", "mlflow models serve"):
        for workers in WORKERS:
            server, port = start_server(kind, model_uri, store, workers)
            try:
                # Warm every worker up with both kinds of request, so that "before" holds
                # what a 32-poster pass needs and "after" shows growth, not first use.
                fire(port, singles, 4 * workers, 2 * workers)
                fire(port, batched, 2 * workers, 2 * workers)
                before = server_rss(server)
                for clients in CLIENTS:
                    for posters, bodies, count in (
                        (1, singles, requests),
                        (BATCH, batched, batches),
                    ):
                        result = fire(port, bodies, count, clients)
                        after = server_rss(server)
                        table[kind, workers, clients, posters] = result | {"growth": after / before}
                        print(
                            f"{kind:<18}{workers:>2}{clients:>8}{posters:>8}"
                            f"{result['requests_per_s']:>8.2f}{result['requests_per_s'] * posters:>10.1f}"
                            f"{result['median_ms']:>10.0f}{result['p99_ms']:>9.0f}{result['errors']:>7}"
                            f"{before / 2**20:>12.0f} / {after / 2**20:<6.0f}",
                            flush=True,
                        )
            finally:
                stop(server)
    print_goals(table)


def print_goals(table: dict) -> None:
    ours = "poster-ml serve"
    base = table[ours, 1, 1, 1]["requests_per_s"]
    best = table[ours, 2, 16, 1]["requests_per_s"]
    print(
        f"scaling: 2 workers, 16 clients / 1 worker, 1 client, one poster a request: "
        f"{best / base:.2f}x (goal at least 1.6x)"
    )
    for workers in WORKERS:
        for posters in (1, BATCH):
            ratios = [
                table[ours, workers, clients, posters]["requests_per_s"]
                / table["mlflow models serve", workers, clients, posters]["requests_per_s"]
                for clients in CLIENTS
            ]
            print(
                f"guard: poster-ml serve / mlflow models serve at {workers} worker(s), {posters} "
                f"poster(s) a request: {', '.join(f'{ratio:.2f}' for ratio in ratios)} "
                f"(at {', '.join(map(str, CLIENTS))} clients; goal at least 0.90)"
            )
    errors = sum(result["errors"] for result in table.values())
    print(f"errors in all: {errors} (goal 0)")
    for kind in ("poster-ml serve", "mlflow models serve"):
        growth = max(result["growth"] for key, result in table.items() if key[0] == kind)
        print(f"{kind}: largest memory growth {growth - 1:+.1%} (goal at most +10 %)")
