"""Finding the processes a test started, wherever they went: by a marker in their environment.

Every child inherits its parent's environment, so a marker variable set on the command a test
starts reaches every process that command spawns, even one that left its process group or session
(setsid). ``marked(name, value)`` lists them from /proc; nothing else is ever signalled.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

MARK = "PIPELINES_TEST_MARK"


def new_mark() -> str:
    return uuid.uuid4().hex


def marked(value: str, name: str = MARK) -> dict[int, str]:
    """pid -> command line of every live process whose environment has ``name=value``."""
    needle = f"{name}={value}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            if needle in env:
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie is already dead, only not yet reaped
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace").strip()
                    found[int(entry.name)] = cmd
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
    return found


def kill_marked(value: str, grace: float = 10) -> dict[int, str]:
    """Last resort of a test's cleanup: SIGTERM then SIGKILL to what still carries the marker.
    Returns what was found alive at the start (empty when the code under test cleaned up)."""
    left = marked(value)
    for pid in left:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while marked(value) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid in marked(value):
        _signal(pid, signal.SIGKILL)
    return left


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
