"""One writer at a time per project: builds, promotions and rollbacks take the same lock.

The lock is an `flock` on `build.lock` in the project's products folder: the kernel releases it
when its holder ends, however it ends (a SIGKILLed holder never leaves a stale lock behind).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import UTC, datetime
from pathlib import Path

from .errors import PipelineError

#: How a lock that waits for its holder says so (`make build` shows the line).
WAITING = "waiting for another"

#: The lock's file name in a project's products folder (`pipeline.yaml` names it too).
LOCK_FILE = "build.lock"


def project_lock(env: dict, what: str) -> ProjectLock:
    """The lock an env file's project takes (its products folder's lock file, waiting its
    `build_lock_wait` seconds), held while `what` runs: a promotion, a proposal or a champion
    change never overlaps a build (which reads the champion) or another of them."""
    return ProjectLock(Path(env["products"]) / LOCK_FILE, float(env.get("build_lock_wait") or 0),
                       what=what)  # fmt: skip


def lock_free(path: str | Path) -> bool:
    """Whether no build, promotion or rollback holds the project's lock now."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return True  # no lock file: nothing ever held it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases it
    return True


class ProjectLocked(PipelineError):
    """Another build, promotion or rollback of the same project holds the lock."""


class ProjectLock:
    """An exclusive lock on `path`; the holder writes who it is and what it runs inside."""

    locked_error: type[Exception] = ProjectLocked

    def __init__(self, path: str | Path, wait_seconds: float = 0.0, poll: float = 0.5,
                 what: str = "build"):  # fmt: skip
        self.path = Path(path)
        self.what = what
        self.wait_seconds = float(wait_seconds)
        self.poll = poll
        self._fd: int | None = None
        self.waited = False

    def holder(self) -> tuple[str, str]:
        """What holds the lock and who, as the holder wrote it ("unknown holder" when
        unreadable)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8"))
            who = f"pid {info['pid']} on {info['host']}, started {info['started']}"
            return info.get("what", "build"), who
        except (OSError, ValueError, KeyError):
            return "build", "unknown holder"

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
                    what, who = self.holder()
                    raise self.locked_error(
                        f"another {what} of this project is running ({who}); "
                        f"this {self.what} stopped before touching any product{waited}. "
                        f"Let it finish, or raise `build_lock_wait` to wait for it "
                        f"(lock file: {self.path})"
                    ) from None
                if not announced:
                    what, who = self.holder()
                    print(f"{WAITING} {what} ({who}) ...", flush=True)
                    announced = self.waited = True
                time.sleep(self.poll)
        info = {
            "what": self.what,
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

    def __enter__(self) -> ProjectLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
