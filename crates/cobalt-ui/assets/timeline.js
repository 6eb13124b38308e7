// The job timeline: one lane per node, one bar per task run from its start to its end (or
// now, while it runs), coloured by result. Drawn on a <canvas>; returns the bars for hit tests.

const LANE = 18;
const LABEL = 150;
const COLORS = { success: '#2ea043', failure: '#da3633', running: '#1f6feb' };

export function drawTimeline(canvas, items, now = Date.now()) {
  const nodes = [...new Set(items.map((t) => t.nodeId || '?'))].sort();
  const lane = new Map(nodes.map((n, i) => [n, i]));
  const width = Math.max(300, Math.floor(canvas.clientWidth || 800));
  const height = Math.max(1, nodes.length) * LANE + 20;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(width * dpr);
  canvas.height = Math.round(height * dpr);
  canvas.style.height = height + 'px';
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, width, height);
  ctx.font = '11px system-ui, sans-serif';
  if (!items.length) {
    ctx.fillStyle = '#8b949e';
    ctx.fillText('No task has started yet.', 4, 14);
    return [];
  }
  const t0 = Math.min(...items.map((t) => t.start));
  const t1 = Math.max(t0 + 1000, ...items.map((t) => t.end || now));
  const scale = (width - LABEL - 8) / (t1 - t0);
  nodes.forEach((n, i) => {
    ctx.fillStyle = i % 2 ? '#f6f8fa' : '#ffffff';
    ctx.fillRect(0, i * LANE, width, LANE);
    ctx.fillStyle = '#24292f';
    ctx.fillText(n.length > 22 ? n.slice(0, 21) + '…' : n, 4, i * LANE + 13);
  });
  const bars = [];
  for (const t of items) {
    const x = LABEL + (t.start - t0) * scale;
    const w = Math.max(2, ((t.end || now) - t.start) * scale);
    const y = lane.get(t.nodeId || '?') * LANE + 3;
    ctx.fillStyle = t.end ? COLORS[t.result] || '#8b949e' : COLORS.running;
    ctx.fillRect(x, y, w, LANE - 6);
    bars.push({ x, y, w, h: LANE - 6, task: t });
  }
  ctx.fillStyle = '#57606a';
  const axisY = nodes.length * LANE + 14;
  ctx.fillText(new Date(t0).toLocaleTimeString(), LABEL, axisY);
  const end = new Date(t1).toLocaleTimeString();
  ctx.fillText(end, width - ctx.measureText(end).width - 4, axisY);
  return bars;
}

export function barAt(bars, x, y) {
  for (let i = bars.length - 1; i >= 0; i--) {
    const b = bars[i];
    if (x >= b.x && x <= b.x + b.w && y >= b.y && y <= b.y + b.h) return b.task;
  }
  return null;
}
