"""Shared, SDK-independent helpers for the Cobalt end-to-end suites.

Used by conftest.py and by every test module (each runs in its own virtualenv:
.venv/blob-v12, .venv/legacy, .venv/batch-4, .venv/batch-14, .venv/batch-15), so this
module must import nothing but the standard library.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import subprocess
import time
import uuid
from email.utils import formatdate
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple
from urllib.parse import parse_qs, quote, urlencode, urlsplit

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Same length, different bytes: a syntactically valid key that is simply wrong.
WRONG_KEY = "A" * 86 + "=="

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "cobalt"

# The Batch account of a Cobalt server (dev defaults, like devstoreaccount1 for blobs).
BATCH_ACCOUNT = "devbatchaccount1"
BATCH_KEY = KEY

LISTEN_RE = re.compile(r"blob service listening on (http://\S+)")
BATCH_LISTEN_RE = re.compile(r"batch service listening on (http://\S+)")

KiB = 1024
MiB = 1024 * 1024


def external_endpoint() -> Optional[str]:
    """COBALT_BLOB_ENDPOINT: run against an already running server (e.g. Azurite)."""
    ep = os.environ.get("COBALT_BLOB_ENDPOINT", "").strip()
    return ep.rstrip("/") or None


# True when the suites run against someone else's server (Azurite, ...). A few
# assertions about Azure behaviour that Azurite is known to get wrong are relaxed
# (or skipped) in that mode only; against Cobalt they are strict.
EXTERNAL = external_endpoint() is not None


def unique(prefix: str) -> str:
    """A fresh container/blob name: lower-case, 3-63 chars, valid for containers."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_for(probe, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    """Call probe() until it returns something truthy; return that value. Raises
    AssertionError with the last value seen once `timeout` seconds have passed (used for
    the Batch service's own transitions: deleting -> gone, disabling -> disabled, ...)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout}s (last: {last!r})")
        time.sleep(interval)


# A variable the session's server is started with: tasks must not see it (nor any other of
# the server's variables beyond the machine's basics).
SERVER_SECRET = "COBALT_E2E_SERVER_SECRET"


class CobaltServer:
    """One Cobalt process on a data directory that outlives the process.

    start() launches `COBALT_BIN serve --data-dir D --blob-port 0 --batch-port 0
    --host 127.0.0.1` and waits for the `blob service listening on http://...` and
    `batch service listening on http://...` lines on stderr; kill9()/terminate() stop
    it; start() again reuses the same data directory (restart after a crash). The
    ports change on every start.
    """

    def __init__(self, binary: Path, data_dir: Path, log_dir: Optional[Path] = None,
                 port: int = 0, batch_port: int = 0, env: Optional[Dict[str, str]] = None,
                 node_env: Optional[Dict[str, str]] = None):
        self.port = port                         # 0: a free port chosen by the server
        self.batch_port = batch_port             # likewise, for the Batch service
        self.env = env                           # extra environment of the process
        self.node_env = node_env or {}           # variables every task gets (--node-env)
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        self.proc: Optional[subprocess.Popen] = None
        self.url: Optional[str] = None          # http://127.0.0.1:PORT
        self.endpoint: Optional[str] = None     # http://127.0.0.1:PORT/devstoreaccount1
        self.batch_url: Optional[str] = None    # http://127.0.0.1:BATCH_PORT (Batch account URL)
        self.starts = 0
        self.log_path: Optional[Path] = None

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> str:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("server already running")
        if not self.binary.is_file() or not os.access(self.binary, os.X_OK):
            raise FileNotFoundError(
                f"Cobalt binary not found at {self.binary} "
                "(build it with `cargo build --release` or set COBALT_BIN; "
                "or set COBALT_BLOB_ENDPOINT to test an already running server)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self.log_path = self.log_dir / f"cobalt-{self.data_dir.name}-{self.starts}.log"
        self.url = self.endpoint = self.batch_url = None
        cmd = [str(self.binary), "serve", "--data-dir", str(self.data_dir),
               "--blob-port", str(self.port), "--batch-port", str(self.batch_port),
               "--host", "127.0.0.1"]
        for name, value in self.node_env.items():
            cmd += ["--node-env", f"{name}={value}"]
        log = open(self.log_path, "wb")
        try:
            env = {**os.environ, **self.env} if self.env else None
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=env)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_text(errors="replace")
            m = LISTEN_RE.search(text)
            b = BATCH_LISTEN_RE.search(text)
            if m and b:
                self.url = m.group(1).rstrip("/")
                if self.url.endswith("/" + ACCOUNT):
                    self.url = self.url[: -len(ACCOUNT) - 1]
                self.endpoint = f"{self.url}/{ACCOUNT}"
                self.batch_url = b.group(1).rstrip("/")
                return self.endpoint
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cobalt exited with {self.proc.returncode} before listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise TimeoutError(
                    "cobalt did not log 'blob service listening on ...' and 'batch service "
                    f"listening on ...' within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        """Crash the server: SIGKILL, no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, grace: float = 10.0) -> Optional[int]:
        """Orderly stop: SIGTERM, then SIGKILL if still alive after `grace` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def restart(self, timeout: float = 20.0) -> str:
        """Stop (SIGTERM) if running, then start again on the same data directory."""
        self.terminate()
        return self.start(timeout=timeout)

    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    def log_tail(self, n: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return "(no log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def port_is_free(port: int) -> bool:
    import socket
    with socket.socket() as s:
        # As the server does: connections of an earlier test in TIME_WAIT do not block a bind.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def cobalt_binary() -> Path:
    return Path(os.environ.get("COBALT_BIN") or DEFAULT_BIN)


# -- Batch SharedKey (reference: shared/reference/batch-rest.md section 3) -----------------

_BATCH_SIGNED_HEADERS = (
    "content-encoding", "content-language", "content-length", "content-md5",
    "content-type", "date", "if-modified-since", "if-match", "if-none-match",
    "if-unmodified-since", "range")


def batch_string_to_sign(method: str, path: str, query: str, headers: Dict[str, str],
                         account: str = BATCH_ACCOUNT) -> str:
    """The Batch SharedKey string-to-sign, computed as the Python SDKs do it.

    path: the URL path exactly as sent (still percent-encoded); query: the raw query
    string as sent (parsed with parse_qs: decoded values, first value only, empty values
    dropped, names kept as sent and sorted case-sensitively)."""
    h = {k.lower(): v for k, v in headers.items() if v}
    sts = method.upper() + "\n"
    sts += "".join(str(h.get(name, "")) + "\n" for name in _BATCH_SIGNED_HEADERS)
    for name, value in sorted((k, v) for k, v in h.items() if k.startswith("ocp-")):
        sts += f"{name}:{value}\n"
    sts += f"/{account}{path}"
    for name, values in sorted(parse_qs(query).items()):
        sts += f"\n{name}:{values[0]}"
    return sts


def batch_signature(string_to_sign: str, key: str = BATCH_KEY) -> str:
    digest = hmac.new(base64.b64decode(key), string_to_sign.encode("utf-8"),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


class RawResponse:
    def __init__(self, status: int, reason: str, headers, body: bytes):
        self.status = status
        self.reason = reason
        self.headers = headers          # http.client.HTTPMessage: case-insensitive get()
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason} {self.body[:300]!r}>"


def batch_request(base_url: str, method: str, path: str,
                  query: Optional[Iterable[Tuple[str, str]]] = None,
                  headers: Optional[Dict[str, str]] = None, body: Optional[bytes] = None,
                  account: str = BATCH_ACCOUNT, key: Optional[str] = BATCH_KEY,
                  api_version: Optional[str] = "2024-02-01.19.0",
                  ocp_date: Optional[str] = None, timeout: float = 30) -> RawResponse:
    """One raw Batch request, signed with SharedKey like the SDKs sign it (key=None:
    no Authorization header). query: (name, value) pairs, encoded here; api-version is
    appended unless api_version is None. Also accepts a full URL in `path` (e.g. an
    odata.nextLink), whose query is then used as is."""
    parts = urlsplit(path)
    if parts.scheme:
        base_url = f"{parts.scheme}://{parts.netloc}"
        path, qs = parts.path, parts.query
    else:
        pairs = list(query or [])
        if api_version is not None:
            pairs.append(("api-version", api_version))
        qs = urlencode(pairs, quote_via=_quote)   # `$filter=a%20eq%20%27b%27`, as 14.x sends
    base = urlsplit(base_url)
    hdrs = {"ocp-date": ocp_date or formatdate(usegmt=True),
            "client-request-id": str(uuid.uuid4()),
            "Accept": "application/json"}
    if body is not None:
        hdrs["Content-Type"] = "application/json; odata=minimalmetadata; charset=utf-8"
        hdrs["Content-Length"] = str(len(body))
    elif method.upper() not in ("GET", "HEAD"):
        hdrs["Content-Length"] = "0"
    hdrs.update(headers or {})
    if key is not None:
        sts = batch_string_to_sign(method, path, qs, hdrs, account)
        hdrs["Authorization"] = f"SharedKey {account}:{batch_signature(sts, key)}"
    conn = http.client.HTTPConnection(base.hostname, base.port, timeout=timeout)
    try:
        conn.request(method.upper(), path + ("?" + qs if qs else ""), body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, resp.reason, resp.headers, data)
    finally:
        conn.close()


def _quote(value, safe="", encoding=None, errors=None):
    return quote(value, safe="$", encoding=encoding, errors=errors)


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (for a server whose URL must be known before
    it starts, e.g. the blob endpoint handed to tasks through the environment)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_python_bin() -> Path:
    """The bin directory of .venv/node-python: the `python` (with azure-storage 0.36.0) that
    tasks on local nodes run, usable by an unprivileged user (scripts/setup-python.sh)."""
    return Path(__file__).resolve().parents[2] / ".venv" / "node-python" / "bin"


def shared_data_dir() -> Path:
    """The tutorial's input files (taskdata1..3.txt): ../shared/data beside the repository,
    or $COBALT_SHARED_DIR/data."""
    here = Path(__file__).resolve().parent
    data = here.parents[2] / "shared" / "data"
    if data.is_dir():
        return data
    return Path(os.environ.get("COBALT_SHARED_DIR", here.parents[2].parent / "shared")) / "data"


def wrap_commands_in_shell(ostype: str, commands) -> str:
    """The Azure Batch tutorial's helper (common/helpers.py)."""
    if ostype.lower() == 'linux':
        return '/bin/bash -c \'set -e; set -o pipefail; {}; wait\''.format(';'.join(commands))
    raise ValueError('unknown ostype: {}'.format(ostype))
