#!/usr/bin/env bash
# Install what the dashboard's browser tests (tests/ui) need:
#   Debian's chromium and chromium-driver (apt-get; as root, or through sudo), and
#   .venv/ui: selenium + pytest pinned in tests/ui/requirements.txt.
# Idempotent: nothing is installed when both packages are present and the venv matches its
# requirements file (and Python version). Force a venv rebuild with FORCE=1.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV="$REPO/.venv/ui"
REQ="$REPO/tests/ui/requirements.txt"

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"
}

if installed chromium && installed chromium-driver; then
    echo "setup-browser: chromium and chromium-driver are installed"
else
    SUDO=""
    if [ "$(id -u)" != 0 ]; then
        SUDO="sudo"
    fi
    echo "setup-browser: installing chromium and chromium-driver (apt-get)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        chromium chromium-driver
fi

mkdir -p "$REPO/.venv"
[ -f "$REPO/.venv/.gitignore" ] || printf '*\n' > "$REPO/.venv/.gitignore"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$REPO/.venv/.setup-ui.lock"
    flock 9
fi
version="$("$PY" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
want="$(sha256sum "$REQ" | cut -d' ' -f1) python-$version $PY"
stamp="$VENV/.cobalt-requirements.stamp"
if [ "${FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] \
    && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-browser: .venv/ui is up to date"
    exit 0
fi
echo "setup-browser: building .venv/ui from tests/ui/requirements.txt (python $version)"
rm -rf "$VENV"
if ! "$PY" -m venv "$VENV"; then
    echo "setup-browser: '$PY -m venv' failed (on Debian: apt-get install python3-venv)" >&2
    exit 1
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --requirement "$REQ"
"$VENV/bin/python" -m pip check --disable-pip-version-check
"$VENV/bin/python" -c 'import selenium, pytest; from selenium.webdriver.chrome.service import Service'
printf '%s\n' "$want" > "$stamp"
echo "setup-browser: .venv/ui ready"
