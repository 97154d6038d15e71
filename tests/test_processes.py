"""A server run in the foreground: stopping it with SIGTERM or Ctrl-C is a normal stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

FOREGROUND = (
    "import sys; from poster_ml.processes import run_in_foreground; "
    "sys.exit(run_in_foreground(['sleep', '30'], dict(__import__('os').environ)))"
)


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_a_server_stopped_by_a_signal_exits_0(number):
    parent = subprocess.Popen([sys.executable, "-c", FOREGROUND])
    # The signal goes once the server child runs (and the handlers, set right after it,
    # are in place): on a loaded machine Python's start alone can take seconds.
    deadline = time.monotonic() + 60
    while not psutil.Process(parent.pid).children() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    os.kill(parent.pid, number)
    assert parent.wait(timeout=20) == 0


def test_a_server_that_fails_by_itself_keeps_its_exit_code():
    from poster_ml.processes import run_in_foreground

    assert run_in_foreground(["sh", "-c", "exit 3"], dict(os.environ)) == 3
