"""One build at a time per project: Ploomber's parallel executor behind an exclusive file lock.

`pipeline.yaml` names `locked_parallel` as its executor, so the lock is taken by `ploomber build`
(and `make build`) only, not by `ploomber status`, JupyterLab or single-task runs. The lock is an
`flock` on an open file: the kernel releases it when the build's processes end, however they end
(a SIGKILLed build never leaves a stale lock behind).
"""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from ploomber.constants import TaskStatus
from ploomber.exceptions import DAGBuildError
from ploomber.executors import Parallel

from ..storage import sweep_partial_writes
from .inputs import Inputs

#: Thread pools of OpenMP (HistGradientBoosting) and BLAS (LogisticRegression) read these.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


class BuildLocked(DAGBuildError):
    """Another build of the same project holds the lock."""


class BuildLock:
    """An exclusive lock on `path`; the holder writes who it is inside."""

    def __init__(self, path: str | Path, wait_seconds: float = 0.0, poll: float = 0.5):
        self.path = Path(path)
        self.wait_seconds = float(wait_seconds)
        self.poll = poll
        self._fd: int | None = None
        self.waited = False

    def holder(self) -> str:
        """Who holds the lock, as the holder wrote it ("unknown" when unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError):
            return "unknown holder"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_seconds
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    waited = f" after waiting {self.wait_seconds:g} s" if self.wait_seconds else ""
                    raise BuildLocked(
                        f"another build of this project is running ({self.holder()}); "
                        f"this build stopped before touching any product{waited}. "
                        f"Let it finish, or raise `build_lock_wait` to wait for it "
                        f"(lock file: {self.path})"
                    ) from None
                if not announced:
                    print(f"waiting for another build ({self.holder()}) ...", flush=True)
                    announced = self.waited = True
                time.sleep(self.poll)
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BuildLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class LockedParallel(Parallel):
    """Ploomber's parallel executor that first takes the project's build lock.

    Holding it, it removes what an interrupted build left half-written in `sweep` folders, then
    reruns every task whose inputs changed since it last ran (`inputs`, the record of them).
    """

    def __init__(self, lock_file: str, wait_seconds: float = 0.0, sweep=(),
                 threads_per_task=None, inputs: str | None = None, **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.lock = BuildLock(lock_file, wait_seconds)
        self.sweep = list(sweep)
        self.threads_per_task = threads_per_task
        self.inputs = inputs

    def __call__(self, dag, show_progress):
        if self.threads_per_task:  # several tasks at once, each with every core, oversubscribe
            for name in THREAD_VARIABLES:
                os.environ.setdefault(name, str(self.threads_per_task))
        with self.lock:
            forced = _build_forced()
            if self.lock.waited:  # the other build changed products: decide again what is stale
                _render_again(dag, forced)
            removed = sweep_partial_writes(self.sweep)
            if removed:
                print(f"removed {len(removed)} partial writes of an interrupted build", flush=True)
            if self.inputs is None:
                return super().__call__(dag, show_progress)
            inputs = Inputs(dag, self.inputs)
            changed = {} if forced else inputs.changed()
            stale = [n for n in changed if dag[n].exec_status == TaskStatus.Skipped]
            for name in stale:
                files = changed[name]
                more = f" and {len(files) - 3} more" if len(files) > 3 else ""
                why = f"its inputs changed: {', '.join(files[:3])}{more}" if files else (
                    "no record of what it read when it last ran")  # fmt: skip
                print(f"{name}: {why}", flush=True)
                dag[name].product.metadata.delete()  # Ploomber now sees it, and downstream, stale
            if stale:
                _render_again(dag, forced)
            try:
                return super().__call__(dag, show_progress)
            finally:
                inputs.record([n for n in dag if dag[n].exec_status == TaskStatus.Executed])


def _render_again(dag, forced: bool) -> None:
    """Decide afresh what is stale, forgetting the status Ploomber cached when it rendered."""
    dag._clear_metadata()
    dag.render(force=forced, show_progress=False)


def _build_forced() -> bool:
    """The `force` of the `DAG.build` that called this executor (Ploomber does not pass it on)."""
    frame = inspect.currentframe()
    while frame is not None:
        if frame.f_code.co_name == "_build" and "force" in frame.f_locals:
            return bool(frame.f_locals["force"])
        frame = frame.f_back
    return False


def locked_parallel(lock_file: str, wait_seconds: float = 0.0, sweep=(), threads_per_task=None,
                    inputs: str | None = None, **kwargs) -> LockedParallel:  # fmt: skip
    """The executor `pipeline.yaml` names (a dotted path to a function, as Ploomber expects)."""
    return LockedParallel(lock_file, wait_seconds, sweep, threads_per_task, inputs, **kwargs)
