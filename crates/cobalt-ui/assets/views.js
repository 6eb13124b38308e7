// The pages. Each view is {mount(el), refresh(), dispose(), minGap}: mount builds it, refresh
// fetches again what it shows (called after a change event), dispose stops its timers.

import { h, api, enc, fileRange, fmtTime, fmtDuration, fmtBytes, chip, errorBox, accountQuery, state } from './app.js';
import { drawHeatmap, hitTest, colorOf } from './heatmap.js';
import { drawTimeline, barAt } from './timeline.js';

const props = (pairs) => h('dl', { class: 'props' }, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
  .flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
const crumbs = (...links) => h('div', { class: 'crumbs' }, links.flatMap((l, i) => (i ? [' / ', l] : [l])));
const link = (href, text) => h('a', { href }, text);
const table = (head, rows, numeric = []) => h('table', {},
  h('thead', {}, h('tr', {}, head.map((c, i) => h('th', { class: numeric.includes(i) ? 'num' : null }, c)))),
  h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c, i) => h('td', { class: numeric.includes(i) ? 'num' : null }, c))))));

// A view whose content is rebuilt from fetched data on every refresh.
function simpleView(load, render, minGap, top = null) {
  let root;
  const view = {
    minGap,
    mount(el) { root = h('div'); if (top) el.append(top); el.append(root); return view.refresh(); },
    async refresh() {
      try { root.replaceChildren(...[render(await load())].flat()); } catch (e) { root.replaceChildren(errorBox(e)); }
    },
  };
  return view;
}

// ---- live file tail -----------------------------------------------------------------

// A <pre> that follows a file: ranged reads from where it stopped, appended as they come.
// `finish()` reads one last time and stops (the task ended).
function tail(path, id) {
  const pre = h('pre', { class: 'log', id }, '');
  const decoder = new TextDecoder();
  let offset = 0;
  let busy = false;
  let timer = null;
  let finishing = false;
  async function poll() {
    if (busy) return;
    busy = true;
    try {
      for (;;) {
        const r = await fileRange(path, offset);
        if (!r) break;
        if (r.bytes.length) {
          const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.append(decoder.decode(r.bytes, { stream: true }));
          offset += r.bytes.length;
          if (atBottom) pre.scrollTop = pre.scrollHeight;
        }
        if (!r.bytes.length || offset >= r.size) break;
      }
      pre.dataset.offset = String(offset);
    } catch (e) {
      pre.dataset.error = e.message;
    } finally {
      busy = false;
    }
    if (finishing) stop();
  }
  function stop() { if (timer) clearInterval(timer); timer = null; }
  return {
    el: pre,
    start() { if (!timer && !finishing) { timer = setInterval(poll, 400); poll(); } },
    finish() { if (!finishing) { finishing = true; if (!timer) timer = setInterval(poll, 400); poll(); } },
    stop,
  };
}

function logs(base, done, idPrefix) {
  const out = tail(base + '/stdout.txt', idPrefix + 'stdout');
  const err = tail(base + '/stderr.txt', idPrefix + 'stderr');
  const el = h('div', { class: 'logs' }, h('div', {}, h('h3', {}, 'stdout.txt'), out.el), h('div', {}, h('h3', {}, 'stderr.txt'), err.el));
  return {
    el,
    update(isDone) { for (const t of [out, err]) (isDone ? t.finish() : t.start()); },
    stop() { out.stop(); err.stop(); },
    done,
  };
}

// ---- pools --------------------------------------------------------------------------

function nodeCountChips(counts) {
  return Object.entries(counts || {}).map(([s, n]) => h('span', { class: 'chip ' + s }, `${s} ${n}`));
}

export function poolsPage() {
  return simpleView(() => api('/pools'), (r) => [
    h('h1', {}, 'Pools'),
    r.items.length ? table(['Pool', 'State', 'Allocation', 'Dedicated (current / target)', 'Low priority', 'VM size', 'Slots/node', 'Nodes'],
      r.items.map((p) => [
        link('#/pools/' + enc(p.id), p.id), chip(p.state), chip(p.allocationState),
        `${p.currentDedicatedNodes} / ${p.targetDedicatedNodes ?? 0}`,
        `${p.currentLowPriorityNodes} / ${p.targetLowPriorityNodes ?? 0}`,
        p.vmSize, String(p.taskSlotsPerNode ?? 1), h('span', {}, nodeCountChips(p.nodeCounts)),
      ]), [6]) : h('p', { class: 'muted' }, 'No pools yet.'),
  ], 500);
}

export function poolPage(poolId) {
  let root;
  let info;
  let canvas;
  let L = null;
  let nodes = [];
  let slots = 1;
  const resize = () => { if (canvas && nodes) L = drawHeatmap(canvas, nodes, slots); };
  const view = {
    minGap: 1000,
    async mount(el) {
      info = h('div');
      canvas = h('canvas', { id: 'heatmap', 'aria-label': 'Node heat map' });
      canvas.addEventListener('click', (ev) => {
        if (!L) return;
        const rect = canvas.getBoundingClientRect();
        const i = hitTest(L, ev.clientX - rect.left, ev.clientY - rect.top);
        if (i >= 0) location.hash = '#/pools/' + enc(poolId) + '/nodes/' + enc(nodes[i].id);
      });
      canvas.addEventListener('mousemove', (ev) => {
        if (!L) return;
        const rect = canvas.getBoundingClientRect();
        const i = hitTest(L, ev.clientX - rect.left, ev.clientY - rect.top);
        canvas.title = i >= 0 ? `${nodes[i].id}: ${nodes[i].state}, ${nodes[i].slots}/${slots} slots` +
          (nodes[i].startTask ? `, start task ${nodes[i].startTask}` : '') : '';
      });
      root = h('div', {}, crumbs(link('#/pools', 'Pools'), poolId), info,
        h('div', { class: 'card' }, h('h2', {}, 'Nodes'), h('div', { id: 'legend', class: 'legend' }), canvas,
          h('p', { class: 'muted', id: 'heatmap-status' }, '')));
      el.append(root);
      window.addEventListener('resize', resize);
      await view.refresh();
    },
    async refresh() {
      try {
        const [p, n] = await Promise.all([api('/pools/' + enc(poolId)), api('/pools/' + enc(poolId) + '/nodes')]);
        info.replaceChildren(h('h1', {}, 'Pool ', p.id), h('div', { class: 'card' }, props([
          ['State', chip(p.state)], ['Allocation state', chip(p.allocationState)],
          ['Dedicated nodes', `${p.currentDedicatedNodes} current / ${p.targetDedicatedNodes ?? 0} target`],
          ['Low-priority nodes', `${p.currentLowPriorityNodes} current / ${p.targetLowPriorityNodes ?? 0} target`],
          ['VM size', p.vmSize], ['Task slots per node', String(p.taskSlotsPerNode ?? 1)],
          ['Start task', p.startTask ? p.startTask.commandLine : ''],
          ['Created', fmtTime(p.creationTime)],
        ])));
        nodes = n.nodes;
        slots = n.taskSlotsPerNode || 1;
        const counts = {};
        for (const x of nodes) counts[x.state] = (counts[x.state] || 0) + 1;
        root.querySelector('#legend').replaceChildren(...Object.entries(counts).map(([s, c]) => {
          const i = h('i');
          i.style.background = colorOf(s);
          return h('span', {}, i, `${s} ${c}`);
        }));
        L = drawHeatmap(canvas, nodes, slots);
        root.querySelector('#heatmap-status').textContent = nodes.length
          ? `${nodes.length} nodes; the light bar shows task slots in use. Click a node for its details.`
          : 'No nodes yet.';
      } catch (e) {
        info.replaceChildren(errorBox(e));
      }
    },
    dispose() { window.removeEventListener('resize', resize); },
  };
  return view;
}

