"""Fixtures shared by the blob (v12, legacy) and Batch (4.0.0, 14.2.0, 15.1.0) suites.

Environment:
  COBALT_BIN            server binary (default <repo>/target/release/cobalt); started as
                        `COBALT_BIN serve --data-dir <tmp> --blob-port 0 --batch-port 0
                        --host 127.0.0.1` (without --batch-port if the binary lacks it).
  COBALT_BLOB_ENDPOINT  e.g. http://127.0.0.1:10000/devstoreaccount1 - use an already
                        running server (Cobalt or Azurite) instead of starting one;
                        tests that need our own process (crash/restart) are skipped, and
                        so is every Batch test (`cobalt_batch`).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from e2e_support import (EXTERNAL, SERVER_SECRET, KiB, MiB, CobaltServer,
                         cobalt_binary, external_endpoint, sha256)


def pytest_collection_modifyitems(config, items):
    if not EXTERNAL:
        return
    skip = pytest.mark.skip(reason="needs our own server process (COBALT_BLOB_ENDPOINT is set)")
    for item in items:
        if "needs_own_server" in item.keywords:
            item.add_marker(skip)


def pytest_report_header(config):
    ep = external_endpoint()
    if ep:
        return f"cobalt e2e: external endpoint {ep} (COBALT_BLOB_ENDPOINT)"
    return f"cobalt e2e: binary {cobalt_binary()}"


_server_logs = []


def pytest_terminal_summary(terminalreporter):
    for path in _server_logs:
        terminalreporter.write_line(f"cobalt server log: {path}")  # kept by pytest (last 3 runs)


@pytest.fixture(scope="session")
def cobalt_server(tmp_path_factory):
    """The session's own Cobalt process (None when COBALT_BLOB_ENDPOINT is set)."""
    if EXTERNAL:
        yield None
        return
    base = tmp_path_factory.mktemp("cobalt-session")
    server = CobaltServer(cobalt_binary(), base / "data", base, env={SERVER_SECRET: "not-for-tasks"})
    try:
        server.start(timeout=20)
        _server_logs.append(server.log_path)
    except Exception as exc:  # noqa: BLE001 - report why, for every test
        server.kill9()
        pytest.fail(f"could not start Cobalt: {exc}", pytrace=False)
    try:
        yield server
    finally:
        rc = server.terminate(grace=10)
        if rc not in (0, -15, None):
            print(f"\ncobalt exited with {rc}; log tail:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def cobalt(cobalt_server) -> str:
    """Blob endpoint, e.g. http://127.0.0.1:PORT/devstoreaccount1."""
    if EXTERNAL:
        return external_endpoint()
    return cobalt_server.endpoint


@pytest.fixture(scope="session")
def cobalt_batch(cobalt_server) -> str:
    """Batch account URL of the session's server, e.g. http://127.0.0.1:PORT (account
    e2e_support.BATCH_ACCOUNT, key BATCH_KEY). Same process as the `cobalt` blob fixture."""
    if EXTERNAL:
        pytest.skip("the Batch suites need our own server process (COBALT_BLOB_ENDPOINT is set)")
    return cobalt_server.batch_url


@pytest.fixture
def cobalt_factory(tmp_path):
    """Start extra, private Cobalt processes (each with its own data dir) that a test
    may crash with kill9() and restart() on the same data directory. All are stopped
    at the end of the test."""
    servers = []

    def make(name: str = "private", port: int = 0) -> CobaltServer:
        if EXTERNAL:
            pytest.skip("needs our own server process (COBALT_BLOB_ENDPOINT is set)")
        s = CobaltServer(cobalt_binary(), tmp_path / f"{name}-data", tmp_path, port=port)
        servers.append(s)
        _server_logs.append(tmp_path / f"cobalt-{name}-data-<n>.log")
        return s

    yield make
    for s in servers:
        s.terminate(grace=10)


class Payload:
    def __init__(self, size: int):
        self.size = size
        self.data = os.urandom(size)
        self.sha256 = sha256(self.data)

    def __repr__(self):
        return f"Payload({self.size})"


@pytest.fixture(scope="session")
def payloads():
    """Random payloads generated once per session: 0 B, 1 KiB, 9 MiB, 70 MiB.

    With the SDKs' default thresholds 9 MiB is one Put Blob and one GET (< 64 MiB put,
    < 32 MiB first get); 70 MiB is 18 x Put Block + Put Block List on upload and one
    32 MiB GET + ten 4 MiB ranged GETs with If-Match on download."""
    return {n: Payload(n) for n in (0, 1 * KiB, 9 * MiB, 70 * MiB)}


@pytest.fixture
def tutorial_server():
    """A private server whose nodes can run the tutorial: its data directory is reachable by
    the unprivileged user nonadmin tasks run as, `python` on the nodes' PATH is
    .venv/node-python, and the task script learns the blob endpoint from its environment
    (`--node-env`: the server's own environment does not reach tasks)."""
    if EXTERNAL:
        pytest.skip("needs our own server process (COBALT_BLOB_ENDPOINT is set)")
    import tempfile
    from e2e_support import ACCOUNT, free_port, node_python_bin
    root = Path(tempfile.mkdtemp(prefix="cobalt-tutorial-"))
    root.chmod(0o755)
    blob_port = free_port()
    env = {"PATH": f"{node_python_bin()}{os.pathsep}{os.environ.get('PATH', '')}"}
    node_env = {"COBALT_BLOB_ENDPOINT": f"http://127.0.0.1:{blob_port}/{ACCOUNT}"}
    server = CobaltServer(cobalt_binary(), root / "data", root, port=blob_port, env=env,
                          node_env=node_env)
    server.start()
    yield server
    server.terminate(grace=10)
