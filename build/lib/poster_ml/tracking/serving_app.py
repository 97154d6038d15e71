"""MLflow's own scoring server, behind a guard: `poster-ml serve` (and `make serve`) run it.

The app is `mlflow.pyfunc.scoring_server`'s, unchanged: the same formats, /ping, /health,
/version and /invocations. Two things are added in front of it, because the stock server
echoes the request back in some errors (malformed JSON of 30 MB came back as a 30 MB
error): a request over `POSTER_ML_MAX_REQUEST_BYTES` is answered 413, counted as its
bytes arrive (so a chunked upload without a Content-Length is stopped at the limit too,
and never held in memory), and every error answer is cut to MLflow's error code and one
short line, at most 1 KB.
"""

from __future__ import annotations

import json
import os
import re

import mlflow
from fastapi import Request
from fastapi.responses import JSONResponse
from mlflow.pyfunc import scoring_server

MODEL_PATH_VARIABLE = "POSTER_ML_MODEL_PATH"  # Set by `poster-ml serve` to the downloaded model.
# The scoring server's public entry point, on that model.
app = scoring_server.init(mlflow.pyfunc.load_model(os.environ[MODEL_PATH_VARIABLE]))
MAX_REQUEST_BYTES = int(os.environ.get("POSTER_ML_MAX_REQUEST_BYTES", 20 * 2**20))
MAX_MESSAGE = 300


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


def too_large(size: str) -> JSONResponse:
    return JSONResponse(
        {
            "error_code": "REQUEST_TOO_LARGE",
            "message": f"the request of {size} bytes is over the limit of {MAX_REQUEST_BYTES}",
        },
        status_code=413,
    )


class BodyLimit:
    """An ASGI middleware that answers 413 once a request body passes the limit, by its
    Content-Length or, without one, by the bytes received so far. The rest of the body is
    read away unkept, so the client hears the answer rather than a reset."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
            await drain(receive)
            return await too_large(declared.decode())(scope, receive, send)
        state = {"received": 0, "over": False}

        async def counted_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > MAX_REQUEST_BYTES:
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
        if state["over"]:
            await too_large(f"more than {MAX_REQUEST_BYTES}")(scope, receive, send)


async def drain(receive) -> None:
    while (message := await receive())["type"] == "http.request" and message.get("more_body"):
        pass


@app.middleware("http")
async def short_errors(request: Request, call_next):
    response = await call_next(request)
    if response.status_code < 400:
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])
    return JSONResponse(short_message(body), status_code=response.status_code)


app.add_middleware(BodyLimit)