export function nodePage(poolId, nodeId) {
  let root;
  let body;
  let log;
  const view = {
    minGap: 500,
    async mount(el) {
      body = h('div');
      log = logs('/pools/' + enc(poolId) + '/nodes/' + enc(nodeId) + '/files/startup', false, 'starttask-');
      root = h('div', {}, crumbs(link('#/pools', 'Pools'), link('#/pools/' + enc(poolId), poolId), nodeId),
        h('h1', {}, 'Node ', nodeId), body, h('h2', {}, 'Start task output'), log.el);
      el.append(root);
      await view.refresh();
    },
    async refresh() {
      try {
        const n = await api('/pools/' + enc(poolId) + '/nodes/' + enc(nodeId));
        const st = n.startTaskInfo;
        body.replaceChildren(
          h('div', { class: 'card', id: 'node-detail' }, props([
            ['State', chip(n.state)], ['Scheduling', n.schedulingState], ['IP address', n.ipAddress],
            ['Running tasks', String(n.runningTasksCount)],
            ['Task slots in use', `${n.runningTaskSlotsCount} / ${n.taskSlotsPerNode}`],
            ['Tasks run', String(n.totalTasksRun)], ['Tasks succeeded', String(n.totalTasksSucceeded)],
            ['Allocated', fmtTime(n.allocationTime)], ['Last boot', fmtTime(n.lastBootTime)],
            ['Dedicated', n.isDedicated ? 'yes' : 'no'],
          ])),
          h('h2', {}, 'Start task'),
          h('div', { class: 'card', id: 'start-task' }, n.startTask ? props([
            ['Command line', h('code', {}, n.startTask.commandLine)],
            ['State', st ? chip(st.state) : 'not started'], ['Result', st && st.result ? chip(st.result) : ''],
            ['Exit code', st && st.exitCode !== undefined ? String(st.exitCode) : ''],
            ['Started', st ? fmtTime(st.startTime) : ''], ['Ended', st ? fmtTime(st.endTime) : ''],
            ['Retries', st ? String(st.retryCount) : ''],
            ['Failure', st && st.failureInfo ? `${st.failureInfo.code}: ${st.failureInfo.message || ''}` : ''],
          ]) : h('p', { class: 'muted' }, 'The pool has no start task.')),
          h('h2', {}, 'Recent tasks'),
          (n.recentTasks || []).length ? table(['Task', 'Job', 'State', 'Exit code'], n.recentTasks.map((t) => [
            link('#/jobs/' + enc(t.jobId) + '/tasks/' + enc(t.taskId), t.taskId), t.jobId, chip(t.taskState),
            t.executionInfo && t.executionInfo.exitCode !== undefined ? String(t.executionInfo.exitCode) : '',
          ])) : h('p', { class: 'muted' }, 'None.'),
        );
        if (n.startTask) log.update(!st || st.state === 'completed');
      } catch (e) {
        body.replaceChildren(errorBox(e));
      }
    },
    dispose() { if (log) log.stop(); },
  };
  return view;
}

// ---- jobs and tasks -----------------------------------------------------------------

const countKeys = ['active', 'running', 'completed', 'succeeded', 'failed'];

export function jobsPage() {
  const cursors = [null];
  let index = 0;
  let next = null;
  let root;
  const view = {
    minGap: 500,
    mount(el) { root = h('div'); el.append(root); return view.refresh(); },
    async refresh() {
      try {
        const r = await api('/jobs', { after: cursors[index] || '', limit: 100 });
        next = r.next;
        const pager = h('div', { class: 'pager' },
          h('button', { disabled: index === 0, onclick: () => { index--; view.refresh(); } }, 'Previous'),
          h('span', {}, `Page ${index + 1}`),
          h('button', { disabled: !next, onclick: () => { cursors[index + 1] = next; index++; view.refresh(); } }, 'Next'));
        root.replaceChildren(h('h1', {}, 'Jobs'), r.items.length ? table(
          ['Job', 'State', 'Pool', ...countKeys, 'Created'],
          r.items.map((j) => [link('#/jobs/' + enc(j.id), j.id), chip(j.state), j.poolInfo && j.poolInfo.poolId ? link('#/pools/' + enc(j.poolInfo.poolId), j.poolInfo.poolId) : '',
            ...countKeys.map((k) => String(j.taskCounts[k])), fmtTime(j.creationTime)]), [3, 4, 5, 6, 7]) : h('p', { class: 'muted' }, 'No jobs yet.'), pager);
      } catch (e) {
        root.replaceChildren(errorBox(e));
      }
    },
  };
  return view;
}

