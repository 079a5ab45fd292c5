"""A persistent pool of grading processes with a hard per-task timeout.

math-verify's own timeouts use `signal.alarm`, which only works in the main thread of the
main interpreter: from a generation thread, a trainer's reward worker or a web server it
raises or, with the timeout off, can hang forever on a pathological expression. Here every
comparison runs in a worker process, in that process's main thread, where

* a SIGALRM interval timer stops a task after `timeout` seconds (the soft timeout), and
* the parent kills the worker if no result came `timeout + grace` seconds after the task
  was sent (the hard timeout: code stuck in C never sees a signal handler); the task counts
  as failed, and a replacement starts when that worker's next task comes.

A call hands each worker one task at a time, from a thread of its own per worker: the
kill-and-replace is that thread's, so no task waits on another's deadline.

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
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
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
    `TaskResult` per task, in order. Each worker has a thread of the call that hands it one
    task at a time and waits `timeout + grace` seconds for the answer: none, and the worker is
    killed and replaced (that task "timeout"); a worker that dies costs its task only ("crash").
    Thread-safe (calls are serialised).
    """

    def __init__(self, workers: int | None = None, start_timeout: float = 120.0,
                 max_start_failures: int = 3):
        self.n_workers = workers if workers is not None else default_workers()
        if self.n_workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.n_workers}")
        self.start_timeout = start_timeout
        self.max_start_failures = max_start_failures
        self.pid = os.getpid()
        self._workers: list[_Worker | None] = []
        self._lock = threading.RLock()
        self._count = threading.Lock()
        self.n_killed = 0  # workers killed for overrunning the hard timeout
        self.n_crashed = 0  # workers that died on their own while busy
        self.n_started = 0

    def _spawn(self) -> _Worker:
        parent_sock, child_sock = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(WORKER_FILE), str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),), stdin=subprocess.DEVNULL, env=dict(os.environ),
                start_new_session=True,  # terminal signals are the parent's to handle
            )
        except BaseException:
            parent_sock.close()
            child_sock.close()
            raise
        child_sock.close()
        with self._count:
            self.n_started += 1
        return _Worker(proc=proc, conn=Connection(parent_sock.detach()))

    def _ready(self) -> _Worker:
        """A started worker that has said it is ready (its imports done)."""
        why, code = "", None
        for _ in range(self.max_start_failures):
            w = self._spawn()
            why = f"not ready after {self.start_timeout:.0f} s"
            try:
                if w.conn.poll(self.start_timeout) and w.conn.recv()[0] == "ready":
                    return w
            except (EOFError, OSError):
                why = "it exited"
            code = w.proc.poll()
            w.kill()
        raise GradingError(
            f"the grading worker failed to start {self.max_start_failures} times ({why}, exit code {code}); check "
            f"that math-verify imports in {sys.executable} (its error is on stderr)"
        )

    def close(self) -> None:
        with self._lock:
            workers = [w for w in self._workers if w is not None]
            for w in workers:
                with contextlib.suppress(OSError):
                    w.conn.send(None)
            end = time.monotonic() + 1.0
            for w in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(timeout=max(0.0, end - time.monotonic()))
                w.kill()
            self._workers = []

    def run(self, tasks: Sequence[tuple[str, tuple]], timeout: float,
            grace: float | None = None) -> list[TaskResult]:
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        if os.getpid() != self.pid:
            raise GradingError("this grading pool belongs to another process (forked); use get_pool()")
        hard = timeout + (default_grace(timeout) if grace is None else grace)
        tasks = list(tasks)
        results: list[TaskResult | None] = [None] * len(tasks)
        todo = iter(range(len(tasks)))  # next() on it is atomic: the drivers share it
        errors: list[BaseException] = []

        def drive(slot: int) -> None:
            try:
                for k in todo:
                    results[k] = self._one(slot, tasks[k], float(timeout), hard)
            except BaseException as err:  # noqa: BLE001 - re-raised in the caller
                errors.append(err)

        with self._lock:
            n = min(self.n_workers, len(tasks))
            self._workers += [None] * (n - len(self._workers))
            drivers = [threading.Thread(target=drive, args=(slot,), daemon=True) for slot in range(n)]
            for t in drivers:
                t.start()
            for t in drivers:
                t.join()
        if errors:
            raise errors[0]
        return results  # type: ignore[return-value]

    def _one(self, slot: int, task: tuple[str, tuple], soft: float, hard: float) -> TaskResult:
        """One task on worker `slot` (started first if it has none)."""
        w = self._workers[slot] or self._ready()
        self._workers[slot] = w
        spec, args = task
        try:
            w.conn.send(([(0, spec, tuple(args))], soft))
            if w.conn.poll(hard):
                _, status, value = w.conn.recv()
                return TaskResult(status, value)
            outcome, counter = TaskResult("timeout"), "n_killed"
        except (EOFError, OSError, ValueError):
            outcome, counter = TaskResult("crash"), "n_crashed"
        with self._count:
            setattr(self, counter, getattr(self, counter) + 1)
        w.kill()
        self._workers[slot] = None  # replaced when it is next needed
        return outcome


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
