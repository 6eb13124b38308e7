#!/usr/bin/env bash
# Create the Python virtualenvs used by the end-to-end tests (tests/e2e):
#
#   .venv/blob-v12  azure-storage-blob 12.31.1 + pytest   (tests/e2e/requirements-v12.txt)
#   .venv/legacy    azure-storage 0.36.0 + pytest         (tests/e2e/requirements-legacy.txt)
#                   (the BlockBlobService generation used by the Azure Batch Python tutorial)
#   .venv/batch-4   azure-batch 4.0.0 + pytest            (tests/e2e/requirements-batch4.txt)
#                   (the Batch SDK the tutorial pins; api-version 2017-09-01.6.0)
#   .venv/batch-14  azure-batch 14.2.0 + pytest           (tests/e2e/requirements-batch14.txt)
#                   (last msrest generation; api-version 2024-02-01.19.0)
#   .venv/batch-15  azure-batch 15.1.0 + pytest           (tests/e2e/requirements-batch15.txt)
#                   (azure-core generation; api-version 2025-06-01)
#   .venv/node-python  azure-storage 0.36.0, no test tools (tests/e2e/requirements-node.txt):
#                   the `python` that tasks on local nodes run (the tutorial's task script).
#                   Built from the system interpreter ($NODE_PYTHON, default /usr/bin/python3
#                   when present) so that tasks running as an unprivileged user can execute it.
#
# Idempotent: a venv is rebuilt only when its requirements file (or the Python version)
# changed; otherwise the script returns immediately. Force a rebuild with FORCE=1.
# Interpreter: $PYTHON, default python3 (3.9 or newer; developed on 3.11).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
VENV_ROOT="$REPO/.venv"
REQ_DIR="$REPO/tests/e2e"

if ! command -v "$PY" >/dev/null 2>&1; then
    echo "setup-python: $PY not found (set PYTHON=/path/to/python3)" >&2
    exit 1
fi
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)'; then
    echo "setup-python: $PY is $("$PY" -V 2>&1); need Python >= 3.9" >&2
    exit 1
fi
PY_VERSION="$("$PY" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"

mkdir -p "$VENV_ROOT"
# Keep the venvs out of git even if the repository's .gitignore does not list .venv/.
[ -f "$VENV_ROOT/.gitignore" ] || printf '*\n' > "$VENV_ROOT/.gitignore"

# Serialise concurrent runs (e.g. two test scripts started at once).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$VENV_ROOT/.setup.lock"
    flock 9
fi

# setup_venv NAME REQUIREMENTS_FILE SMOKE_TEST_PYTHON_CODE [INTERPRETER]
setup_venv() {
    local name="$1" req="$2" smoke="$3" py="${4:-$PY}"
    local venv="$VENV_ROOT/$name"
    local stamp="$venv/.cobalt-requirements.stamp"
    local want version
    version="$("$py" -c 'import sys; print(".".join(map(str, sys.version_info[:3])))')"
    want="$(sha256sum "$req" | cut -d' ' -f1) python-$version $py"

    if [ "${FORCE:-0}" != 1 ] && [ -x "$venv/bin/python" ] && [ -f "$stamp" ] \
        && [ "$(cat "$stamp")" = "$want" ]; then
        echo "setup-python: .venv/$name is up to date"
        return 0
    fi

    echo "setup-python: building .venv/$name from ${req#"$REPO"/} (python $version, $py)"
    rm -rf "$venv"
    if ! "$py" -m venv "$venv"; then
        echo "setup-python: '$PY -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --requirement "$req"
    "$venv/bin/python" -m pip check --disable-pip-version-check
    # Importing the SDK proves the pinned set works on this interpreter.
    "$venv/bin/python" -W ignore -c "$smoke"
    printf '%s\n' "$want" > "$stamp"
    echo "setup-python: .venv/$name ready"
}

setup_venv blob-v12 "$REQ_DIR/requirements-v12.txt" \
    'from azure.storage.blob import BlobServiceClient, generate_blob_sas; import pytest, pytest_timeout'

setup_venv legacy "$REQ_DIR/requirements-legacy.txt" \
    'from azure.storage.blob import BlockBlobService, PublicAccess, BlobPermissions
from azure.storage._constants import __version__, X_MS_VERSION
assert __version__ == "0.36.0", __version__
import pytest, pytest_timeout'

setup_venv batch-4 "$REQ_DIR/requirements-batch4.txt" \
    'import azure.batch.batch_service_client as bsc
from azure.batch.batch_auth import SharedKeyCredentials
import azure.batch.models as batchmodels
c = bsc.BatchServiceClient(SharedKeyCredentials("a", "AAAA"), base_url="http://127.0.0.1:1")
assert c.api_version == "2017-09-01.6.0", c.api_version
assert hasattr(c.account, "list_node_agent_skus")
import pytest, pytest_timeout'

setup_venv batch-14 "$REQ_DIR/requirements-batch14.txt" \
    'import azure.batch, azure.batch.models
from azure.batch import BatchServiceClient
from azure.batch.batch_auth import SharedKeyCredentials
c = BatchServiceClient(SharedKeyCredentials("a", "AAAA"), batch_url="http://127.0.0.1:1")
assert c.api_version == "2024-02-01.19.0", c.api_version
import pytest, pytest_timeout'

setup_venv batch-15 "$REQ_DIR/requirements-batch15.txt" \
    'from azure.batch import BatchClient
from azure.core.credentials import AzureNamedKeyCredential
c = BatchClient("http://127.0.0.1:1", AzureNamedKeyCredential("a", "AAAA"))
assert c._config.api_version == "2025-06-01", c._config.api_version
import pytest, pytest_timeout'

# Tasks of local nodes may run as an unprivileged user (nonadmin tasks when the agent runs as
# root), so their interpreter must not live under a private home directory.
NODE_PY="${NODE_PYTHON:-}"
if [ -z "$NODE_PY" ]; then
    if [ -x /usr/bin/python3 ] && /usr/bin/python3 -m venv --help >/dev/null 2>&1; then
        NODE_PY=/usr/bin/python3
    else
        NODE_PY="$PY"
    fi
fi
setup_venv node-python "$REQ_DIR/requirements-node.txt" \
    'from azure.storage.blob import BlockBlobService
from azure.storage._constants import __version__
assert __version__ == "0.36.0", __version__' "$NODE_PY"
