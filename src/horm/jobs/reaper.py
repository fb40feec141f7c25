"""Make the processes a local Ray starts die with its driver, even a SIGKILLed one.

``ray.init()`` on one machine starts raylet, GCS and two agents as the driver's children.
The actors end with the raylet, but Ray's dashboard and runtime-env agents were seen to
outlive a SIGKILLed driver (reparented to init, still running a minute later). A reaper
fixes that: a tiny process in its own session, given the Ray processes' PIDs and start
times, that waits on a pipe from the driver. At a clean shutdown the driver writes
``done`` and the reaper exits; if the pipe closes without it (the driver died), it
SIGKILLs those processes that still exist with the same start time (never a recycled PID).
Linux only (``/proc``); elsewhere nothing is started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_REAPER = r"""
import json, os, signal, sys
spec = json.loads(sys.argv[1])
if sys.stdin.read().strip() != "done":
    for pid, start in spec:
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[19] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
"""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[19]


def descendants(pid: int) -> list[int]:
    """PIDs of every process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Reaper:
    """Guards the current descendants of this process (see the module docstring)."""

    def __init__(self):
        self.proc = None
        if not sys.platform.startswith("linux"):
            return
        spec = [(p, s) for p in descendants(os.getpid()) if (s := _start_time(p)) is not None]
        if spec:
            self.proc = subprocess.Popen([sys.executable, "-c", _REAPER, json.dumps(spec)], stdin=subprocess.PIPE,
                                         start_new_session=True, close_fds=True)

    def release(self) -> None:
        """Clean shutdown: the guarded processes are stopped by their owner; the reaper leaves them."""
        if self.proc is None:
            return
        try:
            self.proc.stdin.write(b"done\n")
            self.proc.stdin.close()
        except OSError:
            pass
        self.proc.wait()
        self.proc = None
