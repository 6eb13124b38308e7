#!/usr/bin/env bash
# The dashboard's browser tests: headless Chromium (Debian's chromium + chromedriver, driven
# by Selenium) against the release binary. Installs what it needs (scripts/setup-browser.sh),
# then runs pytest on tests/ui/test_dashboard.py. Screenshots land in the pytest tmp dir (and
# replace docs/screenshots/ with COBALT_UPDATE_SCREENSHOTS=1).
#
# Environment: COBALT_BIN (default <repo>/target/release/cobalt); extra arguments go to pytest.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
"$REPO/scripts/setup-browser.sh"

bin="${COBALT_BIN:-$REPO/target/release/cobalt}"
if [ ! -x "$bin" ]; then
    echo "tests/ui/run.sh: Cobalt binary not found at $bin (cargo build --release, or set COBALT_BIN)" >&2
    exit 1
fi
export COBALT_BIN="$bin"
export PYTHONDONTWRITEBYTECODE=1
# Selenium must use the system chromedriver, never download one.
export SE_OFFLINE=true
cd "$REPO/tests/ui"
exec "$REPO/.venv/ui/bin/python" -m pytest -q -p no:cacheprovider -s test_dashboard.py "$@"
