"""`make browser` finds Chromium or Chrome under the names runners give it, and installs only
with root or sudo."""

from __future__ import annotations

import os

from nbmlops.tools import browser


def _executable(folder, name: str) -> str:
    path = folder / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return str(path)


def test_any_chromium_or_chrome_on_the_path_is_found(tmp_path):
    empty = {"PATH": str(tmp_path / "none")}
    assert browser.find(empty, places=()) is None
    chrome = _executable(tmp_path, "google-chrome")  # GitHub's Ubuntu runners
    assert browser.find({"PATH": str(tmp_path)}, places=()) == chrome
    chromium = _executable(tmp_path, "chromium-browser")  # Ubuntu's name, preferred to Chrome
    assert browser.find({"PATH": str(tmp_path)}, places=()) == chromium
    assert browser.find(empty, places=(str(tmp_path / "missing"), chrome)) == chrome


def test_a_chosen_browser_wins_and_a_wrong_choice_is_not_replaced(tmp_path):
    chosen = _executable(tmp_path, "my-chrome")
    _executable(tmp_path, "chromium")
    assert browser.find({browser.VARIABLE: chosen, "PATH": str(tmp_path)}) == chosen
    text = tmp_path / "notes.txt"
    text.write_text("not a browser")
    assert browser.find({browser.VARIABLE: str(text), "PATH": str(tmp_path)}) is None
    assert browser.find({browser.VARIABLE: str(tmp_path), "PATH": str(tmp_path)}) is None


def test_install_uses_sudo_when_not_root_and_nothing_without_either():
    assert browser.install_command(is_root=False, has_sudo=False, package="chromium") is None
    as_user = browser.install_command(is_root=False, has_sudo=True, package="chromium")
    assert all(c[:2] == ["sudo", "-n"] for c in as_user)
    assert as_user[-1][-3:] == ["-y", "-qq", "chromium"]
    as_root = browser.install_command(is_root=True, has_sudo=False, package="chromium")
    assert all("sudo" not in c for c in as_root) and as_root[-1][-1] == "chromium"
    assert os.path.basename(as_root[0][2]) == "apt-get"
