"""N worker processes on one port, under a parent that supervises them.

A service whose ``workers`` setting is above 1 starts as this parent: it starts the same command
N times, each worker with ``<PREFIX>WORKER_INDEX`` set (1..N) and the port resolved, and each
worker binds the port with SO_REUSEPORT, so that the kernel spreads new connections over them
(one event loop, so about one core, per worker). The parent serves no calls. It restarts a worker
that exits on its own after a growing delay (``RestartPolicy``; a crash loop ends the parent with
status 1, for the orchestrator to restart the pod), forwards SIGTERM/SIGINT so that every worker
drains as a lone process would, and exits once all of them have.

Metrics: the workers write prometheus_client's multiprocess files into a folder of the parent's,
and the parent serves their sum on the service's metrics port (counters and histograms add up;
a dead worker's counts stay in). A worker's logs go to the parent's standard output.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import NoReturn

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from services.common import event_loop
from services.common.metrics import MetricsEndpoint
from services.common.settings import WorkersSettings

logger = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class RestartPolicy:
    """Restart a crashed process after ``backoff`` seconds, doubling up to ``max_backoff``; more
    than ``max_restarts`` crashes of one process within ``window`` seconds is a crash loop."""

    max_restarts: int = 5
    window: float = 60.0
    backoff: float = 0.5
    max_backoff: float = 8.0

    def delay(self, crashes: int) -> float:
        """Seconds to wait before the restart that follows the ``crashes``-th crash in the window."""
        return min(self.backoff * 2.0 ** (crashes - 1), self.max_backoff)


def is_supervisor(settings: WorkersSettings) -> bool:
    """Whether this process is the parent of several workers rather than one serving process."""
    return settings.workers > 1 and settings.worker_index == 0


def supervise(settings: WorkersSettings) -> NoReturn:
    """Run the parent of ``settings.workers`` workers, then exit with its status."""
    sys.exit(event_loop.run(WorkerSupervisor(settings).run(), settings.event_loop))


def _die_with_parent() -> None:
    # Runs in the forked child before exec: a parent killed outright (SIGKILL, OOM) must not
    # leave workers holding the port. Linux only; elsewhere the call is skipped.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerSupervisor:
    """The parent of ``settings.workers`` workers (see the module docstring)."""

    def __init__(self, settings: WorkersSettings, policy: RestartPolicy | None = None) -> None:
        self.settings = settings
        self.policy = policy or RestartPolicy()
        self.stopping = asyncio.Event()
        self.crash_looped = False
        self._procs: dict[int, asyncio.subprocess.Process] = {}

    def _variable(self, field: str) -> str:
        return f"{self.settings.env_prefix}{field.upper()}"

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT (or a crash loop), then until every worker has exited; the exit status."""
        host_field, port_field = self.settings.listen_fields
        host, port = getattr(self.settings, host_field), getattr(self.settings, port_field)
        # Port 0: the parent picks the port all workers share; its socket (bound, never listening,
        # so it gets no connections) keeps it reserved while they come and go.
        reservation = _reserve(host) if port == 0 else None
        if reservation is not None:
            port = reservation.getsockname()[1]
        metrics_dir = tempfile.mkdtemp(prefix="agents-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, metrics_dir)  # type: ignore[no-untyped-call]
        endpoint = MetricsEndpoint(registry, self.settings.metrics_port, self.settings.metrics_host)
        endpoint.start()
        env = {
            **os.environ,
            self._variable(port_field): str(port),
            self._variable("metrics_port"): "0",  # the parent serves them all
            "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
        }
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        logger.info("%d workers on %s:%d", self.settings.workers, host, port)
        try:
            keepers = [self._keep(k, env, metrics_dir) for k in range(1, self.settings.workers + 1)]
            await asyncio.gather(*keepers, self._forward_stop())
        finally:
            endpoint.stop()
            shutil.rmtree(metrics_dir, ignore_errors=True)
            if reservation is not None:
                reservation.close()
        return 1 if self.crash_looped else 0

    async def _forward_stop(self) -> None:
        await self.stopping.wait()
        logger.info("stopping: every worker drains")
        for proc in self._procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    async def _spawn(self, index: int, env: dict[str, str]) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *sys.orig_argv[1:],
            env={**env, self._variable("worker_index"): str(index)},
            preexec_fn=_die_with_parent,
        )
        self._procs[index] = proc
        if self.stopping.is_set():  # the stop was forwarded while it started
            proc.send_signal(signal.SIGTERM)
        logger.info("worker %d started (pid %d)", index, proc.pid)
        return proc

    async def _keep(self, index: int, env: dict[str, str], metrics_dir: str) -> None:
        """Worker ``index`` from start to its exit after the stop, started again each time it dies."""
        crashes: list[float] = []
        while not self.stopping.is_set():
            proc = await self._spawn(index, env)
            code = await proc.wait()
            mark_process_dead(proc.pid, metrics_dir)  # type: ignore[no-untyped-call]
            if self.stopping.is_set():
                logger.info("worker %d (pid %d) exited with status %d", index, proc.pid, code)
                return
            now = time.monotonic()
            crashes = [t for t in crashes if now - t < self.policy.window] + [now]
            if len(crashes) > self.policy.max_restarts:
                logger.error(
                    "worker %d crashed %d times within %.0fs: stopping", index, len(crashes), self.policy.window
                )
                self.crash_looped = True
                self.stopping.set()
                return
            delay = self.policy.delay(len(crashes))
            logger.warning(
                "worker %d (pid %d) exited with status %d: restarting it in %.1fs", index, proc.pid, code, delay
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)


def _reserve(host: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock
