#!/usr/bin/env python3
"""Batch control-plane benchmark: add N tasks, then list them page by page.

What it shows (issue 3: "Listing 100,000 tasks page by page is fast and keeps memory flat"):
- add throughput: add_collection of 100 tasks per request, 4 client threads;
- page latency of the first tenth of the pages vs the last tenth (the baseline is the first
  tenth, in the same run: keyset paging makes the ratio ~1, offset paging would grow with N);
- server RSS before the listing and its peak during it (ratio ~1 means flat memory);
- a filtered listing (`state eq 'completed'`, 1 % of the tasks match) through every page.

Usage: python3 bench/batch_bench.py [N]   (default 100000; BENCH_QUICK=1 -> 10000)
Needs target/release/cobalt (or COBALT_BIN). Uses only the standard library and the signer
in tests/e2e/e2e_support.py.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from e2e_support import CobaltServer, batch_request  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else (10_000 if os.environ.get("BENCH_QUICK") else 100_000)
    binary = Path(os.environ.get("COBALT_BIN", REPO / "target" / "release" / "cobalt"))
    with tempfile.TemporaryDirectory(prefix="cobalt-batch-bench-") as tmp:
        server = CobaltServer(binary, Path(tmp) / "data")
        server.start()
        url = server.batch_url
        try:
            return run(url, server.pid, n)
        finally:
            server.terminate()


def post(url: str, path: str, body: dict) -> dict:
    r = batch_request(url, "POST", path, body=json.dumps(body).encode())
    if r.status not in (200, 201):
        raise RuntimeError(f"POST {path}: {r.status} {r.body[:300]!r}")
    return json.loads(r.body) if r.body else {}


def run(url: str, pid: int, n: int) -> int:
    post(url, "/jobs", {"id": "bench", "poolInfo": {"poolId": "nowhere"}})
    chunks = [[{"id": f"task-{i:07d}", "commandLine": "/bin/true"} for i in range(s, min(s + 100, n))]
              for s in range(0, n, 100)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        for result in pool.map(lambda c: post(url, "/jobs/bench/addtaskcollection", {"value": c}), chunks):
            assert all(t["status"] == "success" for t in result["value"])
    add_s = time.perf_counter() - t0

    # 1 % of the tasks complete (terminated), so a filtered list has something to find.
    done = [f"task-{i:07d}" for i in range(0, n, 100)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda t: batch_request(url, "POST", f"/jobs/bench/tasks/{t}/terminate"), done))

    def list_all(query: list) -> tuple[int, list[float], int]:
        pages, count, link = [], 0, None
        while True:
            t = time.perf_counter()
            r = batch_request(url, "GET", link) if link else batch_request(url, "GET", "/jobs/bench/tasks", query=query)
            body = json.loads(r.body)
            pages.append(time.perf_counter() - t)
            count += len(body["value"])
            link = body.get("odata.nextLink")
            if not link:
                return count, pages, len(pages)

    rss_before = rss_mib(pid)
    peak = [rss_before]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(rss_mib(pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    t0 = time.perf_counter()
    count, pages, npages = list_all([("maxresults", "1000")])
    list_s = time.perf_counter() - t0
    stop.set()
    sampler.join()
    assert count == n, (count, n)
    tenth = max(1, npages // 10)
    first, last = statistics.mean(pages[:tenth]), statistics.mean(pages[-tenth:])

    t0 = time.perf_counter()
    fcount, _, fpages = list_all([("$filter", "state eq 'completed'"), ("maxresults", "1000")])
    filt_s = time.perf_counter() - t0
    assert fcount == len(done), (fcount, len(done))

    rows = [
        ("tasks", f"{n:,}"),
        ("add (100 per request, 4 threads)", f"{add_s:.1f} s = {n / add_s:,.0f} tasks/s"),
        ("list all, 1,000 per page", f"{list_s:.2f} s for {npages} pages = {n / list_s:,.0f} tasks/s"),
        ("page latency, first tenth (baseline)", f"{first * 1000:.1f} ms"),
        ("page latency, last tenth", f"{last * 1000:.1f} ms = {last / first:.2f}x baseline"),
        ("server RSS before listing (baseline)", f"{rss_before:.0f} MiB"),
        ("server RSS peak while listing", f"{max(peak):.0f} MiB = {max(peak) / rss_before:.2f}x baseline"),
        ("filtered list (1 % match)", f"{filt_s:.2f} s, {fcount:,} tasks in {fpages} page(s)"),
    ]
    print("| measure | result |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
