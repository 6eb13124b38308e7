"""Every command and code sample in README.md, run as written, so the README cannot rot.

- the two fresh-machine commands: `scripts/demo` is run; `scripts/test` is the suite running
  this very test, so the test checks that `.ci/run` calls it;
- `cobalt serve --data-dir ./cobalt-data`, then every line of the CLI block, in order, in the
  same directory (with a `./data` directory to upload), each checked for exit code 0 and for
  what it should print or leave behind;
- the `cobalt agent` line for another machine, with its placeholders (SERVER, POOL, the node
  root, $KEY) filled in: the node must join the pool;
- the Python samples, each in the venv of the SDK it names, and the JavaScript sample with the
  npm packages of tests/e2e/js.

The README uses the default ports (10000, 10100). When they are taken on this machine the
server gets free ports instead and the samples' `127.0.0.1:10000` / `127.0.0.1:10100` (and
`UseDevelopmentStorage=true`) are rewritten to them; the test says so in its output.

Needs only the standard library (runs in any venv; the samples use their own)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e_support import (ACCOUNT, BATCH_ACCOUNT, EXTERNAL, KEY, REPO, cobalt_binary,
                         port_is_free, wait_for)

pytestmark = pytest.mark.skipif(EXTERNAL, reason="runs its own server")

README = REPO / "README.md"
DEFAULT_BLOB, DEFAULT_BATCH = "127.0.0.1:10000", "127.0.0.1:10100"


def blocks(language: str):
    """The README's fenced code blocks of `language`, in order."""
    text = README.read_text()
    return [m.group(1) for m in re.finditer(rf"^```{language}\n(.*?)^```$", text, re.S | re.M)]


def commands(block: str):
    """The commands of a shell block, without trailing comments."""
    out = []
    for line in block.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


