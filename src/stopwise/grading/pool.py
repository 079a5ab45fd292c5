"""A persistent pool of grading processes with a hard per-task timeout.

math-verify's own timeouts use `signal.alarm`, which only works in the main thread of the
main interpreter: from a generation thread, a trainer's reward worker or a web server it
raises or, with the timeout off, can hang forever on a pathological expression. Here every
comparison runs in a worker process, in that process's main thread, where

* a SIGALRM interval timer stops a task after `timeout` seconds (the soft timeout), and
* the parent kills the worker if no result came `timeout + grace` seconds after the task
  started (the hard timeout: code stuck in C never sees a signal handler), then starts a
  replacement. The task counts as failed; the others of its batch are sent again.

So a call returns in at most about `timeout + grace` per task, from any thread or process,
and never hangs. Workers are plain subprocesses of `sys.executable` (a fresh interpreter,
like the 'spawn' start method, so nothing of a torch-loaded parent is forked, and the
parent's `__main__` is not re-imported). They start once, on first use, and are reused:
a typical comparison costs a few milliseconds, not a process start.

Workers: `STOPWISE_GRADER_WORKERS` or `configure(workers=...)`; by default one per spare
CPU core, at most 4.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

WORKER_FILE = Path(__file__).with_name("_worker.py")

_BOOT = (
    "import sys\n"
    "sys.path[:] = [p for p in sys.path if p not in ('', '.')]\n"
    "import importlib.util as u\n"
    "s = u.spec_from_file_location('_stopwise_grading_worker', sys.argv[1])\n"
    "m = u.module_from_spec(s)\n"
    "sys.modules[s.name] = m\n"
    "s.loader.exec_module(m)\n"
    "m.main(int(sys.argv[2]))\n"
)


class GradingError(RuntimeError):
    """The grading workers cannot run at all (e.g. math-verify is not importable)."""


@dataclass
class TaskResult:
    status: str  # "ok" | "timeout" | "error" | "crash"
    value: object = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def default_workers() -> int:
    env = os.environ.get("STOPWISE_GRADER_WORKERS")
    if env:
        try:
            n = int(env)
        except ValueError as err:
            raise ValueError(f"STOPWISE_GRADER_WORKERS must be an integer, got {env!r}") from err
        if n < 1:
            raise ValueError(f"STOPWISE_GRADER_WORKERS must be >= 1, got {n}")
        return n
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus - 1))


def default_grace(timeout: float) -> float:
    return max(0.5, 0.1 * timeout)


@dataclass
class _Worker:
    proc: subprocess.Popen
    conn: Connection
    started: float
    ready: bool = False
    inflight: deque = field(default_factory=deque)  # keys of the tasks sent, in order
    deadline: float | None = None  # when the task now running must have answered

    def kill(self) -> None:
        # The worker leads its own process group (start_new_session): take anything it
        # started down with it.
        try:
            if self.proc.returncode is not None:  # reaped: its pid may be someone else's now
                raise OSError
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (OSError, AttributeError):
            with contextlib.suppress(OSError):
                self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with contextlib.suppress(OSError):
            self.conn.close()


class GradingPool:
    """Worker processes that run `module:function` tasks with a hard per-task timeout.

    `run(tasks, timeout)` takes `(spec, args)` pairs, where `spec` is "module:function" (or
    ":name" for a function of the worker module, e.g. ":grade_texts"), and returns one
    `TaskResult` per task, in order. Thread-safe (calls are serialised).
    """

    def __init__(self, workers: int | None = None, start_timeout: float = 120.0,
                 max_start_failures: int = 3):
        self.n_workers = workers if workers is not None else default_workers()
        if self.n_workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.n_workers}")
        self.start_timeout = start_timeout
        self.max_start_failures = max_start_failures
        self.pid = os.getpid()
        self._workers: list[_Worker] = []
        self._lock = threading.RLock()
        self._start_failures = 0
        self.n_killed = 0  # workers killed for overrunning the hard timeout
        self.n_crashed = 0  # workers that died on their own while busy
        self.n_started = 0

    # -- process management ------------------------------------------------------------
    def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        try:
            env = dict(os.environ)
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(WORKER_FILE), str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # terminal signals are the parent's to handle
            )
        except BaseException:
            parent_sock.close()
            child_sock.close()
            raise
        child_sock.close()
        self.n_started += 1
        return _Worker(proc=proc, conn=Connection(parent_sock.detach()), started=time.monotonic())

    def _replace(self, w: _Worker, need: bool) -> None:
        w.kill()
        self._workers.remove(w)
        if need:
            self._workers.append(self._spawn())

    def _start_failed(self, w: _Worker, why: str) -> None:
        self._start_failures += 1
        code = w.proc.poll()
        w.kill()
        self._workers.remove(w)
        if self._start_failures >= self.max_start_failures:
            raise GradingError(
                f"the grading worker failed to start {self._start_failures} times ({why}, exit code "
                f"{code}); check that math-verify imports in {sys.executable} (its error is on stderr)"
            )
        self._workers.append(self._spawn())

    def close(self) -> None:
        with self._lock:
            for w in self._workers:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            end = time.monotonic() + 1.0
            for w in self._workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(timeout=max(0.0, end - time.monotonic()))
                w.kill()
            self._workers = []

    # -- running ---------------------------------------------------------------------
    def run(self, tasks: Sequence[tuple[str, tuple]], timeout: float,
            grace: float | None = None) -> list[TaskResult]:
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if os.getpid() != self.pid:
            raise GradingError("this grading pool belongs to another process (forked); use get_pool()")
        hard = timeout + (default_grace(timeout) if grace is None else grace)
        with self._lock:
            return self._run(list(tasks), float(timeout), hard)

    def _run(self, tasks: list[tuple[str, tuple]], soft: float, hard: float) -> list[TaskResult]:
        n = len(tasks)
        results: list[TaskResult | None] = [None] * n
        pending: deque[int] = deque(range(n))
        remaining = n
        while remaining:
            # keep enough workers for the work left (one per busy worker or pending chunk)
            want = min(self.n_workers, len(pending) + sum(1 for w in self._workers if w.inflight))
            while len(self._workers) < want:
                self._workers.append(self._spawn())
            now = time.monotonic()
            # hand out work to idle ready workers
            idle = [w for w in self._workers if w.ready and not w.inflight]
            for w in idle:
                if not pending:
                    break
                busy_or_ready = max(1, sum(1 for x in self._workers if x.ready))
                size = max(1, min(64, math.ceil(len(pending) / (2 * busy_or_ready))))
                keys = [pending.popleft() for _ in range(min(size, len(pending)))]
                try:
                    w.conn.send(([(k, tasks[k][0], tuple(tasks[k][1])) for k in keys], soft))
                except (OSError, ValueError):
                    pending.extendleft(reversed(keys))
                    self.n_crashed += 1
                    self._replace(w, need=True)
                    continue
                w.inflight.extend(keys)
                w.deadline = now + hard
            # wait for answers, starts, or the next deadline
            limits = [w.deadline for w in self._workers if w.inflight and w.deadline is not None]
            limits += [w.started + self.start_timeout for w in self._workers if not w.ready]
            wait_for = max(0.0, min(limits) - now) if limits else 1.0
            conns = {w.conn: w for w in self._workers}
            for conn in wait(list(conns), timeout=wait_for):
                w = conns[conn]
                while True:  # drain everything already sent
                    try:
                        if not conn.poll():
                            break
                        msg = conn.recv()
                    except (EOFError, OSError):
                        msg = EOFError
                    if msg is EOFError:
                        if not w.ready:
                            self._start_failed(w, "it exited")
                        else:
                            if w.inflight:
                                k = w.inflight.popleft()
                                results[k] = TaskResult("crash")
                                remaining -= 1
                                self.n_crashed += 1
                                pending.extendleft(reversed(w.inflight))
                                w.inflight.clear()
                            self._replace(w, need=bool(pending))
                        break
                    if msg[0] == "ready":
                        w.ready = True
                        self._start_failures = 0
                        continue
                    k, status, value = msg
                    if w.inflight and w.inflight[0] == k:
                        w.inflight.popleft()
                    elif k in w.inflight:  # pragma: no cover - protocol keeps order
                        w.inflight.remove(k)
                    if results[k] is None:
                        results[k] = TaskResult(status, value)
                        remaining -= 1
                    w.deadline = time.monotonic() + hard if w.inflight else None
            # enforce the deadlines
            now = time.monotonic()
            for w in list(self._workers):
                if w.inflight and w.deadline is not None and now >= w.deadline:
                    k = w.inflight.popleft()
                    if results[k] is None:
                        results[k] = TaskResult("timeout")
                        remaining -= 1
                    pending.extendleft(reversed(w.inflight))
                    w.inflight.clear()
                    self.n_killed += 1
                    self._replace(w, need=True)  # replacement starts now, ready for the next call
                elif not w.ready and now >= w.started + self.start_timeout:
                    self._start_failed(w, f"not ready after {self.start_timeout:.0f} s")
        return results  # type: ignore[return-value]


_POOL: GradingPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> GradingPool:
    """The process-wide grading pool (created on first use; a forked child gets its own)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = GradingPool()
        return _POOL


def configure(workers: int | None = None, start_timeout: float = 120.0) -> GradingPool:
    """Replace the process-wide pool (e.g. to change the number of workers)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL.pid == os.getpid():
            _POOL.close()
        _POOL = GradingPool(workers=workers, start_timeout=start_timeout)
        return _POOL


def shutdown() -> None:
    """Stop the process-wide pool's workers (a later call starts new ones)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL.pid == os.getpid():
            _POOL.close()
        _POOL = None


atexit.register(shutdown)
