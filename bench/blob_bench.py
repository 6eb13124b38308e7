#!/usr/bin/env python3
"""Side-by-side blob benchmark: Azurite vs Cobalt on the same machine, in one run.

Normally started through bench/blob-bench.sh, which installs Azurite and the SDK first.
Every knob is an environment variable (see bench/README.md):

  BENCH_SERVERS    comma list of servers, first = baseline, second = candidate
                   (default "azurite,cobalt"; "azurite,azurite" validates the harness
                   without Cobalt; "azurite" or "cobalt" alone runs one column)
  BENCH_QUICK=1    64 MiB big blob and 200 small blobs instead of 1 GiB / 2,000
  BENCH_RUNS       runs per row, the median is reported (default 3)
  BENCH_BIG_MIB, BENCH_SMALL_COUNT, BENCH_SMALL_KIB, BENCH_DD_MIB   sizes
  BENCH_ROWS       comma list of row groups to run: sdk,curl,small (default all)
  BENCH_TMPDIR     where data dirs, test files and the dd file go (default bench/.cache/tmp)
  BENCH_OUT        results file (default bench/results/blob-<date>[-quick].md; "-" = none)
  COBALT_BIN       Cobalt binary (default <repo>/target/release/cobalt)
  AZURITE_BLOB     azurite-blob executable (default bench/.cache/azurite-3.35.0/...)
  BENCH_AZURITE_ARGS / BENCH_COBALT_ARGS   extra server arguments (shell-split)
  BENCH_START_TIMEOUT   seconds to wait for a server to listen (default 60)
  BENCH_DD_NEAR=0  no dd before each run of an upload row (then upload rows are compared with
                   the dd runs at the start only)
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
MiB = 1024 * 1024
X_MS_VERSION = "2025-11-05"  # Azurite 3.35.0's own version; sent by curl requests
COBALT_LISTEN_RE = re.compile(r"blob service listening on (http://\S+)")

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent

TARGET_RATIO = 3.0
TARGET_DD_PCT = 70.0
TARGET_RSS_MIB = 64.0
BLOCK_PARTS = 4  # blocks sent at once by the parallel Put Block row
# After a dd next to an upload row: time for its file's discards and for the memory it freed to
# settle (this VM hands freed pages back to the host after ~2 s), so the dd does not help or
# hinder the run it is compared with.
DD_SETTLE_S = 3.0


# --------------------------------------------------------------------------- config

def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


@dataclass
class Config:
    quick: bool
    runs: int
    big: int
    small_count: int
    small_size: int
    dd_size: int
    servers: list[str]
    rows: set[str]
    tmp_root: Path
    out: Path | None
    cobalt_bin: str
    azurite_blob: str
    azurite_args: list[str]
    cobalt_args: list[str]
    start_timeout: float
    dd_near: bool

    @staticmethod
    def from_env() -> "Config":
        quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
        big = env_int("BENCH_BIG_MIB", 64 if quick else 1024) * MiB
        date = dt.datetime.now().strftime("%Y-%m-%d")
        out_env = os.environ.get("BENCH_OUT", "")
        if out_env == "-":
            out = None
        elif out_env:
            out = Path(out_env)
        else:
            out = BENCH_DIR / "results" / f"blob-{date}{'-quick' if quick else ''}.md"
        servers = [s.strip() for s in os.environ.get("BENCH_SERVERS", "azurite,cobalt").split(",") if s.strip()]
        for s in servers:
            if s not in ("azurite", "cobalt"):
                sys.exit(f"BENCH_SERVERS: unknown server {s!r} (use azurite and/or cobalt)")
        if not 1 <= len(servers) <= 2:
            sys.exit("BENCH_SERVERS: give one or two servers")
        rows = {r.strip() for r in os.environ.get("BENCH_ROWS", "sdk,curl,small").split(",") if r.strip()}
        bad = rows - {"sdk", "curl", "small"}
        if bad:
            sys.exit(f"BENCH_ROWS: unknown row group(s) {sorted(bad)} (use sdk,curl,small)")
        return Config(
            quick=quick,
            runs=max(1, env_int("BENCH_RUNS", 3)),
            big=big,
            small_count=env_int("BENCH_SMALL_COUNT", 200 if quick else 2000),
            small_size=env_int("BENCH_SMALL_KIB", 4) * 1024,
            dd_size=env_int("BENCH_DD_MIB", big // MiB) * MiB,
            servers=servers,
            rows=rows,
            tmp_root=Path(os.environ.get("BENCH_TMPDIR") or BENCH_DIR / ".cache" / "tmp"),
            out=out,
            cobalt_bin=os.environ.get("COBALT_BIN") or str(REPO / "target" / "release" / "cobalt"),
            azurite_blob=os.environ.get("AZURITE_BLOB")
            or str(BENCH_DIR / ".cache" / "azurite-3.35.0" / "node_modules" / ".bin" / "azurite-blob"),
            azurite_args=shlex.split(os.environ.get("BENCH_AZURITE_ARGS", "")),
            cobalt_args=shlex.split(os.environ.get("BENCH_COBALT_ARGS", "")),
            start_timeout=float(env_int("BENCH_START_TIMEOUT", 60)),
            dd_near=os.environ.get("BENCH_DD_NEAR", "1") not in ("", "0"),
        )


def human_size(n: int) -> str:
    if n >= 1024 * MiB and n % (1024 * MiB) == 0:
        return f"{n // (1024 * MiB)} GiB"
    if n >= MiB and n % MiB == 0:
        return f"{n // MiB} MiB"
    if n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


# --------------------------------------------------------------------------- /proc sampling

def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


def status_kib(pid: int, field_name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    return sum(status_kib(p, "VmRSS") for p in process_tree(pid))


CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
            total += int(rest[11]) + int(rest[12])  # utime, stime (fields 14, 15)
        except (OSError, IndexError, ValueError):
            pass
    return total / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine (all cores) since boot, from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / CLK_TCK  # user nice system irq softirq steal
    except (OSError, ValueError, IndexError):
        return 0.0


def own_cpu_seconds() -> float:
    """CPU of this process (all threads) plus its waited-for children (curl)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def loadavg() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


LOAD_AT_START = ""
NOISE_CORES = 0.3  # other processes' average CPU during a row above this: the row is flagged


class RssSampler(threading.Thread):
    """Samples the server's process-tree RSS every ~50 ms and keeps the max per phase.

    At each phase start the kernel's peak-RSS counter (VmHWM) of the main process is reset
    (write 5 to /proc/PID/clear_refs) and read at phase end, so short spikes between two
    samples are not missed; the reported peak is the max of both.
    """

    def __init__(self, pid: int, interval: float = 0.05):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.lock = threading.Lock()
        self.phase: str | None = None
        self.peaks: dict[str, int] = {}
        self.stopped = threading.Event()

    def _note(self, phase: str, kib: int) -> None:
        if kib > self.peaks.get(phase, 0):
            self.peaks[phase] = kib

    def begin(self, phase: str) -> None:
        try:
            with open(f"/proc/{self.pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        kib = tree_rss_kib(self.pid)
        with self.lock:
            self.phase = phase
            self._note(phase, kib)

    def end(self) -> None:
        kib = tree_rss_kib(self.pid)
        hwm = status_kib(self.pid, "VmHWM")
        with self.lock:
            if self.phase:
                self._note(self.phase, max(kib, hwm))
            self.phase = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            kib = tree_rss_kib(self.pid)
            with self.lock:
                if self.phase:
                    self._note(self.phase, kib)

    def peak_mib(self, phase: str) -> float | None:
        with self.lock:
            v = self.peaks.get(phase)
        return None if v is None else v / 1024


# --------------------------------------------------------------------------- servers

class ServerDied(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, n: int = 30) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:]) or "(empty log)"


class Server:
    def __init__(self, kind: str, label: str, cfg: Config, workdir: Path):
        self.kind = kind
        self.label = label
        self.cfg = cfg
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.log = workdir / "server.log"
        self.proc: subprocess.Popen | None = None
        self.endpoint = ""  # http://127.0.0.1:PORT/devstoreaccount1
        self.sampler: RssSampler | None = None
        self.version = ""

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == "azurite":
            port = free_port()
            cmd = [self.cfg.azurite_blob, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                   "--location", str(self.data_dir), "--silent", "--loose", "--skipApiVersionCheck",
                   "--disableTelemetry", *self.cfg.azurite_args]
            self.version = "Azurite " + azurite_version(self.cfg.azurite_blob)
        else:
            if not os.access(self.cfg.cobalt_bin, os.X_OK):
                raise RuntimeError(f"Cobalt binary not found or not executable: {self.cfg.cobalt_bin} "
                                   "(build it with `cargo build --release` or set COBALT_BIN)")
            port = None
            cmd = [self.cfg.cobalt_bin, "serve", "--data-dir", str(self.data_dir), "--blob-port", "0", "--batch-port", "0",
                   "--host", "127.0.0.1", *self.cfg.cobalt_args]
            self.version = cobalt_version(self.cfg.cobalt_bin)
        logf = open(self.log, "wb")
        # Own session: a terminal Ctrl-C reaches only the benchmark, which then stops the server itself.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        print(f"[{self.label}] started pid {self.proc.pid}: {shlex.join(cmd)}", flush=True)
        deadline = time.monotonic() + self.cfg.start_timeout
        base = f"http://127.0.0.1:{port}" if port else None
        while True:
            if self.proc.poll() is not None:
                raise ServerDied(f"[{self.label}] exited with code {self.proc.returncode} before listening; "
                                 f"log tail:\n{tail(self.log)}")
            if base is None:
                m = COBALT_LISTEN_RE.search(self.log.read_text(errors="replace"))
                if m:
                    base = m.group(1).rstrip("/")
            if base:
                hp = re.match(r"http://([^/:]+):(\d+)", base)
                if not hp:
                    raise RuntimeError(f"[{self.label}] cannot parse listen URL {base!r}")
                if port_open(hp.group(1), int(hp.group(2))):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"[{self.label}] not listening after {self.cfg.start_timeout:.0f} s; "
                                   f"log tail:\n{tail(self.log)}")
            time.sleep(0.1)
        self.endpoint = base if base.endswith("/" + ACCOUNT) else f"{base}/{ACCOUNT}"
        self.sampler = RssSampler(self.proc.pid)
        self.sampler.start()
        print(f"[{self.label}] listening: {self.endpoint}", flush=True)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise ServerDied(f"[{self.label}] server process {self.proc.pid} died with code "
                             f"{self.proc.returncode}; log tail:\n{tail(self.log)}")

    def stop(self) -> None:
        if self.sampler:
            self.sampler.stopped.set()
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        # The server was started in its own session, so its process group id is its pid.
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                return
            try:
                p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        print(f"[{self.label}] stopped pid {p.pid}", flush=True)