// The job's task list: filter by state and id prefix, keyset pages of 100 (the server never
// reads more than a page, so 100,000 tasks cost what 100 do).
function taskList(jobId) {
  const cursors = [null];
  let index = 0;
  let next = null;
  const stateSel = h('select', { id: 'task-state' }, ['', 'active', 'preparing', 'running', 'completed'].map((s) => h('option', { value: s }, s || 'any state')));
  const prefix = h('input', { id: 'task-prefix', placeholder: 'id prefix', size: 16 });
  const rows = h('div', { id: 'task-rows' });
  const label = h('span', { id: 'task-page' }, '');
  const prev = h('button', { id: 'task-prev', disabled: true }, 'Previous');
  const nextBtn = h('button', { id: 'task-next', disabled: true }, 'Next');
  const list = {
    el: null,
    async load() {
      try {
        const r = await api('/jobs/' + enc(jobId) + '/tasks', { state: stateSel.value, prefix: prefix.value.trim(), after: cursors[index] || '', limit: 100 });
        next = r.next;
        prev.disabled = index === 0;
        nextBtn.disabled = !next;
        label.textContent = `Page ${index + 1} · ${r.items.length} tasks`;
        const now = Date.now();
        rows.replaceChildren(r.items.length ? table(['Task', 'State', 'Exit code', 'Node', 'Started', 'Duration', 'Retries'],
          r.items.map((t) => [link('#/jobs/' + enc(jobId) + '/tasks/' + enc(t.id), t.id), chip(t.state),
            t.exitCode !== undefined ? String(t.exitCode) : '', t.nodeId || '', fmtTime(t.start),
            t.start ? fmtDuration((t.end || now) - t.start) : '', String(t.retryCount)]), [2, 6])
          : h('p', { class: 'muted' }, 'No tasks match.'));
      } catch (e) {
        rows.replaceChildren(errorBox(e));
      }
    },
  };
  const restart = () => { cursors.length = 1; index = 0; list.load(); };
  stateSel.addEventListener('change', restart);
  let debounce = null;
  prefix.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(restart, 250); });
  prev.addEventListener('click', () => { if (index > 0) { index--; list.load(); } });
  nextBtn.addEventListener('click', () => { if (next) { cursors[index + 1] = next; index++; list.load(); } });
  list.el = h('div', { class: 'card' }, h('h2', {}, 'Tasks'), h('div', { class: 'toolbar' }, stateSel, prefix), rows,
    h('div', { class: 'pager' }, prev, label, nextBtn));
  return list;
}

export function jobPage(jobId) {
  let info;
  let canvas;
  let bars = [];
  let items = [];
  let tasks;
  const redraw = () => { bars = drawTimeline(canvas, items); };
  const view = {
    minGap: 1000,
    async mount(el) {
      info = h('div');
      canvas = h('canvas', { id: 'timeline', 'aria-label': 'Task timeline by node' });
      canvas.addEventListener('click', (ev) => {
        const rect = canvas.getBoundingClientRect();
        const t = barAt(bars, ev.clientX - rect.left, ev.clientY - rect.top);
        if (t) location.hash = '#/jobs/' + enc(jobId) + '/tasks/' + enc(t.id);
      });
      canvas.addEventListener('mousemove', (ev) => {
        const rect = canvas.getBoundingClientRect();
        const t = barAt(bars, ev.clientX - rect.left, ev.clientY - rect.top);
        canvas.title = t ? `${t.id} on ${t.nodeId}: ${t.state}${t.end ? ', ' + fmtDuration(t.end - t.start) : ''}` : '';
      });
      tasks = taskList(jobId);
      el.append(h('div', {}, crumbs(link('#/jobs', 'Jobs'), jobId), info,
        h('div', { class: 'card' }, h('h2', {}, 'Timeline by node'), canvas, h('p', { class: 'muted', id: 'timeline-note' }, '')),
        tasks.el));
      window.addEventListener('resize', redraw);
      await view.refresh();
    },
    async refresh() {
      try {
        const [j, tl] = await Promise.all([api('/jobs/' + enc(jobId)), api('/jobs/' + enc(jobId) + '/timeline')]);
        const c = j.taskCounts;
        info.replaceChildren(h('h1', {}, 'Job ', j.id),
          h('div', { class: 'counts', id: 'task-counts' }, countKeys.map((k) => h('div', { class: 'count', dataset: { state: k } }, h('b', {}, String(c[k])), h('span', {}, k)))),
          h('div', { class: 'card' }, props([
            ['State', chip(j.state)], ['Pool', j.poolInfo && j.poolInfo.poolId ? link('#/pools/' + enc(j.poolInfo.poolId), j.poolInfo.poolId) : ''],
            ['Priority', String(j.priority ?? 0)], ['When all tasks complete', j.onAllTasksComplete || 'noaction'],
            ['Created', fmtTime(j.creationTime)], ['Started', fmtTime(j.executionInfo && j.executionInfo.startTime)],
            ['Ended', fmtTime(j.executionInfo && j.executionInfo.endTime)],
            ['Task slots in use', String(j.taskSlotCounts.running)],
          ])));
        items = tl.items;
        redraw();
        canvas.parentElement.querySelector('#timeline-note').textContent = tl.truncated ? 'Showing the first runs only.' : '';
        await tasks.load();
      } catch (e) {
        info.replaceChildren(errorBox(e));
      }
    },
    dispose() { window.removeEventListener('resize', redraw); },
  };
  return view;
}

