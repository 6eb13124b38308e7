#!/usr/bin/env bash
# Run the Cobalt end-to-end suites, each with its own SDK generation:
#   .venv/blob-v12 -> tests/e2e/test_blob_v12.py    (azure-storage-blob 12.31.1)
#   .venv/legacy   -> tests/e2e/test_blob_legacy.py (azure-storage 0.36.0, Batch tutorial)
#   tests/e2e/js   -> node --test                   (@azure/storage-blob; own server only)
#   .venv/batch-4  -> tests/e2e/test_batch_account_v4.py, test_batch_control_v4.py
#                     (azure-batch 4.0.0, Batch tutorial)
#   .venv/batch-14 -> tests/e2e/test_batch_account.py, test_batch_control_v14.py,
#                     test_nodes_v14.py, test_tutorial_v14.py (azure-batch 14.2.0 + azure-storage-blob 12)
#   .venv/batch-15 -> tests/e2e/test_batch_account_v15.py, test_batch_control_v15.py,
#                     test_nodes_v15.py, test_tutorial_v15.py (azure-batch 15.1.0 + azure-storage-blob 12)
#   .venv/blob-v12 -> tests/e2e/test_demo.py, test_readme.py (`cobalt demo`, the README's
#                     commands and samples; standard library only, samples in their venvs)
# The Batch suites need our own binary (they run only when COBALT_BLOB_ENDPOINT is unset).
#
# Environment (passed through to pytest):
#   COBALT_BIN            server binary, default <repo>/target/release/cobalt
#   COBALT_BLOB_ENDPOINT  test an already running server instead, e.g.
#                         http://127.0.0.1:10000/devstoreaccount1 (crash test is skipped)
# Extra arguments go to every pytest run (e.g. `tests/e2e/run.sh -k sas -x`); a pytest
# run in which they select no test (exit 5) does not count as a failure.
# Exit status: 0 only if every suite passes.
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
# run_pytest VENV FILE [ARGS...]: exit 5 (no test selected by the caller's -k) is fine.
run_pytest() {
    local venv="$1" file="$2" rc=0
    shift 2
    "$REPO/.venv/$venv/bin/python" -m pytest -q "$file" "$@" || rc=$?
    if [ "$rc" -ne 0 ] && { [ "$rc" -ne 5 ] || [ "$#" -eq 0 ]; }; then
        status=1
    fi
}
echo "=== blob e2e: azure-storage-blob v12 ==="
run_pytest blob-v12 test_blob_v12.py "$@"
echo "=== blob e2e: azure-storage 0.36.0 (legacy) ==="
run_pytest legacy test_blob_legacy.py "$@"

if [ -z "${COBALT_BLOB_ENDPOINT:-}" ]; then
    echo "=== blob e2e: @azure/storage-blob (JavaScript) ==="
    (cd "$E2E/js" && node --test) || status=1

    echo "=== front door: cobalt demo (the tutorial ported to Rust) ==="
    run_pytest blob-v12 test_demo.py "$@"
    echo "=== front door: every command and sample of README.md ==="
    run_pytest blob-v12 test_readme.py "$@"

    echo "=== batch e2e: azure-batch 4.0.0 (tutorial) ==="
    run_pytest batch-4 test_batch_account_v4.py "$@"
    echo "=== batch e2e: azure-batch 4.0.0 (pools, jobs, schedules, tasks) ==="
    run_pytest batch-4 test_batch_control_v4.py "$@"
    echo "=== batch e2e: the tutorial on local nodes (azure-batch 4.0.0 + azure-storage 0.36.0) ==="
    run_pytest batch-4 test_tutorial_v4.py "$@"
    echo "=== batch e2e: azure-batch 14.2.0 ==="
    run_pytest batch-14 test_batch_account.py "$@"
    echo "=== batch e2e: azure-batch 14.2.0 (pools, jobs, schedules, tasks) ==="
    run_pytest batch-14 test_batch_control_v14.py "$@"
    echo "=== batch e2e: azure-batch 14.2.0 (job preparation and release tasks) ==="
    run_pytest batch-14 test_job_prep_v14.py "$@"
    echo "=== batch e2e: azure-batch 14.2.0 (compute nodes and the scheduler) ==="
    run_pytest batch-14 test_nodes_v14.py "$@"
    echo "=== batch e2e: the tutorial on local nodes (azure-batch 14.2.0 + azure-storage-blob 12) ==="
    run_pytest batch-14 test_tutorial_v14.py "$@"
    echo "=== batch e2e: azure-batch 15.1.0 ==="
    run_pytest batch-15 test_batch_account_v15.py "$@"
    echo "=== batch e2e: azure-batch 15.1.0 (pools, jobs, schedules, tasks, LROs) ==="
    run_pytest batch-15 test_batch_control_v15.py "$@"
    echo "=== batch e2e: azure-batch 15.1.0 (compute nodes and the scheduler, node LROs) ==="
    run_pytest batch-15 test_nodes_v15.py "$@"
    echo "=== batch e2e: the tutorial on local nodes (azure-batch 15.1.0 + azure-storage-blob 12) ==="
    run_pytest batch-15 test_tutorial_v15.py "$@"
fi

if [ "$status" -ne 0 ]; then
    echo "run.sh: FAILED" >&2
fi
exit "$status"
