"""CPU pinning for benchmarks: the system under test on one CPU, everything auxiliary on another.

``os.sched_setaffinity(pid)`` moves one *thread* (the one whose id is ``pid``), not a process:
threads a service started before it was pinned (gRPC's poller and event-engine threads, which
do a gRPC process's socket work) stay where they were. So a process is pinned thread by thread
(``/proc/<pid>/task``), its children too (PostgreSQL backends, LiteLLM workers); threads started
afterwards inherit the CPU of the thread that starts them.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import psutil

# Pinning needs two CPUs; on one there is nothing to separate.
ENABLED = (os.cpu_count() or 1) >= 2
AUXILIARY_CPUS, SUT_CPUS = {0}, {1}


def pin_process(pid: int, cpus: set[int]) -> int:
    """Pin every thread of ``pid`` and of its descendants to ``cpus``; the number of threads moved."""
    if not ENABLED:
        return 0
    pids = [pid]
    with contextlib.suppress(psutil.NoSuchProcess):
        pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
    moved = 0
    for process in pids:
        try:
            threads = [int(t) for t in os.listdir(f"/proc/{process}/task")]
        except OSError:
            threads = [process]  # no procfs: at least the main thread
        for thread in threads:
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(thread, cpus)
                moved += 1
    return moved


def pin_self(cpus: set[int]) -> None:
    """Pin this process (all its threads so far; later ones inherit)."""
    pin_process(os.getpid(), cpus)


def postmaster_pid(pgdata: Path) -> int | None:
    """The PostgreSQL server's pid from its data directory's ``postmaster.pid``, if running."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    return None
