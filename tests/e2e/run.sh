#!/usr/bin/env bash
# Run the Cobalt blob end-to-end suites, each with its own SDK generation:
#   .venv/blob-v12 -> tests/e2e/test_blob_v12.py    (azure-storage-blob 12.31.1)
#   .venv/legacy   -> tests/e2e/test_blob_legacy.py (azure-storage 0.36.0, Batch tutorial)
#
# Environment (passed through to pytest):
#   COBALT_BIN            server binary, default <repo>/target/release/cobalt
#   COBALT_BLOB_ENDPOINT  test an already running server instead, e.g.
#                         http://127.0.0.1:10000/devstoreaccount1 (crash test is skipped)
# Extra arguments go to both pytest runs (e.g. `tests/e2e/run.sh -k sas -x`).
# Exit status: 0 only if both suites pass.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
E2E="$REPO/tests/e2e"

"$REPO/scripts/setup-python.sh"
"$REPO/scripts/setup-node.sh"

if [ -z "${COBALT_BLOB_ENDPOINT:-}" ]; then
    bin="${COBALT_BIN:-$REPO/target/release/cobalt}"
    if [ ! -x "$bin" ]; then
        echo "run.sh: Cobalt binary not found at $bin" >&2
        echo "run.sh: build it (cargo build --release), set COBALT_BIN, or set COBALT_BLOB_ENDPOINT" >&2
        exit 1
    fi
    export COBALT_BIN="$bin"
    echo "run.sh: testing $COBALT_BIN"
else
    echo "run.sh: testing the server at $COBALT_BLOB_ENDPOINT"
fi

export PYTHONDONTWRITEBYTECODE=1
cd "$E2E"
status=0
echo "=== blob e2e: azure-storage-blob v12 ==="
"$REPO/.venv/blob-v12/bin/python" -m pytest -q test_blob_v12.py "$@" || status=1
echo "=== blob e2e: azure-storage 0.36.0 (legacy) ==="
"$REPO/.venv/legacy/bin/python" -m pytest -q test_blob_legacy.py "$@" || status=1

if [ -z "${COBALT_BLOB_ENDPOINT:-}" ]; then
    echo "=== blob e2e: @azure/storage-blob (JavaScript) ==="
    (cd "$E2E/js" && node --test) || status=1
fi

if [ "$status" -ne 0 ]; then
    echo "run.sh: FAILED" >&2
fi
exit "$status"
