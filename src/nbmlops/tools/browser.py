"""`make browser`: find a Chromium or Chrome for the reports-site browser test, or install one.

The test takes the first of: the path in NBMLOPS_BROWSER, a Chromium or Chrome on the PATH under
any of the names distributions give it, then the places they install to. GitHub's Ubuntu runners
ship Google Chrome, Debian packages Chromium as `chromium`, Ubuntu as `chromium-browser`. When none
is found, `install` uses Debian's `chromium` package through apt-get, with sudo when not root;
without either it stops and says what to do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from ..commands.registryserver import can_sudo, install_command

VARIABLE = "NBMLOPS_BROWSER"
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
PLACES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium",
          "/opt/google/chrome/chrome", "/usr/bin/google-chrome")  # fmt: skip


def find(environ=os.environ, places=PLACES) -> str | None:
    """The browser the test uses, or None."""
    chosen = environ.get(VARIABLE)
    if chosen:
        return chosen if os.path.isfile(chosen) and os.access(chosen, os.X_OK) else None
    for name in NAMES:
        found = shutil.which(name, path=environ.get("PATH", ""))
        if found:
            return found
    return next((p for p in places if os.path.isfile(p) and os.access(p, os.X_OK)), None)


def main(argv: list[str] | None = None) -> int:
    found = find()
    if found:
        print(f"browser for the reports-site test: {found}")
        return 0
    if os.environ.get(VARIABLE):
        print(f"error: {VARIABLE}={os.environ[VARIABLE]} is not an executable file",
              file=sys.stderr)  # fmt: skip
        return 2
    commands = None
    if shutil.which("apt-get"):
        commands = install_command(os.geteuid() == 0, can_sudo(), "chromium")
    if commands is None:
        print("error: no Chromium or Chrome found (looked for " + ", ".join(NAMES) + "), and "
              "it cannot be installed here (apt-get with root or sudo). Install one, or set "
              f"{VARIABLE} to its path.", file=sys.stderr)  # fmt: skip
        return 2
    print("installing chromium (Debian package) for the reports-site browser test")
    for command in commands:
        done = subprocess.run(command, stdout=subprocess.DEVNULL)
        if done.returncode:
            print(f"error: {' '.join(command)} failed ({done.returncode})", file=sys.stderr)
            return done.returncode
    found = find()
    print(f"browser for the reports-site test: {found}")
    return 0 if found else 2


if __name__ == "__main__":
    sys.exit(main())
