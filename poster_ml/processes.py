"""Processes: this host's name, whether a process still exists, and running a long-lived
child process (a server) in the foreground."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

HOST = socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that id exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # Alive, another user's.
    return True


def run_in_foreground(
    command: list[str], environment: dict[str, str], cwd: str | None = None
) -> int:
    """Runs `command` until it exits; stopping this process stops it too, rather than
    leaving it orphaned. Returns its exit code.

    The child runs in a session of its own, so a Ctrl-C in the terminal reaches it once,
    forwarded from here (in the terminal's process group it would get it twice, which
    uvicorn takes as "force exit now"). Stopped by SIGTERM or Ctrl-C, it returns 0."""
    forwarded: list[int] = []
    child: subprocess.Popen | None = None

    def forward(received: int, frame) -> None:
        forwarded.append(received)
        if child is not None:
            child.send_signal(received)

    # The handlers come first: a signal that arrives while the child starts is not lost,
    # and never kills this process alone, leaving the child running in its own session.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, forward)
    child = subprocess.Popen(command, env=environment, cwd=cwd, start_new_session=True)
    if forwarded:
        child.send_signal(forwarded[-1])
    code = child.wait()
    # A child that stopped because it was asked to has stopped normally, whether it says
    # so with 0 or dies of the signal (-15, or 128 + 15 from a shell).
    stopped_as_asked = {0} | {-number for number in forwarded} | {128 + n for n in forwarded}
    return 0 if forwarded and code in stopped_as_asked else code