export function taskPage(jobId, taskId) {
  let body;
  let log;
  let files;
  const base = '/jobs/' + enc(jobId) + '/tasks/' + enc(taskId);
  const view = {
    minGap: 300,
    async mount(el) {
      body = h('div');
      log = logs(base + '/files', false, '');
      files = h('div', { id: 'task-files' }, h('button', { onclick: () => listFiles() }, 'List files'));
      el.append(h('div', {}, crumbs(link('#/jobs', 'Jobs'), link('#/jobs/' + enc(jobId), jobId), taskId),
        h('h1', {}, 'Task ', taskId), body, h('h2', {}, 'Output'), log.el, h('h2', {}, 'Files'), files));
      await view.refresh();
    },
    async refresh() {
      try {
        const t = await api(base);
        const x = t.executionInfo || {};
        const n = t.nodeInfo || {};
        const f = x.failureInfo;
        const start = x.startTime ? Date.parse(String(x.startTime).replace(/(\.\d{3})\d+/, '$1')) : null;
        const end = x.endTime ? Date.parse(String(x.endTime).replace(/(\.\d{3})\d+/, '$1')) : null;
        body.replaceChildren(
          h('div', { class: 'card', id: 'task-detail' }, props([
            ['State', h('span', { id: 'task-state-chip' }, chip(t.state))], ['Result', x.result ? chip(x.result) : ''],
            ['Command line', h('code', { id: 'command-line' }, t.commandLine)],
            ['Exit code', x.exitCode !== undefined ? String(x.exitCode) : ''],
            ['Node', n.nodeId ? link('#/pools/' + enc(n.poolId) + '/nodes/' + enc(n.nodeId), `${n.poolId} / ${n.nodeId}`) : ''],
            ['Created', fmtTime(t.creationTime)], ['Started', fmtTime(x.startTime)], ['Ended', fmtTime(x.endTime)],
            ['Duration', start ? fmtDuration((end || Date.now()) - start) : ''],
            ['Retries', String(x.retryCount ?? 0)], ['Requeues', String(x.requeueCount ?? 0)],
            ['Required slots', String(t.requiredSlots ?? 1)],
            ['Max wall clock', t.constraints && limited(t.constraints.maxWallClockTime)],
          ])),
          f ? h('div', { class: 'card error', id: 'failure-info' }, h('b', {}, `${f.category || ''} ${f.code || ''}`), ' ', f.message || '',
            (f.details || []).map((d) => h('div', {}, `${d.name}: ${d.value}`))) : '',
          (t.resourceFiles || []).length ? [h('h2', {}, 'Resource files'), table(['Source', 'File path', 'Mode'], t.resourceFiles.map((r) => [
            r.httpUrl || r.storageContainerUrl || r.autoStorageContainerName || '', r.filePath || (r.blobPrefix ? `${r.blobPrefix}*` : ''), r.fileMode || '']))] : '',
          (t.outputFiles || []).length ? [h('h2', {}, 'Output files'), table(['Pattern', 'Destination', 'Upload when'], t.outputFiles.map((o) => [
            o.filePattern, ((o.destination || {}).container || {}).containerUrl ? `${redact(o.destination.container.containerUrl)}${o.destination.container.path ? ' → ' + o.destination.container.path : ''}` : '',
            ((o.uploadOptions || {}).uploadCondition) || '']))] : '',
        );
        if (n.nodeId) log.update(t.state === 'completed');
      } catch (e) {
        body.replaceChildren(errorBox(e));
      }
    },
    dispose() { if (log) log.stop(); },
  };
  async function listFiles() {
    try {
      const r = await api(base + '/files');
      files.replaceChildren(table(['Name', 'Size', 'Modified'], r.items.filter((e) => !e.isDirectory).map((e) => [e.name, fmtBytes(e.size), fmtTime(e.modified)]), [1]));
    } catch (e) {
      files.replaceChildren(errorBox(e));
    }
  }
  return view;
}

