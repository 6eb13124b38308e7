#!/usr/bin/env bash
# Installs the JavaScript end-to-end suites' packages (tests/e2e/js) exactly as locked in
# package-lock.json. Idempotent: skips the install when node_modules matches the lock file.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/e2e/js"
cd "$dir"
command -v npm >/dev/null || { echo "setup-node: npm is required (Node.js 20 or later)" >&2; exit 1; }
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
stamp="node_modules/.cobalt-lock-sha256"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup-node: tests/e2e/js/node_modules is up to date"
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "setup-node: installed tests/e2e/js/node_modules"
