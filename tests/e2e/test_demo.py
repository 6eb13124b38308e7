"""`cobalt demo`, the tutorial ported to Rust, run as a user runs it: the release binary on
its embedded server, with other input files, against a running `cobalt serve`, and with a
broken setup. Its outputs are checked against Python's own count (the tutorial task's
`Counter.most_common` over `word.strip(string.punctuation)`), not the demo's.

Needs only the standard library (run with any venv)."""
from __future__ import annotations

import collections
import json
import os
import re
import string
import subprocess
import time
from pathlib import Path

import pytest

from e2e_support import BATCH_ACCOUNT, BATCH_KEY, EXTERNAL, batch_request, cobalt_binary, shared_data_dir

pytestmark = pytest.mark.skipif(EXTERNAL, reason="runs its own server")


def top_words(text: str, n: int):
    words = [w.strip(string.punctuation) for w in text.split()]
    return collections.Counter(words).most_common(n)


def run_demo(*args: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(cobalt_binary()), "demo", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def outputs(stdout: str):
    """{"taskdata1_OUTPUT.txt": [(word, count), ...]} from the demo's printout."""
    found = {}
    for block in re.split(r"\n(?=\S+_OUTPUT\.txt:\n)", stdout):
        m = re.match(r"(\S+_OUTPUT\.txt):\n", block)
        if not m:
            continue
        lines = block.splitlines()[1:]
        assert lines[0].startswith("----") and lines[5].startswith("----"), block
        assert lines[1].startswith("Node: tvm-") and lines[2].startswith("Task: Task"), block
        words = []
        for line in lines[6:]:
            if not line.strip() or line.startswith("  "):
                break
            word, _, count = line.rpartition(": ")
            words.append((word, int(count)))
        found[m.group(1)] = words
    return found


def test_demo_runs_the_tutorial_in_seconds():
    started = time.monotonic()
    result = run_demo()
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 10, f"the demo took {elapsed:.1f} s"
    got = outputs(result.stdout)
    data = shared_data_dir()
    assert sorted(got) == [f"taskdata{i}_OUTPUT.txt" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        expected = top_words((data / f"taskdata{i}.txt").read_text(), 3)
        assert got[f"taskdata{i}_OUTPUT.txt"] == expected
    for step in ("create the containers", "create the pool", "run the tasks on the nodes",
                 "delete the containers, the job and the pool", "total"):
        assert re.search(rf"\d+\.\d+ s  {re.escape(step)}", result.stdout), step


def test_demo_counts_other_files(tmp_path):
    (tmp_path / "a.txt").write_text("beta alpha, beta; gamma beta alpha\n")
    (tmp_path / "b.txt").write_text("\"one\" two two -- three three three\n")
    (tmp_path / "ignored.md").write_text("not counted")
    result = run_demo("--input", str(tmp_path), "--numwords", "2", "--nodes", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    got = outputs(result.stdout)
    assert got == {"a_OUTPUT.txt": [("beta", 3), ("alpha", 2)],
                   "b_OUTPUT.txt": [("three", 3), ("two", 2)]}


def test_demo_against_a_running_server(cobalt_factory):
    server = cobalt_factory("demo-target")
    server.start()
    result = run_demo("--batch-url", server.batch_url, "--blob-url", server.endpoint)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(outputs(result.stdout)) == 3
    # The same settings from the environment the CLI reads.
    env = {**os.environ, "COBALT_BATCH_URL": server.batch_url, "COBALT_BLOB_URL": server.endpoint}
    result = run_demo(env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(outputs(result.stdout)) == 3 and "Embedded" not in result.stdout
    # Its pool and job carry a unique suffix on a shared server, and are gone (or going).
    pools = json.loads(batch_request(server.batch_url, "GET", "/pools").body)["value"]
    assert all(p["state"] == "deleting" for p in pools), pools
    jobs = json.loads(batch_request(server.batch_url, "GET", "/jobs").body)["value"]
    assert all(j["state"] == "deleting" for j in jobs), jobs


def test_demo_explains_what_is_missing(tmp_path):
    result = run_demo("--task-program", str(tmp_path / "nope"))
    assert result.returncode == 1
    assert "task program" in result.stderr and "cargo build --release" in result.stderr
    result = run_demo("--input", str(tmp_path))
    assert result.returncode == 1
    assert "no .txt files" in result.stderr


def test_demo_reports_a_failing_task(tmp_path):
    fake = tmp_path / "failing-program"
    fake.write_text("#!/bin/sh\necho 'cannot count today' >&2\nexit 7\n")
    fake.chmod(0o755)
    result = run_demo("--task-program", str(fake), "--nodes", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "task Task0 failed (exit code 7" in result.stderr, result.stderr
    assert "cannot count today" in result.stderr
