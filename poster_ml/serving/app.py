"""MLflow's own scoring server, behind a guard: `poster-ml serve` (and `make serve`) run it
as `uvicorn --factory poster_ml.serving.app:create_app`.

The app is `mlflow.pyfunc.scoring_server`'s, unchanged: the same formats, /ping, /health,
/version and /invocations. At / it adds a page (page.html) on which a person drops
posters and sees each answer explained, side by side. Two things are added in front of
it, because the stock server echoes the request back in some errors (a malformed request
came back whole in its error): a request over `POSTER_ML_MAX_REQUEST_BYTES` is answered 413, counted as its
bytes arrive (so a chunked upload without a Content-Length is stopped at the limit too,
and never held in memory), and every error answer is cut to MLflow's error code and one
short line, at most 1 KB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import re
import sys
from pathlib import Path

import mlflow
from fastapi.responses import HTMLResponse, JSONResponse
from mlflow.pyfunc import scoring_server

from poster_ml.config import environment

MAX_MESSAGE = 300


# The page may fetch this server's own answers and show images it makes itself, and
# nothing else: it works offline and behind a firewall, and no one else's code runs in it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'"
)
FACTS_PLACEHOLDER = '{"facts": null}'


def create_app():
    """The scoring server's app on the model `poster-ml serve` downloaded, behind the guards,
    with the page at / (uvicorn calls it in each server process)."""
    model = mlflow.pyfunc.load_model(environment.served_model_path())
    app = scoring_server.init(model)
    limit = environment.max_request_bytes()
    page = page_html(page_facts(model, limit))

    @app.get("/", include_in_schema=False)
    def home() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_POLICY})

    app.add_middleware(ShortErrors)
    app.add_middleware(BodyLimit, limit=limit)
    return app


def page_facts(model, limit: int) -> dict:
    """What the page says of the model: the facts `poster-ml serve` found in the registry,
    the model's threshold, and the request-size limit."""
    path = environment.page_facts_path()
    facts = json.loads(Path(path).read_text()) if path else {}
    contract = model.unwrap_python_model().contract
    return {
        "model": "the model",
        "threshold": contract.threshold,
        "max_request_bytes": limit,
        "max_request_mb": round(limit / 2**20, 1),
    } | facts


def page_html(facts: dict) -> str:
    """The page, with the model's facts written in as JSON (with "<" escaped, so that no text
    in them can end the script element that holds them)."""
    text = json.dumps(facts).replace("<", "\\u003c")
    return Path(__file__).with_name("page.html").read_text().replace(FACTS_PLACEHOLDER, text, 1)


def short_message(body: bytes) -> dict:
    """MLflow's error answer reduced to its code and the model's or parser's own one line."""
    try:
        error = json.loads(body)
    except ValueError:
        error = {"message": body[:MAX_MESSAGE].decode("utf-8", "replace")}
    message = str(error.get("message", ""))
    # "Failed to predict data '<the request>'. Error: <reason>": keep the reason only.
    reasons = re.findall(r"Error: (.*)", message)
    reason = reasons[-1] if reasons else message
    reason = (
        reason.split("\\nInput:")[0].split("\nInput:")[0].strip().splitlines()[0]
        if reason.strip()
        else "bad request"
    )
    return {"error_code": error.get("error_code", "BAD_REQUEST"), "message": reason[:MAX_MESSAGE]}


def too_large(size: str, limit: int) -> JSONResponse:
    return JSONResponse(
        {
            "error_code": "REQUEST_TOO_LARGE",
            "message": f"the request of {size} bytes is over the limit of {limit}",
        },
        status_code=413,
    )


class BodyLimit:
    """An ASGI middleware that answers 413 once a request body passes the limit, by its
    Content-Length or, without one, by the bytes received so far. The rest of the body is
    read away unkept, so the client hears the answer rather than a reset."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await drain(receive)
            return await too_large(declared.decode(), self.limit)(scope, receive, send)
        state = {"received": 0, "over": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.limit:
                    state["over"] = True
                    if message.get("more_body"):
                        await drain(receive)
                    return {
                        "type": "http.disconnect"
                    }  # The app stops reading; its answer is dropped.
            return message

        async def guarded_send(message):
            if not state["over"]:
                await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:  # What the app raises for the cut-off body; anything else re-raises.
            if not state["over"]:
                raise
        finally:
            if state["received"] >= LARGE_REQUEST_BYTES:
                return_free_memory()
        if state["over"]:
            await too_large(f"more than {self.limit}", self.limit)(scope, receive, send)


LARGE_REQUEST_BYTES = 4 * 2**20
LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform == "linux" else None


def return_free_memory() -> None:
    """Hands the heap's free pages back to the system (glibc's malloc_trim).

    A large request (base64 JSON, copied several times while parsed) leaves its memory
    free but kept by the allocator; after a crowd of them a worker would stay larger for
    good. Trimming costs little beside the request itself (benchmarks/RESULTS.md, serving
    under load).
    """
    if LIBC is not None and hasattr(LIBC, "malloc_trim"):
        LIBC.malloc_trim(0)


async def drain(receive) -> None:
    while (message := await receive())["type"] == "http.request" and message.get("more_body"):
        pass


class ShortErrors:
    """An ASGI middleware that rewrites every error answer (status 400 and up) to
    `short_message`; any other answer passes through untouched and unbuffered. (A plain
    ASGI class rather than Starlette's `@app.middleware("http")`, which copies every
    request body through a stream of its own, a measurable share of a small request's
    time: benchmarks/RESULTS.md.)"""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state: dict = {"status": 200, "body": b""}

        async def shortened_send(message):
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                if state["status"] < 400:
                    await send(message)
                return
            if message["type"] != "http.response.body" or state["status"] < 400:
                return await send(message)
            # Only the first bytes are needed for one short line; the rest is dropped.
            state["body"] = (state["body"] + message.get("body", b""))[: 64 * 1024]
            if not message.get("more_body"):
                answer = JSONResponse(short_message(state["body"]), status_code=state["status"])
                await answer(scope, receive, send)

        await self.app(scope, receive, shortened_send)
