"""Shared, SDK-independent helpers for the Cobalt end-to-end suites.

Used by conftest.py and by both test modules (which run in different virtualenvs:
.venv/blob-v12 and .venv/legacy), so this module must import nothing but the
standard library.
"""
from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Optional

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
# Same length, different bytes: a syntactically valid key that is simply wrong.
WRONG_KEY = "A" * 86 + "=="

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "cobalt"

LISTEN_RE = re.compile(r"blob service listening on (http://\S+)")

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


class CobaltServer:
    """One Cobalt process on a data directory that outlives the process.

    start() launches `COBALT_BIN serve --data-dir D --blob-port 0 --host 127.0.0.1`
    and waits for the `blob service listening on http://...` line on stderr;
    kill9()/terminate() stop it; start() again reuses the same data directory
    (restart after a crash). The port changes on every start.
    """

    def __init__(self, binary: Path, data_dir: Path, log_dir: Optional[Path] = None,
                 port: int = 0):
        self.port = port                         # 0: a free port chosen by the server
        self.binary = Path(binary)
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir) if log_dir else self.data_dir.parent
        self.proc: Optional[subprocess.Popen] = None
        self.url: Optional[str] = None          # http://127.0.0.1:PORT
        self.endpoint: Optional[str] = None     # http://127.0.0.1:PORT/devstoreaccount1
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
        log = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--data-dir", str(self.data_dir),
                 "--blob-port", str(self.port), "--host", "127.0.0.1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while True:
            m = LISTEN_RE.search(self.log_path.read_text(errors="replace"))
            if m:
                self.url = m.group(1).rstrip("/")
                if self.url.endswith("/" + ACCOUNT):
                    self.url = self.url[: -len(ACCOUNT) - 1]
                self.endpoint = f"{self.url}/{ACCOUNT}"
                return self.endpoint
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cobalt exited with {self.proc.returncode} before listening:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise TimeoutError(
                    f"cobalt did not log 'blob service listening on ...' within {timeout}s:\n"
                    f"{self.log_tail()}")
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
