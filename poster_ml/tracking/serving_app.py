"""MLflow's own scoring server, behind a guard: `poster-ml serve` (and `make serve`) run it.

The app is `mlflow.pyfunc.scoring_server`'s, unchanged: the same formats, /ping, /health,
/version and /invocations. Two things are added in front of it, because the stock server
echoes the request back in some errors (malformed JSON of 30 MB came back as a 30 MB
error): a request over `POSTER_ML_MAX_REQUEST_BYTES` is answered 413 unread, and every
error answer is cut to MLflow's error code and one short line, at most 1 KB.
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
    reason = reason.split("\\nInput:")[0].split("\nInput:")[0].strip().splitlines()[0] if reason.strip() else "bad request"
    return {"error_code": error.get("error_code", "BAD_REQUEST"), "message": reason[:MAX_MESSAGE]}


@app.middleware("http")
async def guard(request: Request, call_next):
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        # Read the body away unkept, so the client hears the answer rather than a reset.
        async for _ in request.stream():
            pass
        return JSONResponse({"error_code": "REQUEST_TOO_LARGE", "message": f"the request of {int(declared)} bytes is over the limit of {MAX_REQUEST_BYTES}"}, status_code=413)
    response = await call_next(request)
    if response.status_code < 400:
        return response
    body = b"".join([chunk async for chunk in response.body_iterator])
    return JSONResponse(short_message(body), status_code=response.status_code)