def azurite_version(bin_path: str) -> str:
    try:
        out = subprocess.run([bin_path, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.strip().splitlines()[-1]
    except Exception:
        return "?"


def cobalt_version(bin_path: str) -> str:
    try:
        r = subprocess.run([bin_path, "--version"], capture_output=True, text=True, timeout=10)
        v = (r.stdout or r.stderr).strip().splitlines()
        ver = v[0] if v and r.returncode == 0 else "cobalt"
    except Exception:
        ver = "cobalt"
    try:
        mtime = dt.datetime.fromtimestamp(os.stat(bin_path).st_mtime).strftime("%Y-%m-%d %H:%M")
        ver += f" (binary built {mtime})"
    except OSError:
        pass
    return ver


# --------------------------------------------------------------------------- rows

@dataclass
class Row:
    key: str
    group: str
    title: str
    unit: str  # "MiB/s", "ops/s", "blobs/s"
    amount: float  # MiB or op count per run, for throughput
    upload: bool = False  # compared with dd
    # Why the row is reported without a target (None: it has the issue's ≥3× target).
    no_target: str | None = None


@dataclass
class Result:
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)  # CPU s of processes other than server and clients
    dd: list[float] = field(default_factory=list)  # dd MiB/s right before each run (upload rows)
    error: str | None = None

    def other_cores(self) -> float | None:
        """Average load of other processes over all runs of the row, in cores."""
        return sum(self.other) / sum(self.times) if self.times else None

    def noisy(self) -> bool:
        # /proc CPU counters tick every 10 ms: ignore less than 10 ticks of other load in total
        return bool(self.times) and sum(self.other) >= 0.1 and self.other_cores() > NOISE_CORES

    def median(self) -> float | None:
        return statistics.median(self.times) if self.times and not self.error else None


def make_rows(cfg: Config) -> list[Row]:
    b, n, s = human_size(cfg.big), f"{cfg.small_count:,}", human_size(cfg.small_size)
    mb = cfg.big / MiB
    rows = [
        Row("sdk_up_1", "sdk", f"SDK upload {b}, max_concurrency=1", "MiB/s", mb, True),
        Row("sdk_up_4", "sdk", f"SDK upload {b}, max_concurrency=4", "MiB/s", mb, True),
        Row("sdk_down_1", "sdk", f"SDK download {b}, max_concurrency=1", "MiB/s", mb),
        Row("sdk_down_4", "sdk", f"SDK download {b}, max_concurrency=4", "MiB/s", mb),
        Row("curl_put", "curl", f"curl Put Blob {b} (1 request, SAS)", "MiB/s", mb, True),
        Row("curl_get", "curl", f"curl Get Blob {b} (1 request, SAS)", "MiB/s", mb),
        Row("curl_blocks", "curl", f"curl Put Block × {BLOCK_PARTS} in parallel + Put Block List {b} (SAS)",
            "MiB/s", mb, True),
        Row("small_put", "small", f"curl {n} × {s} PUT (1 process, keep-alive)", "ops/s", cfg.small_count),
        Row("small_get", "small", f"curl {n} × {s} GET (1 process, keep-alive)", "ops/s", cfg.small_count),
        Row("list_curl", "small", f"curl List Blobs of {n} (1 request)", "blobs/s", cfg.small_count),
        Row("list_sdk", "small", f"SDK list_blobs of {n}", "blobs/s", cfg.small_count,
            no_target="the SDK's own parsing of the listing takes most of the time (see the server CPU "
                      "of its runs); the issue's list row is the low-overhead client's"),
    ]
    return [r for r in rows if r.group in cfg.rows]


class Bench:
    def __init__(self, cfg: Config, server: Server, files: dict[str, Path], rows: list[Row]):
        from azure.storage.blob import BlobServiceClient

        self.cfg, self.server, self.files, self.rows = cfg, server, files, rows
        self.results: dict[str, Result] = {r.key: Result() for r in rows}
        self.rss_idle: float | None = None
        # max_single_put_size=4 MiB: the SDK then always uses Put Block + Put Block List, as it does
        # for 1 GiB; without it a quick-mode 64 MiB upload would be one Put Blob (threshold is <= 64 MiB).
        # retry_total=0: a failing request is reported, not hidden behind retries.
        self.svc = BlobServiceClient(account_url=server.endpoint,
                                     credential={"account_name": ACCOUNT, "account_key": KEY},
                                     max_single_put_size=4 * MiB, retry_total=0)

    # -- helpers
    def sas(self, container: str) -> str:
        from azure.storage.blob import ContainerSasPermissions, generate_container_sas

        perm = ContainerSasPermissions(read=True, write=True, delete=True, list=True, create=True)
        return generate_container_sas(ACCOUNT, container, account_key=KEY, permission=perm,
                                      expiry=dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=3))

    def create_container(self, name: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.svc.create_container(name)
        except ResourceExistsError:
            pass

    def timed(self, row_key: str, fn) -> None:
        """One timed run of a row: sync the disk first (untimed), then time fn() and the server's CPU."""
        res = self.results.get(row_key)
        if res is None or res.error:
            return
        self.server.check_alive()
        row = next(r for r in self.rows if r.key == row_key)
        if row.upload and self.cfg.dd_near:
            # The disk's speed drifts over minutes here: compare each upload with a dd taken now.
            try:
                res.dd.append(dd_once(self.cfg, self.server.workdir.parent))
                print(f"[{self.server.label}] {row_key:<11} dd before run {len(res.times) + 1}: "
                      f"{res.dd[-1]:,.0f} MiB/s", flush=True)
            except RuntimeError as e:
                print(f"[{self.server.label}] {row_key}: {e}; compared with the first dd runs", flush=True)
            os.sync()
            time.sleep(DD_SETTLE_S)
        os.sync()
        pid = self.server.proc.pid
        sampler = self.server.sampler
        sampler.begin(row_key)
        cpu0 = tree_cpu_seconds(pid)
        own0, sys0 = own_cpu_seconds(), system_busy_seconds()
        t0 = time.perf_counter()
        try:
            fn()
        except ServerDied:
            raise
        except Exception as e:  # a failing row is reported in the table; the other rows go on
            res.error = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            print(f"[{self.server.label}] {row_key} FAILED: {res.error}", flush=True)
            self.server.check_alive()
            return
        finally:
            sampler.end()
        elapsed = time.perf_counter() - t0
        server_cpu = tree_cpu_seconds(pid) - cpu0
        other = system_busy_seconds() - sys0 - server_cpu - (own_cpu_seconds() - own0)
        res.times.append(elapsed)
        res.cpu.append(server_cpu)
        res.other.append(max(0.0, other))
        print(f"[{self.server.label}] {row_key:<11} run {len(res.times)}: {elapsed:8.3f} s "
              f"{row.amount / elapsed:10.1f} {row.unit}  (server CPU {server_cpu:.2f} s, "
              f"other processes {res.other[-1]:.2f} CPU s)", flush=True)

    def curl(self, args: list[str], timeout: float) -> str:
        r = subprocess.run(["curl", "-sS", "--connect-timeout", "10", *args],
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"curl exit {r.returncode}: {r.stderr.strip()[:300]}")
        return r.stdout

    # -- phases
    def run(self) -> None:
        c = self.cfg
        self.create_container("bench")
        # idle RSS: one second after start-up and a container create
        self.server.sampler.begin("idle")
        time.sleep(1.0)
        self.server.sampler.end()
        self.rss_idle = self.server.sampler.peak_mib("idle")

        if "sdk" in c.rows or "curl" in c.rows:
            self.big_rows()
        if "small" in c.rows:
            self.small_rows()

    def big_rows(self) -> None:
        c = self.cfg
        bc = self.svc.get_blob_client("bench", "big.bin")
        big = self.files["big"]
        sas = self.sas("bench")
        url = f"{self.server.endpoint}/bench/big.bin?{sas}"
        curl_timeout = max(600.0, c.big / MiB)  # 1 s per MiB at worst

        def sdk_up(conc: int):
            def f():
                with open(big, "rb") as fh:
                    bc.upload_blob(fh, length=c.big, overwrite=True, max_concurrency=conc)
            return f

        def sdk_down(conc: int):
            def f():
                with open(os.devnull, "wb") as sink:  # seekable null sink: nothing kept in memory
                    n = bc.download_blob(max_concurrency=conc).readinto(sink)
                if n != c.big:
                    raise RuntimeError(f"downloaded {n} bytes, expected {c.big}")
            return f

        def curl_put():
            out = self.curl(["-X", "PUT", "-T", str(big), "-H", "x-ms-blob-type: BlockBlob",
                             "-H", f"x-ms-version: {X_MS_VERSION}", "-H", "Expect:",
                             "-o", str(self.server.workdir / "curl-body.txt"),
                             "-w", "%{http_code} %{size_upload}", "--max-time", str(curl_timeout), url],
                            timeout=curl_timeout + 30)
            code, size = out.split()
            if code != "201" or int(size) != c.big:
                raise RuntimeError(f"HTTP {code}, uploaded {size} B: "
                                   f"{tail(self.server.workdir / 'curl-body.txt', 5)}")

        def curl_get():
            out = self.curl(["-H", f"x-ms-version: {X_MS_VERSION}", "-o", os.devnull,
                             "-w", "%{http_code} %{size_download}", "--max-time", str(curl_timeout), url],
                            timeout=curl_timeout + 30)
            code, size = out.split()
            if code != "200" or int(size) != c.big:
                raise RuntimeError(f"HTTP {code}, downloaded {size} B (expected 200, {c.big})")

        def curl_blocks():
            # How a bulk uploader (AzCopy, say) sends a big file: blocks in parallel, then one
            # Put Block List. One curl process, BLOCK_PARTS transfers at once.
            ids = [base64.b64encode(f"part-{i:04d}".encode()).decode() for i in range(BLOCK_PARTS)]
            args = ["-Z", "--parallel-max", str(BLOCK_PARTS), "-H", f"x-ms-version: {X_MS_VERSION}",
                    "-H", "Expect:", "-w", "%{http_code} %{size_upload}\n", "--max-time", str(curl_timeout)]
            for i, part in enumerate(self.files["parts"]):
                block_url = f"{url}&comp=block&blockid={urllib.parse.quote(ids[i], safe='')}"
                args += ["-T", str(part), "-o", str(self.server.workdir / f"curl-block-{i}.txt"), block_url]
            results = self.curl(args, timeout=curl_timeout + 30).split("\n")
            codes = sorted(line for line in results if line.strip())
            sizes = sum(int(line.split()[1]) for line in codes)
            if any(line.split()[0] != "201" for line in codes) or sizes != c.big:
                raise RuntimeError(f"Put Block: {codes}, uploaded {sizes} B")
            body = "<?xml version='1.0' encoding='utf-8'?><BlockList>" + "".join(
                f"<Latest>{i}</Latest>" for i in ids) + "</BlockList>"
            out = self.curl(["-X", "PUT", "--data-binary", body, "-H", f"x-ms-version: {X_MS_VERSION}",
                             "-H", "Content-Type: application/xml",
                             "-o", str(self.server.workdir / "curl-body.txt"),
                             "-w", "%{http_code}", f"{url}&comp=blocklist"], timeout=60)
            if out != "201":
                raise RuntimeError(f"Put Block List: HTTP {out}: {tail(self.server.workdir / 'curl-body.txt', 5)}")

        plan = []
        if "sdk" in c.rows:
            plan += [("sdk_up_1", sdk_up(1)), ("sdk_up_4", sdk_up(4)),
                     ("sdk_down_1", sdk_down(1)), ("sdk_down_4", sdk_down(4))]
        if "curl" in c.rows:
            plan += [("curl_put", curl_put), ("curl_get", curl_get), ("curl_blocks", curl_blocks)]
        for key, fn in plan:
            for _ in range(c.runs):
                self.timed(key, fn)
        try:
            bc.delete_blob()
        except Exception:
            pass

    def small_rows(self) -> None:
        c = self.cfg
        small = self.files["small"]
        wd = self.server.workdir
        t_small = max(300.0, c.small_count * 0.5)
        for i in range(c.runs):
            cont = f"small{i}"
            self.create_container(cont)
            sas = self.sas(cont)
            base = f"{self.server.endpoint}/{cont}"
            names = [f"b{j:06d}" for j in range(c.small_count)]
            put_cfg, get_cfg = wd / "put.curlrc", wd / "get.curlrc"
            with open(put_cfg, "w") as f:
                for j, name in enumerate(names):
                    if j:
                        f.write("next\n")
                    f.write(f'url = "{base}/{name}?{sas}"\nupload-file = "{small}"\n'
                            f'header = "x-ms-blob-type: BlockBlob"\nheader = "x-ms-version: {X_MS_VERSION}"\n'
                            'header = "Expect:"\noutput = "/dev/null"\nmax-time = "60"\n'
                            'write-out = "%{http_code} %{size_upload}\\n"\n')
            with open(get_cfg, "w") as f:
                for j, name in enumerate(names):
                    if j:
                        f.write("next\n")
                    f.write(f'url = "{base}/{name}?{sas}"\nheader = "x-ms-version: {X_MS_VERSION}"\n'
                            'output = "/dev/null"\nmax-time = "60"\n'
                            'write-out = "%{http_code} %{size_download}\\n"\n')

            def check(out: str, code_ok: str):
                lines = out.split("\n")[:-1]
                bad = [ln for ln in lines if ln.split() != [code_ok, str(c.small_size)]]
                if len(lines) != c.small_count or bad:
                    raise RuntimeError(f"{len(lines)} responses, {len(bad)} not '{code_ok} {c.small_size}' "
                                       f"(first: {bad[:3]})")

            def put():
                check(self.curl(["-K", str(put_cfg)], timeout=t_small), "201")

            def get():
                check(self.curl(["-K", str(get_cfg)], timeout=t_small), "200")

            listing = wd / "list.xml"

            def list_curl():
                out = self.curl(["-H", f"x-ms-version: {X_MS_VERSION}", "-o", str(listing),
                                 "-w", "%{http_code}", "--max-time", "120",
                                 f"{base}?restype=container&comp=list&maxresults=5000&{sas}"], timeout=150)
                body = listing.read_text(errors="replace")
                n = body.count("<Blob>")
                if out.strip() != "200" or n != c.small_count:
                    raise RuntimeError(f"HTTP {out.strip()}, {n} <Blob> entries (expected {c.small_count}): "
                                       f"{body[:200]}")

            cc = self.svc.get_container_client(cont)

            def list_sdk():
                n = sum(1 for _ in cc.list_blobs())
                if n != c.small_count:
                    raise RuntimeError(f"list_blobs returned {n}, expected {c.small_count}")

            self.timed("small_put", put)
            self.timed("small_get", get)
            self.timed("list_curl", list_curl)
            self.timed("list_sdk", list_sdk)


# --------------------------------------------------------------------------- dd, files, report

def dd_once(cfg: Config, base: Path) -> float:
    """One `dd conv=fdatasync` of the dd size into a new file under base, in MiB/s."""
    target = base / "dd.bin"
    count = cfg.dd_size // MiB
    os.sync()
    try:
        t0 = time.perf_counter()
        r = subprocess.run(["dd", "if=/dev/zero", f"of={target}", "bs=1M", f"count={count}",
                            "conv=fdatasync"], capture_output=True, text=True, timeout=900)
        elapsed = time.perf_counter() - t0
    finally:
        target.unlink(missing_ok=True)
    if r.returncode != 0:
        raise RuntimeError(f"dd failed: {r.stderr.strip()[:200]}")
    return count / elapsed


def dd_baseline(cfg: Config, base: Path) -> tuple[list[float], str | None]:
    speeds = []
    for i in range(cfg.runs):
        try:
            speeds.append(dd_once(cfg, base))
        except RuntimeError as e:
            return speeds, str(e)
        print(f"[dd] run {i + 1}: {speeds[-1]:.1f} MiB/s", flush=True)
    return speeds, None


def make_files(cfg: Config, base: Path) -> dict[str, Path]:
    chunk = os.urandom(8 * MiB)  # incompressible, repeated

    def write(path: Path, start: int, end: int) -> Path:
        """Bytes start..end of the big file: the chunk over and over."""
        with open(path, "wb") as f:
            at = start
            while at < end:
                offset = at % len(chunk)
                n = min(end - at, len(chunk) - offset)
                f.write(chunk[offset:offset + n])
                at += n
        return path

    big = write(base / "big.bin", 0, cfg.big)
    # The big file in BLOCK_PARTS pieces, for the parallel Put Block row (same bytes, same blob).
    edges = [cfg.big * i // BLOCK_PARTS for i in range(BLOCK_PARTS + 1)]
    parts = [write(base / f"big.part{i}", edges[i], edges[i + 1]) for i in range(BLOCK_PARTS)]
    small = base / "small.bin"
    small.write_bytes(os.urandom(cfg.small_size))
    os.sync()
    return {"big": big, "parts": parts, "small": small}


def fmt_time(t: float) -> str:
    return f"{t * 1000:.0f} ms" if t < 1 else f"{t:.2f} s"


def fmt_cell(row: Row, res: Result | None) -> str:
    if res is None:
        return "—"
    if res.error:
        return "**error**"
    m = res.median()
    if m is None:
        return "—"
    return f"{fmt_time(m)} · {row.amount / m:,.0f} {row.unit}{' ⚠' if res.noisy() else ''}"


def fmt_rss(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f} MiB"


def machine_info(cfg: Config) -> list[str]:
    def sh(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:
            return "?"

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = sh(["free", "-g"]).splitlines()
    mem_total = mem[1].split()[1] + " GiB" if len(mem) > 1 else "?"
    try:
        import azure.storage.blob as asb
        sdk = asb.__version__
    except Exception:
        sdk = "?"
    commit = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "(no commit)"
    dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "crates"])
    fs = sh(["df", "-hT", str(cfg.tmp_root)]).splitlines()
    return [
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {mem_total} RAM, Linux {platform.release()}",
        f"- disk under test: `{fs[-1] if fs else '?'}` (data dirs, test files and dd all in `{cfg.tmp_root}`)",
        f"- clients: azure-storage-blob {sdk} on Python {platform.python_version()}, "
        f"{' '.join(sh(['curl', '--version']).split()[:2])}",
        f"- load average (1/5/15 min): {LOAD_AT_START} at start, {loadavg()} at end",
        f"- repo commit: {commit}{' + uncommitted changes in crates/' if dirty else ''}",
    ]


def report(cfg: Config, servers: list[Server], benches: list[Bench | None], rows: list[Row],
           dd: list[float], dd_err: str | None, errors: list[str], started: dt.datetime) -> str:
    a_lbl = servers[0].label
    b_lbl = servers[1].label if len(servers) > 1 else None
    A = benches[0]
    B = benches[1] if len(benches) > 1 else None
    dd_med = statistics.median(dd) if dd else None
    L: list[str] = []
    mode = "quick mode" if cfg.quick else "full mode"
    L.append(f"# Blob benchmark: {' vs '.join(s.label for s in servers)} ({mode}, {started:%Y-%m-%d %H:%M})")
    L.append("")
    L.append(f"Median of {cfg.runs} run(s) per row; client and servers on one host; servers run one after "
             f"the other, each on a fresh data dir. Big blob {human_size(cfg.big)}, "
             f"{cfg.small_count:,} small blobs of {human_size(cfg.small_size)}. "
             "Cell = median time · throughput. Peak RSS = server process tree, max over the row's runs.")
    L.append("")
    for s in servers:
        L.append(f"- {s.label}: {s.version or '?'}")
    L.extend(machine_info(cfg))
    L.append("")

    def rss(bench: Bench | None, key: str) -> float | None:
        return bench.server.sampler.peak_mib(key) if bench and bench.server.sampler else None

    def res(bench: Bench | None, key: str) -> Result | None:
        return bench.results.get(key) if bench else None

    ratios_ok, ratios_all, rss_max_b = [], [], None
    if b_lbl:
        L.append(f"| row | {a_lbl} | {b_lbl} | speed ratio {b_lbl}/{a_lbl} (target ≥{TARGET_RATIO:g}×) "
                 f"| peak RSS {a_lbl} | peak RSS {b_lbl} (target <{TARGET_RSS_MIB:g} MiB) |")
        L.append("|---|---:|---:|---:|---:|---:|")
    else:
        L.append(f"| row | {a_lbl} | peak RSS {a_lbl} |")
        L.append("|---|---:|---:|")
    idle_b = B.rss_idle if B else None
    if b_lbl:
        L.append(f"| idle after start | — | — | — | {fmt_rss(A.rss_idle if A else None)} | {fmt_rss(idle_b)} |")
    else:
        L.append(f"| idle after start | — | {fmt_rss(A.rss_idle if A else None)} |")
    rss_vals_b = [idle_b] if idle_b is not None else []
    for r in rows:
        ra, rb = res(A, r.key), res(B, r.key)
        if not b_lbl:
            L.append(f"| {r.title} | {fmt_cell(r, ra)} | {fmt_rss(rss(A, r.key))} |")
            continue
        ma, mb = (ra.median() if ra else None), (rb.median() if rb else None)
        if ma and mb and r.no_target:
            ratio_s = f"{ma / mb:.2f}× (no target¹)"
        elif ma and mb:
            ratio = ma / mb
            ok = ratio >= TARGET_RATIO
            ratios_all.append((r.title, ratio))
            if ok:
                ratios_ok.append(r.title)
            ratio_s = f"{ratio:.2f}× {'✅' if ok else '❌'}"
        else:
            ratio_s = "—"
        pb = rss(B, r.key)
        if pb is not None:
            rss_vals_b.append(pb)
        pb_s = fmt_rss(pb) + ("" if pb is None else (" ✅" if pb < TARGET_RSS_MIB else " ❌"))
        L.append(f"| {r.title} | {fmt_cell(r, ra)} | {fmt_cell(r, rb)} | {ratio_s} | {fmt_rss(rss(A, r.key))} | {pb_s} |")
    rss_max_b = max(rss_vals_b) if rss_vals_b else None
    L.append("")
    for r in rows:
        if r.no_target and b_lbl:
            L.append(f"¹ {r.title}: reported, not a target: {r.no_target}.")
            L.append("")
    noisy = [(b.server.label, r.title) for b in benches if b for r in rows
             if b.results.get(r.key) and b.results[r.key].noisy()]
    if noisy:
        L.append(f"⚠ = other processes (not the server, not the benchmark's clients) used more than "
                 f"{NOISE_CORES:g} core on average during that row's runs: the machine was busy, so "
                 f"that number is pessimistic ({len(noisy)} cell(s)); re-run on a quiet machine.")
        L.append("")

    def dd_for(bench: Bench | None, key: str) -> float | None:
        """The dd an upload row is compared with: the runs right before its own, else the first ones."""
        rr = res(bench, key)
        return statistics.median(rr.dd) if rr and rr.dd else dd_med

    def pct_of_dd(bench: Bench | None, r: Row) -> float | None:
        """An upload row's median throughput as a % of its dd."""
        rr = res(bench, r.key)
        m = rr.median() if rr else None
        base = dd_for(bench, r.key)
        return 100 * (r.amount / m) / base if m and base else None

    # dd baseline
    dd_cmd = f"`dd if=/dev/zero bs=1M count={cfg.dd_size // MiB} conv=fdatasync`"
    if dd_med:
        L.append(f"**dd baseline** ({dd_cmd} on the same disk): **{dd_med:,.0f} MiB/s** median at the start "
                 f"(runs: {', '.join(f'{v:,.0f}' for v in dd)} MiB/s).")
    else:
        L.append(f"**dd baseline**: not measured at the start ({dd_err or 'no runs'}).")
    if cfg.dd_near:
        L.append(f"The disk's speed drifts over minutes, so each run of an upload row also has a dd right before "
                 f"it ({DD_SETTLE_S:g} s of rest between them), and % of dd compares the row's median with the "
                 f"median of its own dd runs.")
    L.append("")
    up_rows = [r for r in rows if r.upload]
    if up_rows and any(dd_for(bench, r.key) for bench in (A, B) for r in up_rows):
        lbls = [a_lbl] + ([b_lbl] if b_lbl else [])
        L.append("| upload row | " + " | ".join(
            f"{lbl} % of dd" + (f" (target ≥{TARGET_DD_PCT:g}%)" if lbl == b_lbl else "") for lbl in lbls)
            + " | " + " | ".join(f"dd next to {lbl}'s runs (MiB/s)" for lbl in lbls) + " |")
        L.append("|---|" + "---:|" * (2 * len(lbls)))
        for r in up_rows:
            cells, dds = [], []
            for bench in ([A, B] if b_lbl else [A]):
                rr = res(bench, r.key)
                pct = pct_of_dd(bench, r)
                if pct is not None:
                    mark = (" ✅" if pct >= TARGET_DD_PCT else " ❌") if bench is B else ""
                    cells.append(f"{pct:.0f}%{mark}")
                else:
                    cells.append("—")
                dds.append(", ".join(f"{v:,.0f}" for v in rr.dd) if rr and rr.dd else "—")
            L.append(f"| {r.title} | " + " | ".join(cells) + " | " + " | ".join(dds) + " |")
        L.append("")

    # targets
    if b_lbl:
        L.append(f"**Targets for {b_lbl}** (candidate) vs {a_lbl} (baseline):")
        n_rows = len([r for r in rows if not r.no_target])
        failing = [t for t, v in ratios_all if v < TARGET_RATIO]
        L.append(f"- ≥{TARGET_RATIO:g}× {a_lbl} on every target row: {len(ratios_ok)}/{n_rows} rows met"
                 + (f"; below target: {'; '.join(failing)}" if failing else "")
                 + (f"; not measured: {n_rows - len(ratios_all)}" if len(ratios_all) < n_rows else ""))
        if up_rows:
            pcts = [(r.title, p) for r in up_rows if (p := pct_of_dd(B, r)) is not None]
            if pcts:
                best = max(pcts, key=lambda x: x[1])
                L.append(f"- {human_size(cfg.big)} upload ≥{TARGET_DD_PCT:g}% of dd: best {best[1]:.0f}% ({best[0]}) "
                         f"{'✅' if best[1] >= TARGET_DD_PCT else '❌'}; "
                         + "; ".join(f"{t}: {p:.0f}%" for t, p in pcts))
        if rss_max_b is not None:
            L.append(f"- {b_lbl} peak RSS <{TARGET_RSS_MIB:g} MiB in every phase: max {rss_max_b:.0f} MiB "
                     f"{'✅' if rss_max_b < TARGET_RSS_MIB else '❌'}")
        L.append("")

    # errors
    if errors:
        L.append("**Errors:**")
        L.append("")
        for e in errors:
            L.append("```")
            L.append(e.strip())
            L.append("```")
        L.append("")

    # raw runs
    L.append("<details><summary>All runs: seconds, server CPU seconds (median), other processes' load "
             "(average over the runs, cores)</summary>")
    L.append("")
    L.append("| row | server | runs (s) | server CPU s | other load (cores) | error |")
    L.append("|---|---|---|---:|---:|---|")
    for r in rows:
        for bench in benches:
            if bench is None:
                continue
            rr = bench.results.get(r.key)
            if rr is None:
                continue
            runs = ", ".join(f"{t:.3f}" for t in rr.times) or "—"
            cpu = f"{statistics.median(rr.cpu):.2f}" if rr.cpu else "—"
            other = f"{rr.other_cores():.2f}" if rr.times else "—"
            L.append(f"| {r.title} | {bench.server.label} | {runs} | {cpu} | {other} | {rr.error or ''} |")
    L.append("")
    L.append("</details>")
    L.append("")
    env_knobs = {k: v for k, v in sorted(os.environ.items()) if k.startswith("BENCH_") or k == "COBALT_BIN"}
    L.append("Reproduce: `" + " ".join(f"{k}={shlex.quote(v)}" for k, v in env_knobs.items())
             + (" " if env_knobs else "") + "bench/blob-bench.sh`")
    L.append("")
    return "\n".join(L)


# --------------------------------------------------------------------------- main

class Interrupted(BaseException):  # not an Exception: no per-row/per-server handler may swallow it
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signal.Signals(signum).name}")


