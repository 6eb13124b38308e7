// The node heat map: one cell per node, coloured by state, with the share of task slots in
// use drawn as a light bar at the bottom of the cell. Drawn on a <canvas> in one pass per
// colour, so 5,000 nodes cost a few milliseconds and no DOM nodes; hit-testing is arithmetic.

export const NODE_COLORS = {
  idle: '#2ea043',
  running: '#1f6feb',
  creating: '#a371f7',
  starting: '#d29922',
  waitingforstarttask: '#d29922',
  rebooting: '#db61a2',
  reimaging: '#db61a2',
  starttaskfailed: '#da3633',
  unusable: '#da3633',
  leavingpool: '#8b949e',
  offline: '#6e7681',
  unknown: '#6e7681',
  preempted: '#8b949e',
  deallocating: '#8b949e',
  deallocated: '#8b949e',
  upgradingos: '#db61a2',
};
const OTHER = '#6e7681';

export function colorOf(state) {
  return NODE_COLORS[state] || OTHER;
}

// Cell size and grid for `count` cells in `width` pixels: big cells for small pools, down to
// 4 px so that even 10,000 nodes stay on one screen.
export function layout(count, width, maxHeight = 520) {
  const gap = count > 2000 ? 1 : 2;
  let cell = 28;
  const cols = (c) => Math.max(1, Math.floor((width + gap) / (c + gap)));
  while (cell > 4 && Math.ceil(count / cols(cell)) * (cell + gap) > maxHeight) cell--;
  const n = cols(cell);
  const rows = Math.ceil(count / n);
  return { count, cell, gap, cols: n, rows, width, height: Math.max(rows * (cell + gap) - gap, cell) };
}

// Draws `nodes` ({state, slots}) on `canvas`; returns the layout with the time it took (ms).
export function drawHeatmap(canvas, nodes, slotsPerNode = 1) {
  const t0 = performance.now();
  const width = Math.max(100, Math.floor(canvas.clientWidth || (canvas.parentElement && canvas.parentElement.clientWidth) || 800));
  const L = layout(nodes.length, width);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(L.height * dpr);
  canvas.style.height = L.height + 'px';
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, L.height);
  const step = L.cell + L.gap;
  const byColor = new Map();
  for (let i = 0; i < nodes.length; i++) {
    const c = colorOf(nodes[i].state);
    let list = byColor.get(c);
    if (!list) byColor.set(c, (list = []));
    list.push(i);
  }
  for (const [color, list] of byColor) {
    ctx.fillStyle = color;
    ctx.beginPath();
    for (const i of list) ctx.rect((i % L.cols) * step, Math.floor(i / L.cols) * step, L.cell, L.cell);
    ctx.fill();
  }
  // Task slots in use: a light bar from the bottom, as tall as the share of slots used.
  const max = Math.max(1, slotsPerNode);
  ctx.fillStyle = 'rgba(255,255,255,0.6)';
  ctx.beginPath();
  for (let i = 0; i < nodes.length; i++) {
    const used = nodes[i].slots || 0;
    if (used <= 0) continue;
    const h = Math.max(1, Math.round((L.cell * Math.min(used, max)) / max / 2));
    ctx.rect((i % L.cols) * step, Math.floor(i / L.cols) * step + L.cell - h, L.cell, h);
  }
  ctx.fill();
  L.ms = performance.now() - t0;
  canvas.dataset.drawMs = L.ms.toFixed(2);
  canvas.dataset.cells = String(nodes.length);
  canvas.dataset.cell = String(L.cell);
  canvas.dataset.gap = String(L.gap);
  canvas.dataset.cols = String(L.cols);
  return L;
}

// The index of the cell at (x, y) in CSS pixels, or -1.
export function hitTest(L, x, y) {
  const step = L.cell + L.gap;
  const col = Math.floor(x / step);
  const row = Math.floor(y / step);
  if (col < 0 || col >= L.cols || row < 0 || x - col * step > L.cell || y - row * step > L.cell) return -1;
  const i = row * L.cols + col;
  return i < L.count ? i : -1;
}