class Served:
    """`cobalt serve` as the README starts it, and how to reach it."""

    def __init__(self, cwd: Path):
        self.cwd = cwd
        self.env = {**os.environ, "PATH": f"{cobalt_binary().parent}{os.pathsep}{os.environ['PATH']}",
                    "HOME": str(cwd), "COBALT_LOG": "info"}
        for name in ("COBALT_BATCH_URL", "COBALT_BLOB_URL", "COBALT_ACCOUNT", "COBALT_KEY",
                     "AZURE_STORAGE_CONNECTION_STRING", "COBALT_CLIENT_CONFIG"):
            self.env.pop(name, None)
        self.defaults = port_is_free(10000) and port_is_free(10100)
        if not self.defaults:
            print("README test: ports 10000/10100 are taken; using free ports and rewriting the samples")
            self.env.update(COBALT_BLOB_PORT="0", COBALT_BATCH_PORT="0")
        self.proc = None
        self.blob = self.batch = None

    def start(self, line: str):
        self.log = self.cwd / "serve.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(["bash", "-c", f"exec {line}"], cwd=self.cwd, env=self.env,
                                         stdout=log, stderr=log, start_new_session=True)

        def listening():
            text = self.log.read_text(errors="replace")
            blob = re.search(r"blob service listening on http://(\S+)", text)
            batch = re.search(r"batch service listening on http://(\S+)", text)
            assert self.proc.poll() is None, text
            return blob and batch and (blob.group(1), batch.group(1))

        self.blob, self.batch = wait_for(listening, timeout=20, what="cobalt serve")
        if not self.defaults:
            self.env["COBALT_BATCH_URL"] = f"http://{self.batch}"
            self.env["COBALT_BLOB_URL"] = f"http://{self.blob}/{ACCOUNT}"

    def rewrite(self, code: str) -> str:
        """The sample as it must run against this server."""
        if self.defaults:
            return code
        conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint=http://{self.blob}/{ACCOUNT};")
        return (code.replace(DEFAULT_BLOB, self.blob).replace(DEFAULT_BATCH, self.batch)
                .replace("UseDevelopmentStorage=true", conn))

    def run(self, line: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
        result = subprocess.run(["bash", "-c", line], cwd=self.cwd, env=self.env, text=True,
                                capture_output=True, timeout=timeout, **kw)
        assert result.returncode == 0, f"`{line}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        return result

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    server = Served(cwd)
    serve = [c for b in blocks("sh") for c in commands(b) if c.startswith("cobalt serve")]
    assert serve == ["cobalt serve --data-dir ./cobalt-data"], serve
    server.start(serve[0])
    try:
        yield server
    finally:
        server.stop()


def test_the_two_fresh_machine_commands():
    first = commands(blocks("sh")[0])
    assert first == ["scripts/demo", "scripts/test"], first
    ci = (REPO / ".ci/run").read_text()
    assert re.search(r"^exec scripts/test\b", ci, re.M), ci
    result = subprocess.run(["scripts/demo"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for i in (1, 2, 3):
        assert f"taskdata{i}_OUTPUT.txt:" in result.stdout
    assert re.search(r"\d+\.\d+ s  total", result.stdout)


def test_the_cli_session(served):
    cli = next(b for b in blocks("sh") if "cobalt pool create" in b)
    data = served.cwd / "data"
    data.mkdir()
    (data / "a.txt").write_text("alpha\n")
    (data / "sub").mkdir()
    (data / "sub" / "b.bin").write_bytes(os.urandom(70_000))
    outputs = {}
    for line in commands(cli):
        outputs[line] = served.run(line).stdout
    run = next(out for line, out in outputs.items() if line.startswith("cobalt task run"))
    assert re.search(r"hello from tvm-\S+", run), run
    follow = next(out for line, out in outputs.items() if "logs" in line and "--follow" in line)
    assert follow.split() == ["1", "2", "3"], follow
    listed = json.loads(next(out for line, out in outputs.items() if "task list" in line))
    assert {t["id"] for t in listed} >= {"task2"} and all(t["state"] == "completed" for t in listed)
    nodes = next(out for line, out in outputs.items() if line.startswith("cobalt node list"))
    assert nodes.count("tvm-") == 2, nodes
    blobs = next(out for line, out in outputs.items() if line.startswith("cobalt blob list"))
    assert "data/a.txt" in blobs and "data/sub/b.bin" in blobs, blobs
    copy = served.cwd / "copy"
    assert (copy / "a.txt").read_text() == "alpha\n"
    assert (copy / "sub" / "b.bin").read_bytes() == (data / "sub" / "b.bin").read_bytes()
    completion = served.cwd / ".cobalt-completion.bash"
    assert "cobalt" in completion.read_text()


def test_a_node_from_another_machine(served, tmp_path):
    agent = next(c for b in blocks("sh") for c in commands(b) if c.startswith("cobalt agent"))
    served.run("cobalt pool create remote --nodes 0")
    line = (agent.replace("SERVER:10100", served.batch).replace("POOL", "remote")
            .replace("/var/lib/cobalt-node", str(tmp_path / "node")))
    assert "SERVER" not in line and "POOL" not in line, line
    env = {**served.env, "KEY": KEY}
    log = open(tmp_path / "agent.log", "wb")
    proc = subprocess.Popen(["bash", "-c", f"exec {line}"], env=env, stdout=log, stderr=log,
                            start_new_session=True)
    try:
        def joined():
            out = served.run("cobalt node list remote --output json").stdout
            nodes = json.loads(out)
            return len(nodes) == 1 and nodes[0]["state"] == "idle"
        wait_for(joined, timeout=20, what="the remote node to join")
        out = served.run("cobalt task run --job remotejob --pool remote -- /bin/echo from-afar").stdout
        assert "from-afar" in out
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


VENVS = {"azure-storage-blob 12": "blob-v12", "azure-batch 14.2.0": "batch-14",
         "azure-batch 15.1.0": "batch-15"}


def test_the_python_samples(served):
    samples = blocks("python")
    assert len(samples) == 3, samples
    for code in samples:
        venv = next(v for k, v in VENVS.items() if code.splitlines()[0].startswith(f"# {k}"))
        python = REPO / ".venv" / venv / "bin" / "python"
        result = subprocess.run([str(python), "-c", served.rewrite(code)], capture_output=True,
                                text=True, timeout=60, cwd=served.cwd)
        assert result.returncode == 0, f"{venv}:\n{code}\n{result.stdout}{result.stderr}"
        assert result.stdout.startswith("["), result.stdout


def test_the_javascript_sample(served):
    [code] = blocks("javascript")
    js = REPO / "tests" / "e2e" / "js"
    env = {**os.environ, "NODE_PATH": str(js / "node_modules")}
    result = subprocess.run(["node", "-e", served.rewrite(code)], capture_output=True, text=True,
                            timeout=60, cwd=served.cwd, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[" in result.stdout, result.stdout
