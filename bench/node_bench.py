#!/usr/bin/env python3
"""Node benchmark (issue 4): how close Cobalt's scheduler and node agents get to the machine.

(A) 10,000 trivial tasks (`/bin/true`) added with add_collection to a pool of 2 local nodes
    with 4 task slots each, timed from the first add until all are completed;
(B) the physical baseline: the same 10,000 processes spawned by 8 threads, each with its own
    directory, `wd/` and stdout/stderr files, on the same filesystem as the node roots
    (crates/cobalt-agent/examples/spawn_baseline.rs, a Rust program, so the baseline is not
    slowed by an interpreter);
and their ratio, on a disk-backed directory and on a tmpfs (/dev/shm), plus the p50/p99
latency from one task's add to its `completed` state on an idle pool.

Tasks run as the agent's user (userIdentity autoUser admin), like the baseline's processes.

Each filesystem gets BENCH_ROUNDS (default 3) Cobalt runs, alternating with baseline runs, and
the median ratio is reported with every run's.

Usage: python3 bench/node_bench.py [N]   (default 10000; BENCH_QUICK=1 -> 2000)
       BENCH_ONLY=disk|tmpfs, BENCH_ROUNDS=R, BENCH_DISK_DIR=DIR
Needs `cargo build --release` (the script builds the baseline example itself).
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from e2e_support import CobaltServer, batch_request  # noqa: E402

ADMIN = {"autoUser": {"scope": "pool", "elevationLevel": "admin"}}


def call(url, method, path, body=None, ok=(200, 201, 202, 204), query=None):
    r = batch_request(url, method, path, query=query,
                      body=json.dumps(body).encode() if body is not None else None)
    if r.status not in ok:
        raise RuntimeError(f"{method} {path}: {r.status} {r.body[:300]!r}")
    return json.loads(r.body) if r.body else {}


def wait(what, probe, timeout=120, interval=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def wait_completed(url, job, n, t0, timeout=600):
    """Polls the job's task counts until `n` tasks are completed; returns the counts.

    The poll interval adapts to the progress: half the time the rest should take at the rate
    so far, between 2 ms and 250 ms. So the measurement neither steals the CPU it measures
    (a fixed 20 ms interval is some 200 requests in a run, ~2% of the machine) nor overshoots
    the end by more than a few milliseconds."""
    deadline = time.monotonic() + timeout
    while True:
        counts = call(url, "GET", f"/jobs/{job}/taskcounts")["taskCounts"]
        done = counts["completed"]
        if done >= n:
            return counts
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {n - done} of {n} tasks")
        elapsed = time.perf_counter() - t0
        rest = (n - done) * elapsed / done if done else 0.02
        time.sleep(min(max(rest / 2, 0.002), 0.25))


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process (and, with `children`, of its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command: state ppid ... utime(12) stime(13) cutime(14) cstime(15), 1-based
    # from the state field at index 0.
    used = int(fields[11]) + int(fields[12])
    if children:
        used += int(fields[13]) + int(fields[14])
    return used / TICK


def cobalt_cpu(server_pid: int) -> dict:
    """CPU seconds so far of the server and of its node agents with their reaped tasks."""
    agents = [int(p) for t in Path(f"/proc/{server_pid}/task").iterdir()
              for p in (t / "children").read_text().split()]
    return {"server": cpu_seconds(server_pid),
            "agents": sum(cpu_seconds(a, children=True) for a in agents)}


def cobalt_run(base: Path, n: int) -> dict:
    data = base / "data"
    server = CobaltServer(Path(os.environ.get("COBALT_BIN", REPO / "target/release/cobalt")), data, base)
    server.start()
    url = server.batch_url
    try:
        call(url, "POST", "/pools", {
            "id": "bench", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 4,
            "virtualMachineConfiguration": {"imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy", "sku": "22_04-lts"}, "nodeAgentSKUId": "batch.node.ubuntu 22.04"}})
        wait("idle nodes", lambda: len([x for x in call(url, "GET", "/pools/bench/nodes")["value"] if x["state"] == "idle"]) == 2)

        # Single-task latency on the idle pool.
        call(url, "POST", "/jobs", {"id": "latency", "poolInfo": {"poolId": "bench"}})
        lat = []
        for i in range(60):
            t0 = time.perf_counter()
            call(url, "POST", "/jobs/latency/tasks", {"id": f"t{i}", "commandLine": "/bin/true", "userIdentity": ADMIN})
            wait("task", lambda: call(url, "GET", f"/jobs/latency/tasks/t{i}", query=[("$select", "state")])["state"] == "completed", interval=0.0005)
            lat.append(time.perf_counter() - t0)
        lat = sorted(lat[10:])   # the first runs warm caches

        call(url, "POST", "/jobs", {"id": "burst", "poolInfo": {"poolId": "bench"}})
        chunks = [[{"id": f"task{i:06d}", "commandLine": "/bin/true", "userIdentity": ADMIN}
                   for i in range(s, min(s + 100, n))] for s in range(0, n, 100)]
        cpu0 = cobalt_cpu(server.pid)
        t0 = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda c: call(url, "POST", "/jobs/burst/addtaskcollection", {"value": c}), chunks))
        added = time.perf_counter() - t0

        counts = wait_completed(url, "burst", n, t0)
        total = time.perf_counter() - t0
        cpu1 = cobalt_cpu(server.pid)
        assert counts["succeeded"] == n, counts
        return {"seconds": total, "rate": n / total, "add_seconds": added,
                "cpu_server_us": (cpu1["server"] - cpu0["server"]) / n * 1e6,
                "cpu_agents_us": (cpu1["agents"] - cpu0["agents"]) / n * 1e6,
                "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000}
    finally:
        server.terminate()


def baseline(base: Path, n: int, name: str) -> dict:
    exe = REPO / "target/release/examples/spawn_baseline"
    root = base / name
    root.mkdir()
    import resource
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run([str(exe), str(root), str(n), "8"], check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.stdout)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["cpu_us"] = used / n * 1e6
    return result


def warn_unjournaled(where: Path) -> None:
    """Says so when `where` is on an ext4 without a journal: there, the kernel skips every inode
    freed in the last 1 to 6 minutes, one by one, when it allocates a new one, so a run soon after
    many files were deleted on that filesystem is slowed (the baseline as much as Cobalt)."""
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    resolved = str(where.resolve())
    best = max((m for m in mounts if resolved == m[1] or resolved.startswith(m[1].rstrip("/") + "/")),
               key=lambda m: len(m[1]), default=None)
    if best is None or best[2] != "ext4":
        return
    journal = Path("/sys/fs/ext4") / Path(best[0]).name / "journal_task"
    if journal.exists() and journal.read_text().strip() == "<none>":
        print(f"note: {where} is on ext4 without a journal ({best[0]}): runs within ~6 minutes of "
              "deleting many files there are slowed; compare the two baselines.", file=sys.stderr)


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else (2000 if os.environ.get("BENCH_QUICK") else 10_000)
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "spawn_baseline", "-p", "cobalt-agent"],
                   cwd=REPO, check=True)
    places = [("disk", Path(os.environ.get("BENCH_DISK_DIR", "/var/tmp"))), ("tmpfs", Path("/dev/shm"))]
    if os.environ.get("BENCH_ONLY"):
        places = [p for p in places if p[0] == os.environ["BENCH_ONLY"]]
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    rows = []
    for name, where in places:
        base = Path(tempfile.mkdtemp(prefix="cobalt-node-bench-", dir=where))
        base.chmod(0o755)
        warn_unjournaled(where)
        try:
            # Baseline and Cobalt alternate, a baseline on each side of every Cobalt run: the
            # machine's speed drifts by up to 30% within minutes (and on a disk, with the files
            # each run leaves), so each Cobalt run is set against the mean of its neighbours and
            # the median of the rounds is reported. Nothing is deleted until the end: on a
            # journal-less ext4, deleting slows the runs after it.
            baselines = [baseline(base, n, "baseline-0")]
            runs = []
            for i in range(rounds):
                run_dir = base / f"cobalt-{i}"
                run_dir.mkdir()
                runs.append(cobalt_run(run_dir, n))
                baselines.append(baseline(base, n, f"baseline-{i + 1}"))
        finally:
            shutil.rmtree(base, ignore_errors=True)
        for i, c in enumerate(runs):
            c["baseline_rate"] = (baselines[i]["rate"] + baselines[i + 1]["rate"]) / 2
            c["baseline_cpu_us"] = (baselines[i]["cpu_us"] + baselines[i + 1]["cpu_us"]) / 2
            c["ratio"] = c["rate"] / c["baseline_rate"]
            c["cpu_ratio"] = c["baseline_cpu_us"] / (c["cpu_server_us"] + c["cpu_agents_us"])
        rows.append((name, where, baselines, runs))

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    print(f"{n:,} tasks per run; {rounds} Cobalt run(s) per filesystem, each between two baseline runs; "
          "medians over the runs, every run's ratio in brackets.")
    print()
    print("| filesystem | baseline (8 threads) | Cobalt (2 nodes x 4 slots) | ratio | add->completed p50 / p99 |")
    print("|---|---:|---:|---:|---:|")
    for name, where, baselines, runs in rows:
        each = ", ".join(f"{r['ratio']:.2f}" for r in runs)
        print(f"| {name} ({where}) | {statistics.median(b['rate'] for b in baselines):,.0f} tasks/s "
              f"({min(b['rate'] for b in baselines):,.0f}-{max(b['rate'] for b in baselines):,.0f}) "
              f"| {median(runs, 'rate'):,.0f} tasks/s ({min(r['rate'] for r in runs):,.0f}-{max(r['rate'] for r in runs):,.0f}) "
              f"| {median(runs, 'ratio'):.2f}x ({each}) | {median(runs, 'p50_ms'):.1f} / {median(runs, 'p99_ms'):.1f} ms |")
    print()
    print("CPU per task (user + system; Cobalt = server + node agents + the tasks they ran):")
    print("| filesystem | baseline | Cobalt | ratio | server | agents + tasks |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, where, baselines, runs in rows:
        cobalt = statistics.median(r["cpu_server_us"] + r["cpu_agents_us"] for r in runs)
        each = ", ".join(f"{r['cpu_ratio']:.2f}" for r in runs)
        print(f"| {name} | {statistics.median(b['cpu_us'] for b in baselines):.0f} us | {cobalt:.0f} us "
              f"| {median(runs, 'cpu_ratio'):.2f}x ({each}) "
              f"| {median(runs, 'cpu_server_us'):.0f} us | {median(runs, 'cpu_agents_us'):.0f} us |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
