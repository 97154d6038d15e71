"""Running a long-lived child process (a server) in the foreground."""

from __future__ import annotations

import signal
import subprocess


def run_in_foreground(command: list[str], environment: dict[str, str]) -> int:
    """Runs `command` until it exits; stopping this process stops it too, rather than
    leaving it orphaned. Returns its exit code."""
    child = subprocess.Popen(command, env=environment)
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda received, frame: child.send_signal(received))
    return child.wait()