def main() -> int:
    cfg = Config.from_env()
    # Explicit handlers, also for SIGINT: a shell starting us in the background may have set it to SIG_IGN.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    for tool in ("curl", "dd"):
        if not shutil.which(tool):
            sys.exit(f"missing tool: {tool}")
    if "azurite" in cfg.servers and not os.access(cfg.azurite_blob, os.X_OK):
        sys.exit(f"azurite-blob not found at {cfg.azurite_blob} (run bench/blob-bench.sh, which installs it)")
    try:
        import azure.storage.blob  # noqa: F401
    except ImportError:
        sys.exit("azure-storage-blob is not importable (run bench/blob-bench.sh, which sets up a venv)")

    started = dt.datetime.now()
    global LOAD_AT_START
    LOAD_AT_START = loadavg()
    cfg.tmp_root.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="blob-bench-", dir=cfg.tmp_root))
    labels, servers = [], []
    for kind in cfg.servers:
        label = kind if kind not in labels else f"{kind}#2"
        labels.append(label)
        servers.append(Server(kind, label, cfg, base / label.replace("#", "-")))
    rows = make_rows(cfg)
    benches: list[Bench | None] = []
    errors: list[str] = []
    dd: list[float] = []
    dd_err = None
    rc = 0
    print(f"blob-bench: {' vs '.join(labels)}, big={human_size(cfg.big)}, small={cfg.small_count}×"
          f"{human_size(cfg.small_size)}, runs={cfg.runs}, tmp={base}", flush=True)
    try:
        dd, dd_err = dd_baseline(cfg, base)
        if dd_err:
            errors.append(dd_err)
        files = make_files(cfg, base)
        for s in servers:
            bench = None
            try:
                s.workdir.mkdir(parents=True)
                s.start()
                bench = Bench(cfg, s, files, rows)
                bench.run()
            except (ServerDied, RuntimeError) as e:
                errors.append(str(e))
                print(f"ERROR: {e}", file=sys.stderr, flush=True)
            except Exception as e:
                errors.append(f"[{s.label}] {type(e).__name__}: {e}")
                traceback.print_exc()
            finally:
                s.stop()
                shutil.rmtree(s.workdir, ignore_errors=True)  # free the disk before the next server
            benches.append(bench)
        for b in benches:
            if b:
                for key, r in b.results.items():
                    if r.error:
                        errors.append(f"[{b.server.label}] {key}: {r.error}")
        text = report(cfg, servers, benches, rows, dd, dd_err, errors, started)
        print()
        print(text)
        if cfg.out:
            cfg.out.parent.mkdir(parents=True, exist_ok=True)
            cfg.out.write_text(text)
            print(f"written: {cfg.out}")
        rc = 1 if errors or any(b is None for b in benches) else 0
    except (KeyboardInterrupt, Interrupted) as e:
        print(f"\ninterrupted ({e or 'Ctrl-C'}); stopping servers and cleaning up", file=sys.stderr, flush=True)
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for s in servers:
            s.stop()
        shutil.rmtree(base, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