// A duration, or nothing for Azure's "unlimited" (TimeSpan.MaxValue).
function limited(d) {
  return d && !String(d).startsWith('P10675199D') ? d : '';
}

// A container URL without its SAS token.
function redact(url) {
  return String(url).replace(/\?.*$/, '?…');
}

// ---- storage ------------------------------------------------------------------------

function polled(view, ms) {
  let timer = null;
  const mount = view.mount;
  view.mount = (el) => { timer = setInterval(() => view.refresh(), ms); return mount(el); };
  view.dispose = () => clearInterval(timer);
  return view;
}

function storageSwitcher() {
  const s = state.session;
  if (!s.storageAccounts || s.storageAccounts.length < 2) return '';
  const sel = h('select', { id: 'storage-account' }, s.storageAccounts.map((a) => h('option', { value: a, selected: a === state.storage }, a)));
  sel.addEventListener('change', () => { state.storage = sel.value; window.dispatchEvent(new HashChangeEvent('hashchange')); });
  return h('label', {}, 'Storage account ', sel);
}

async function remove(path, what) {
  if (!window.confirm(`Delete ${what}?`)) return false;
  const r = await fetch('/ui/api' + path + accountQuery(), { method: 'DELETE', credentials: 'same-origin' });
  if (!r.ok) {
    let message = r.statusText;
    try { message = (await r.json()).error.message; } catch (_) { /* not JSON */ }
    window.alert(message);
    return false;
  }
  return true;
}

export function storagePage() {
  const view = simpleView(() => api('/storage/containers'), (r) => [
    h('h1', {}, 'Storage ', h('span', { class: 'muted' }, r.account)), storageSwitcher(),
    r.items.length ? table(['Container', 'Last modified', ''], r.items.map((c) => [
      link('#/storage/' + enc(c.name), c.name), fmtTime(c.lastModified),
      h('button', { class: 'danger', onclick: async () => { if (await remove('/storage/containers/' + enc(c.name), `container ${c.name} and all its blobs`)) view.refresh(); } }, 'Delete'),
    ])) : h('p', { class: 'muted' }, 'No containers.'),
    r.next ? h('p', { class: 'muted' }, 'More containers exist than shown.') : '',
  ], 1000);
  return polled(view, 3000);
}

export function containerPage(container) {
  let prefix = '';
  const input = h('input', { id: 'blob-prefix', placeholder: 'name prefix', size: 24 });
  const blobPath = (name) => '/storage/containers/' + enc(container) + '/blobs/' + name.split('/').map(enc).join('/');
  const top = h('div', {}, crumbs(link('#/storage', 'Storage'), container), h('h1', {}, 'Container ', container),
    h('div', { class: 'toolbar' }, input));
  const view = simpleView(() => api('/storage/containers/' + enc(container) + '/blobs', { prefix }), (r) => [
    r.items.length ? table(['Blob', 'Size', 'Last modified', 'Type', '', ''], r.items.map((b) => [
      b.name, fmtBytes(b.size), fmtTime(b.lastModified), b.contentType || b.blobType,
      h('a', { href: '/ui/api' + blobPath(b.name) + accountQuery(), download: b.name.split('/').pop() }, 'Download'),
      h('button', { class: 'danger', onclick: async () => { if (await remove(blobPath(b.name), `blob ${b.name}`)) view.refresh(); } }, 'Delete'),
    ]), [1]) : h('p', { class: 'muted' }, 'No blobs.'),
    r.next ? h('p', { class: 'muted' }, 'More blobs exist than shown; narrow the prefix.') : '',
  ], 1000, top);
  let debounce = null;
  input.addEventListener('input', () => { clearTimeout(debounce); debounce = setTimeout(() => { prefix = input.value; view.refresh(); }, 250); });
  return polled(view, 3000);
}
