#!/usr/bin/env bash
# .ci/as-user.sh [TARGET...]: make TARGET (default: ci, the pull-request sequence) run by a user
# who is not root, in a fresh clone of the committed HEAD, with a clean environment, Debian's
# Python 3.11 and a temporary folder as deep as a hosted runner's: proves that nothing in it
# needs root (GitHub's runners run as a normal user). Run as root, it creates the user
# (CI_USER, default nbmlops-ci) and installs Debian's venv module if missing; what else needs
# root (Chromium, PostgreSQL) must be installed before (`make browser postgres`, as .ci/run
# does). Run as another user, it uses that one.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ci)
# A temporary folder as deep as a hosted runner's (/home/runner/work/_temp/...): every path a
# test makes under it, a Unix socket's included, must work at that depth.
long=runner/work/_temp/a-temporary-folder-as-deep-as-a-hosted-runners-one
if [ "$(id -u)" != 0 ]; then
  python=${CI_PYTHON:-$(command -v python3.11 || command -v python3)}
  work=$(mktemp -d)
  git clone --quiet "$repo" "$work/clone"
  mkdir -p "$work/$long"
  TMPDIR="$work/$long" exec make -C "$work/clone" "${targets[@]}" PYTHON="$python"
fi
user=${CI_USER:-nbmlops-ci}
python=${CI_PYTHON:-/usr/bin/python3.11}  # root's own Python may sit where the user cannot read
if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
  apt-get install -y -qq python3.11-venv >/dev/null
fi
id -u "$user" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$user"
home=$(getent passwd "$user" | cut -d: -f6)
rm -rf "$home/clone" "$home/runner"
git clone --quiet "$repo" "$home/clone"  # by root (git refuses another owner's repository),
mkdir -p "$home/$long"
chown -R "$user:" "$home/clone" "$home/runner"  # then the user's
echo "make ${targets[*]} as $user ($(runuser -u "$user" -- id)), in $home/clone, Python $python"
# The machine's network settings (certificates, proxies, package indexes) carry over; nothing else.
mapfile -t network < <(env | grep -E '^(SSL_CERT_|REQUESTS_CA_BUNDLE=|CURL_CA_BUNDLE=|PIP_|UV_|(https?|no)_proxy=|(HTTPS?|NO)_PROXY=)' || true)
exec runuser -u "$user" -- env -i HOME="$home" USER="$user" LANG=C.UTF-8 TMPDIR="$home/$long" "${network[@]}" \
  PATH=/usr/local/bin:/usr/bin:/bin make -C "$home/clone" "${targets[@]}" PYTHON="$python"
