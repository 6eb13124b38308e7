#!/usr/bin/env bash
# Side-by-side blob benchmark, Azurite vs Cobalt. See bench/README.md.
#
# Installs (idempotently, into bench/.cache/) Azurite 3.35.0 and, unless the project's
# .venv/blob-v12 exists, a venv with azure-storage-blob 12.31.1; then hands over to
# blob_bench.py, which starts/stops both servers and cleans up (also on Ctrl-C/SIGTERM).
#
#   bench/blob-bench.sh                          # full: 1 GiB + 2,000 x 4 KiB, 3 runs
#   BENCH_QUICK=1 bench/blob-bench.sh            # quick: 64 MiB + 200 x 4 KiB
#   BENCH_QUICK=1 BENCH_SERVERS=azurite,azurite bench/blob-bench.sh   # harness check without Cobalt
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$BENCH_DIR/.." && pwd)"
CACHE="$BENCH_DIR/.cache"
AZURITE_VERSION=3.35.0
SDK_VERSION=12.31.1
AZ_PREFIX="$CACHE/azurite-$AZURITE_VERSION"

die() { echo "blob-bench: $*" >&2; exit 1; }

for tool in curl dd node npm; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done
mkdir -p "$CACHE"

servers="${BENCH_SERVERS:-azurite,cobalt}"

# --- Azurite -----------------------------------------------------------------------------
if [[ ",$servers," == *",azurite,"* && -z "${AZURITE_BLOB:-}" ]]; then
  have=""
  if [[ -f "$AZ_PREFIX/node_modules/azurite/package.json" ]]; then
    have="$(node -p "require('$AZ_PREFIX/node_modules/azurite/package.json').version" 2>/dev/null || true)"
  fi
  if [[ "$have" != "$AZURITE_VERSION" ]]; then
    echo "blob-bench: installing azurite@$AZURITE_VERSION into $AZ_PREFIX" >&2
    mkdir -p "$AZ_PREFIX"
    npm install --prefix "$AZ_PREFIX" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >&2 \
      || die "npm install azurite@$AZURITE_VERSION failed"
  fi
  export AZURITE_BLOB="$AZ_PREFIX/node_modules/.bin/azurite-blob"
  [[ -x "$AZURITE_BLOB" ]] || die "azurite-blob not found at $AZURITE_BLOB"
fi

# --- Cobalt --------------------------------------------------------------------------------
if [[ ",$servers," == *",cobalt,"* ]]; then
  cobalt="${COBALT_BIN:-$REPO/target/release/cobalt}"
  [[ -x "$cobalt" ]] || die "Cobalt binary not found: $cobalt (cargo build --release, or set COBALT_BIN; \
BENCH_SERVERS=azurite,azurite checks the harness without it)"
  export COBALT_BIN="$cobalt"
fi

# --- Python with azure-storage-blob ---------------------------------------------------------
sdk_ok() { "$1" -c "import azure.storage.blob as b, sys; sys.exit(b.__version__ != '$SDK_VERSION')" 2>/dev/null; }
py="${BENCH_PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$REPO/.venv/blob-v12/bin/python" ]] && sdk_ok "$REPO/.venv/blob-v12/bin/python"; then
    py="$REPO/.venv/blob-v12/bin/python"
  else
    py="$CACHE/venv/bin/python"
    if ! sdk_ok "$py"; then
      echo "blob-bench: creating $CACHE/venv with azure-storage-blob==$SDK_VERSION" >&2
      python3 -m venv "$CACHE/venv" || die "python3 -m venv failed"
      "$CACHE/venv/bin/pip" install -q "azure-storage-blob==$SDK_VERSION" >&2 || die "pip install failed"
    fi
  fi
fi
sdk_ok "$py" || die "$py cannot import azure-storage-blob $SDK_VERSION"

# blob_bench.py stops the servers it started (by PID) and removes its temp dir in a finally
# block, on errors, Ctrl-C (SIGINT), SIGTERM and SIGHUP alike; exec so those signals reach it.
exec "$py" "$BENCH_DIR/blob_bench.py" "$@"
