"""A small filesystem for the full-disk tests, with no root: a tmpfs mounted in a mount
namespace of its own (`unshare -rm`), held by a process that sleeps in it. Commands run in
that namespace through `nsenter`; the test reads and fills the tmpfs through
/proc/PID/root, the holder's own view of the files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def check_unshare() -> None:
    """Fail, saying why, on a machine that allows no unprivileged user namespace."""
    probe = subprocess.run([shutil.which("unshare") or "unshare", "-rm", "true"],
                           capture_output=True)  # fmt: skip
    assert probe.returncode == 0, (
        "a full disk is tested on a tmpfs in a mount namespace of its own; this machine "
        f"allows no user namespace (unshare -rm: {probe.stderr.decode().strip()})"
    )


def mounted(folder: Path, size: str) -> list[str]:
    """The start of a command line that runs the rest with a tmpfs of `size` on `folder`."""
    return ["unshare", "-rm", "sh", "-c",
            f'mount -t tmpfs -o size={size} tmpfs "{folder}" && exec "$@"', "sh"]  # fmt: skip


class SmallDisk:
    """A tmpfs of `size` on `folder`, for as long as the object is open."""

    def __init__(self, folder: Path, size: str):
        check_unshare()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.holder = subprocess.Popen([*mounted(folder, size), "sh", "-c",
                                        "echo mounted && exec sleep 3600"],
                                       stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.holder.stdout.readline().strip() == "mounted", "the tmpfs was not mounted"
        #: the tmpfs as the test sees it
        self.seen = Path(f"/proc/{self.holder.pid}/root") / folder.relative_to("/")

    def run(self, args: list[str], cwd: Path, **kw) -> subprocess.CompletedProcess:
        """`args` run in `cwd` where the tmpfs is mounted."""
        enter = ["nsenter", "--preserve-credentials", "-U", "-m", "-t", str(self.holder.pid),
                 f"--wd={cwd}", "--"]  # fmt: skip
        return subprocess.run([*enter, *args], **kw)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()

    def __enter__(self) -> SmallDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def fill(folder: Path) -> Path:
    """A ballast file that takes every free byte of the filesystem `folder` is on."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as fh:  # unbuffered: nothing is left to flush
        try:
            while fh.write(b"\0" * 65536):
                pass
        except OSError:
            pass
    return ballast
