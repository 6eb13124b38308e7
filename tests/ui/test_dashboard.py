"""The dashboard (`/ui/` on the Batch port) in headless Chromium, against the release binary.

A real server with a pool of 2 local nodes runs a job; the tests check that the pages show
the pools, the node heat map (a click opens a node with its start task output), the job's task
counts and timeline, the keyset-paged task list, a task's stdout growing live while it runs,
and the storage page's containers and blobs (download link, delete). Screenshots of the main
pages go to the pytest tmp dir, and to docs/screenshots/ with COBALT_UPDATE_SCREENSHOTS=1.

The heat map with 5,000 nodes is checked as a *rendering check*: 5,000 node agents cannot run
on a small test machine, so the page's drawing function is given 5,000 node records.

Environment: COBALT_BIN (default <repo>/target/release/cobalt), CHROMIUM (default
/usr/bin/chromium), CHROMEDRIVER (default /usr/bin/chromedriver).
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import importlib.util
import json
import os
import shutil
import sys
import time
from email.utils import formatdate
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "docs" / "screenshots"

# The end-to-end helpers (server process, Batch SharedKey), imported by path, read-only.
_spec = importlib.util.spec_from_file_location("e2e_support", REPO / "tests" / "e2e" / "e2e_support.py")
e2e = importlib.util.module_from_spec(_spec)
sys.modules["e2e_support"] = e2e
_spec.loader.exec_module(e2e)

POOL = "uipool"
JOB = "uijob"
BULK = 120
LIVE_CMD = "/bin/sh -c 'for i in 1 2 3 4 5; do echo tick$i; sleep 0.5; done'"
WAIT = 30


# -- REST helpers -------------------------------------------------------------------------

def batch(server, method, path, body=None, query=()):
    data = json.dumps(body).encode() if body is not None else None
    r = e2e.batch_request(server.batch_url, method, path, query=query, body=data,
                          api_version="2024-07-01.20.0")
    assert r.status < 300, r
    return r.json() if r.body else None


def wait_for(probe, what, timeout=WAIT, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = probe()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def blob_put(server, path, body: bytes = b"", query="", headers=None):
    """A SharedKey-signed Blob request (PUT) on the dev storage account."""
    u = urlsplit(server.url)
    account = e2e.ACCOUNT
    raw_path = f"/{account}{path}"
    h = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06", **(headers or {})}
    length = str(len(body)) if body else ""
    ctype = h.get("Content-Type", "")
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted((k.lower(), v) for k, v in h.items()
                                                            if k.lower().startswith("x-ms-")))
    canon_res = f"/{account}{raw_path}"
    for pair in sorted(p for p in query.split("&") if p):
        k, v = pair.split("=", 1)
        canon_res += f"\n{k.lower()}:{v}"
    sts = "\n".join(["PUT", "", "", length, "", ctype, "", "", "", "", "", ""]) + "\n" + canon_headers + canon_res
    sig = base64.b64encode(hmac.new(base64.b64decode(e2e.KEY), sts.encode(), hashlib.sha256).digest()).decode()
    h["Authorization"] = f"SharedKey {account}:{sig}"
    h["Content-Length"] = str(len(body))
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    try:
        conn.request("PUT", raw_path + (f"?{query}" if query else ""), body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        assert r.status in (201, 200), (r.status, data)
    finally:
        conn.close()


# -- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    out = tmp_path_factory.mktemp("screenshots")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(driver, name):
        driver.save_screenshot(str(out / f"{name}.png"))
        # The committed copies change only when asked: a test run leaves the tree clean.
        if os.environ.get("COBALT_UPDATE_SCREENSHOTS") == "1":
            shutil.copy(out / f"{name}.png", SCREENSHOTS / f"{name}.png")
    save.dir = out
    return save


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    binary = Path(os.environ.get("COBALT_BIN", REPO / "target" / "release" / "cobalt"))
    root = tmp_path_factory.mktemp("cobalt-ui")
    s = e2e.CobaltServer(binary, root / "data", log_dir=root)
    s.start()
    try:
        batch(s, "POST", "/pools", {
            "id": POOL, "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 2, "taskSlotsPerNode": 2,
            "virtualMachineConfiguration": {
                "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                                   "sku": "22_04-lts"},
                "nodeAgentSKUId": "batch.node.ubuntu 22.04"},
            "startTask": {"commandLine": "/bin/sh -c 'echo started-on-node'", "waitForSuccess": True},
        })
        batch(s, "POST", "/jobs", {"id": JOB, "poolInfo": {"poolId": POOL}})

        def idle():
            nodes = batch(s, "GET", f"/pools/{POOL}/nodes")["value"]
            return len(nodes) == 2 and all(n["state"] == "idle" for n in nodes)
        wait_for(idle, "2 idle nodes", timeout=60)
        yield s
    finally:
        s.terminate()


def chrome(*extra):
    opts = webdriver.ChromeOptions()
    opts.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1400,1000", "--force-device-scale-factor=1", *extra):
        opts.add_argument(a)
    service = Service(executable_path=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    d = webdriver.Chrome(options=opts, service=service)
    d.set_page_load_timeout(30)
    return d


@pytest.fixture(scope="module")
def driver():
    d = chrome()
    try:
        yield d
    finally:
        d.quit()


def open_page(driver, server, fragment):
    url = f"{server.batch_url}/ui/#/{fragment}"
    if driver.current_url.split("#")[0] == f"{server.batch_url}/ui/":
        driver.execute_script("location.hash = arguments[0]", f"#/{fragment}")
    else:
        driver.get(url)


def wait(driver, timeout=WAIT):
    # Live pages re-render as things change: an element found a moment ago may be gone.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,))


def text_of(driver, css):
    """The text of the first match, or "" when there is none (or it was just re-rendered)."""
    try:
        els = driver.find_elements(By.CSS_SELECTOR, css)
        return els[0].text if els else ""
    except StaleElementReferenceException:
        return ""


# -- tests (in order: they share the server and the browser) --------------------------------

def test_task_stdout_updates_live_while_the_task_runs(server, driver, shots):
    # The page is open before the task exists: the change stream brings it in.
    open_page(driver, server, f"jobs/{JOB}/tasks/live")
    wait(driver).until(EC.presence_of_element_located((By.ID, "stdout")))
    batch(server, "POST", f"/jobs/{JOB}/tasks", {"id": "live", "commandLine": LIVE_CMD})
    wait(driver).until(lambda d: "tick1" in text_of(d, "#stdout"))
    state = batch(server, "GET", f"/jobs/{JOB}/tasks/live")["state"]
    assert state != "completed", "tick1 should show while the task still runs"
    assert "tick5" not in text_of(driver, "#stdout")
    shots(driver, "task-live")
    wait(driver).until(lambda d: "tick5" in text_of(d, "#stdout"))
    assert text_of(driver, "#stdout").split() == [f"tick{i}" for i in range(1, 6)]
    wait(driver).until(lambda d: "completed" in text_of(d, "#task-state-chip"))
    assert "/bin/sh -c" in text_of(driver, "#command-line")
    shots(driver, "task")


def test_pools_page_lists_the_pool(server, driver, shots):
    open_page(driver, server, "pools")
    wait(driver).until(lambda d: POOL in text_of(d, "main table"))
    row = f"//tr[td/a[text()='{POOL}']]"
    wait(driver).until(lambda d: "steady" in d.find_element(By.XPATH, row).text
                       and "2 / 2" in d.find_element(By.XPATH, row).text)
    shots(driver, "pools")


def test_heat_map_shows_the_nodes_and_a_click_opens_one(server, driver, shots):
    open_page(driver, server, f"pools/{POOL}")
    canvas = wait(driver).until(EC.presence_of_element_located((By.ID, "heatmap")))
    wait(driver).until(lambda d: canvas.get_attribute("data-cells") == "2")
    assert "idle 2" in text_of(driver, "#legend") or "running" in text_of(driver, "#legend")
    shots(driver, "pool-heatmap")
    cell = int(canvas.get_attribute("data-cell"))
    size = canvas.size
    # Selenium offsets are from the element's centre: aim at the middle of the first cell.
    ActionChains(driver).move_to_element_with_offset(
        canvas, -size["width"] // 2 + cell // 2, -size["height"] // 2 + cell // 2).click().perform()
    wait(driver).until(lambda d: "/nodes/" in d.current_url)
    wait(driver).until(EC.presence_of_element_located((By.ID, "node-detail")))
    assert "idle" in text_of(driver, "#node-detail")
    wait(driver).until(lambda d: "completed" in text_of(d, "#start-task"))
    wait(driver).until(lambda d: "started-on-node" in text_of(d, "#starttask-stdout"))
    shots(driver, "node")


def test_job_page_shows_task_counts_and_the_list_pages(server, driver, shots):
    tasks = [{"id": f"bulk-{i:03}", "commandLine": "/bin/true"} for i in range(BULK)]
    for i in range(0, BULK, 100):
        batch(server, "POST", f"/jobs/{JOB}/addtaskcollection", {"value": tasks[i:i + 100]})
    total = BULK + 1
    open_page(driver, server, f"jobs/{JOB}")

    def count(state):
        return text_of(driver, f"#task-counts [data-state={state}] b")
    wait(driver, 90).until(lambda d: count("completed") == str(total))
    assert count("succeeded") == str(total)
    assert count("failed") == "0" and count("active") == "0"
    timeline = driver.find_element(By.ID, "timeline")
    assert timeline.size["height"] >= 2 * 18
    # Keyset pages of 100: page 1 is full, page 2 has the rest.
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#task-rows tbody tr")) == 100)
    shots(driver, "job")
    driver.find_element(By.ID, "task-next").click()
    wait(driver).until(lambda d: "Page 2" in text_of(d, "#task-page"))
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#task-rows tbody tr")) == total - 100)
    assert driver.find_element(By.ID, "task-next").get_attribute("disabled") is not None
    # An id prefix filter starts again at page 1.
    box = driver.find_element(By.ID, "task-prefix")
    box.send_keys("bulk-00")
    wait(driver).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#task-rows tbody tr")) == 10)
    assert "Page 1" in text_of(driver, "#task-page")
    # A click on a task opens its page.
    wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, "bulk-005").click() or True)
    wait(driver).until(lambda d: "tasks/bulk-005" in d.current_url)
    wait(driver).until(lambda d: "completed" in text_of(d, "#task-state-chip"))


def test_a_job_of_100000_tasks_stays_responsive(server, driver, shots):
    """100,000 queued tasks (a pool without nodes keeps them active): the job page shows its
    counts and the first page of 100 at once, pages on, and filters by id prefix, without the
    page ever loading the whole list."""
    from concurrent.futures import ThreadPoolExecutor
    batch(server, "POST", "/pools", {
        "id": "idlepool", "vmSize": "standard_d2s_v3", "targetDedicatedNodes": 0,
        "virtualMachineConfiguration": {
            "imageReference": {"publisher": "canonical", "offer": "0001-com-ubuntu-server-jammy",
                               "sku": "22_04-lts"},
            "nodeAgentSKUId": "batch.node.ubuntu 22.04"}})
    batch(server, "POST", "/jobs", {"id": "bigjob", "poolInfo": {"poolId": "idlepool"}})
    n = 100_000
    chunks = [[{"id": f"t{i:06d}", "commandLine": "/bin/true"} for i in range(s, s + 100)]
              for s in range(0, n, 100)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda c: batch(server, "POST", "/jobs/bigjob/addtaskcollection", {"value": c}),
                      chunks))
    started = time.monotonic()
    open_page(driver, server, "jobs/bigjob")
    wait(driver, 30).until(
        lambda d: text_of(d, "#task-counts [data-state=active] b") == str(n)
        and len(d.find_elements(By.CSS_SELECTOR, "#task-rows tbody tr")) == 100)
    shown = time.monotonic() - started
    # The page's main thread is free: a 10 ms timer fires on time.
    lag = driver.execute_async_script(
        "const done = arguments[0]; const t = performance.now();"
        "setTimeout(() => done(performance.now() - t - 10), 10);")
    started = time.monotonic()
    driver.find_element(By.ID, "task-next").click()
    wait(driver, 30).until(lambda d: "Page 2" in text_of(d, "#task-page")
                           and "t000100" in text_of(d, "#task-rows"))
    paged = time.monotonic() - started
    box = driver.find_element(By.ID, "task-prefix")
    box.send_keys("t09999")
    wait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#task-rows tbody tr")) == 10)
    print(f"\n100,000 tasks: first page shown in {shown * 1000:.0f} ms, next page in "
          f"{paged * 1000:.0f} ms, timer lag {lag:.1f} ms")
    assert shown < 10 and paged < 5 and lag < 200, (shown, paged, lag)


def test_storage_page_lists_a_container_and_its_blob(server, driver, shots):
    blob_put(server, "/ui-container", query="restype=container")
    blob_put(server, "/ui-container/reports/hello.txt", b"hello, cobalt\n",
             headers={"x-ms-blob-type": "BlockBlob", "Content-Type": "text/plain"})
    open_page(driver, server, "storage")
    wait(driver).until(lambda d: "ui-container" in text_of(d, "main"))
    shots(driver, "storage")
    # The list refreshes every few seconds: a link found a moment ago may be gone.
    wait(driver).until(lambda d: d.find_element(By.LINK_TEXT, "ui-container").click() or True)
    wait(driver).until(lambda d: "reports/hello.txt" in text_of(d, "main table"))
    row = "//tr[td[text()='reports/hello.txt']]"
    wait(driver).until(lambda d: "14 B" in d.find_element(By.XPATH, row).text)
    link = wait(driver).until(lambda d: d.find_element(By.XPATH, row).find_element(
        By.LINK_TEXT, "Download").get_attribute("href"))
    assert "/ui/api/storage/containers/ui-container/blobs/reports/hello.txt" in link
    body = driver.execute_async_script(
        "const done = arguments[1]; fetch(arguments[0]).then(r => r.text()).then(done)", link)
    assert body == "hello, cobalt\n"
    shots(driver, "container")
    # The page refreshes its list every few seconds: find the row again before clicking.
    wait(driver).until(lambda d: d.find_element(
        By.XPATH, "//tr[td[text()='reports/hello.txt']]//button[text()='Delete']").click() or True)
    wait(driver).until(EC.alert_is_present()).accept()
    wait(driver).until(lambda d: "No blobs." in text_of(d, "main"))


def test_heat_map_rendering_check_with_5000_nodes(server, driver, shots):
    """Rendering check, not a live pool: the heat map's drawing function, as the pool page
    uses it, given 5,000 node records (5,000 real agents cannot run here). It must draw in
    well under 100 ms, and hit-testing must find the last node."""
    open_page(driver, server, f"pools/{POOL}")
    wait(driver).until(EC.presence_of_element_located((By.ID, "heatmap")))
    result = driver.execute_async_script("""
        const done = arguments[0];
        import('/ui/assets/heatmap.js').then((m) => {
          const canvas = document.getElementById('heatmap');
          const states = ['idle', 'running', 'running', 'running', 'starting', 'starttaskfailed', 'offline'];
          const nodes = Array.from({length: 5000}, (_, i) => ({
            id: 'tvm-' + i, state: states[i % states.length], slots: i % 5 === 1 ? 2 : (i % 3),
          }));
          const times = [];
          let L = null;
          for (let r = 0; r < 7; r++) { L = m.drawHeatmap(canvas, nodes, 2); times.push(L.ms); }
          times.sort((a, b) => a - b);
          const step = L.cell + L.gap;
          const last = m.hitTest(L, ((4999 % L.cols) * step) + 1, (Math.floor(4999 / L.cols) * step) + 1);
          const px = canvas.getContext('2d').getImageData(1, 1, 1, 1).data;
          done({median: times[3], max: times[6], first: times[0], cells: L.count, cols: L.cols,
                cell: L.cell, last, pixel: Array.from(px), dom: document.querySelectorAll('*').length});
        }).catch((e) => done({error: String(e)}));
    """)
    assert "error" not in result, result
    print(f"\nheat map, 5,000 nodes: median {result['median']:.2f} ms, max {result['max']:.2f} ms "
          f"({result['cols']} columns of {result['cell']} px cells)")
    assert result["cells"] == 5000
    assert result["median"] < 100, result
    assert result["max"] < 250, result
    assert result["last"] == 4999
    assert result["pixel"][3] == 255, "the first cell is painted"
    assert result["dom"] < 1000, "cells are not DOM nodes"
    shots(driver, "heatmap-5000-rendering-check")


def test_another_host_must_log_in_with_the_account_key(server, shots):
    """A browser that reaches the server under another host name is not local: it gets the
    login form, a wrong key is refused, the account key opens a session (HttpOnly cookie)."""
    d = chrome("--host-resolver-rules=MAP batch.test 127.0.0.1")
    try:
        port = urlsplit(server.batch_url).port
        d.get(f"http://batch.test:{port}/ui/#/pools")
        form = wait(d).until(EC.presence_of_element_located((By.ID, "login")))
        form.find_element(By.NAME, "account").send_keys(e2e.BATCH_ACCOUNT)
        form.find_element(By.NAME, "key").send_keys("AAAA" + e2e.BATCH_KEY[4:])
        shots(d, "login")
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait(d).until(lambda x: "not valid" in text_of(x, "#login .error"))
        key = d.find_element(By.NAME, "key")
        key.clear()
        key.send_keys(e2e.BATCH_KEY)
        d.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
        wait(d).until(lambda x: POOL in text_of(x, "main table"))
        assert d.execute_script("return document.cookie") == "", "the session cookie is HttpOnly"
        assert d.find_element(By.ID, "logout").is_displayed()
        d.execute_script("location.hash = '#/storage'")
        wait(d).until(lambda x: "no storage account" in text_of(x, "main"))
        d.find_element(By.ID, "logout").click()
        wait(d).until(EC.presence_of_element_located((By.ID, "login")))
    finally:
        d.quit()
