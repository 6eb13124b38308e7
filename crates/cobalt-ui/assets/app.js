// The dashboard shell: session and login, the account switcher, the router (on the URL's
// fragment: #/pools, #/pools/{id}, #/pools/{id}/nodes/{node}, #/jobs, #/jobs/{id},
// #/jobs/{id}/tasks/{task}, #/storage, #/storage/{container}) and the live change stream.

import * as views from './views.js';

export const state = { session: null, account: null, storage: null };

// Builds an element: h('a', {href: '#/x', class: 'y', onclick: f}, 'text', child…). Text is
// always set as text, never parsed as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// The query string every API call carries: the chosen accounts.
export function accountQuery(extra = {}) {
  const q = new URLSearchParams();
  if (state.session && state.session.local) {
    if (state.account) q.set('account', state.account);
    if (state.storage) q.set('storage', state.storage);
  }
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? '?' + s : '';
}

export const enc = encodeURIComponent;

async function failure(r) {
  let code = 'Error';
  let message = r.status + ' ' + r.statusText;
  try {
    const body = await r.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not JSON */ }
  if (r.status === 401 && state.session && !state.session.local) showLogin(message);
  return new ApiError(r.status, code, message);
}

// GET (or another method) of a JSON endpoint under /ui/api.
export async function api(path, params = {}, method = 'GET') {
  const r = await fetch('/ui/api' + path + accountQuery(params), { method, credentials: 'same-origin' });
  if (!r.ok) throw await failure(r);
  return r.json();
}

// A byte range of a file: {bytes, size} or null when it does not exist (yet).
export async function fileRange(path, offset) {
  const r = await fetch('/ui/api' + path + accountQuery({ offset }), { credentials: 'same-origin' });
  if (r.status === 404 || r.status === 503) return null;
  if (!r.ok) throw await failure(r);
  const bytes = new Uint8Array(await r.arrayBuffer());
  return { bytes, size: Number(r.headers.get('x-cobalt-file-size') || 0) };
}

// Dates: the service's timestamps carry 7 fractional digits; keep 3.
export function fmtTime(v) {
  if (v === undefined || v === null || v === '') return '';
  const d = typeof v === 'number' ? new Date(v) : new Date(String(v).replace(/(\.\d{3})\d+/, '$1'));
  return isNaN(d) ? String(v) : d.toLocaleString();
}

export function fmtDuration(ms) {
  if (ms === undefined || ms === null || isNaN(ms)) return '';
  if (ms < 1000) return ms + ' ms';
  const s = ms / 1000;
  if (s < 120) return s.toFixed(1) + ' s';
  return Math.floor(s / 60) + ' min ' + Math.round(s % 60) + ' s';
}

export function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do { v /= 1024; u++; } while (v >= 1024 && u < units.length - 1);
  return v.toFixed(v < 10 ? 1 : 0) + ' ' + units[u];
}

export function chip(text) {
  return h('span', { class: 'chip ' + String(text || '').toLowerCase() }, text || '—');
}

export function errorBox(e) {
  return h('p', { class: 'error', role: 'alert' }, e instanceof Error ? e.message : String(e));
}

// ---- the current view ---------------------------------------------------------------

const main = () => document.getElementById('view');
let current = null;

function route() {
  const parts = (location.hash.replace(/^#\/?/, '') || 'pools').split('/').map(decodeURIComponent);
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.nav === parts[0]);
  const [section, id, sub, subId] = parts;
  if (section === 'pools' && id && sub === 'nodes' && subId) return views.nodePage(id, subId);
  if (section === 'pools' && id) return views.poolPage(id);
  if (section === 'jobs' && id && sub === 'tasks' && subId) return views.taskPage(id, subId);
  if (section === 'jobs' && id) return views.jobPage(id);
  if (section === 'jobs') return views.jobsPage();
  if (section === 'storage' && id) return views.containerPage(id);
  if (section === 'storage') return views.storagePage();
  return views.poolsPage();
}

function show() {
  if (current && current.dispose) current.dispose();
  const el = main();
  el.replaceChildren();
  current = route();
  current.mount(el);
}

// Refreshes the current view after a change, at most once per `minGap` ms per view.
let pending = null;
let lastRefresh = 0;
function changed() {
  if (!current || !current.refresh || pending) return;
  const gap = current.minGap || 400;
  const wait = Math.max(0, lastRefresh + gap - Date.now());
  pending = setTimeout(async () => {
    pending = null;
    lastRefresh = Date.now();
    try { await current.refresh(); } catch (e) { console.warn('refresh failed', e); }
  }, wait);
}

let source = null;
function listen() {
  if (source) source.close();
  const live = document.getElementById('live');
  source = new EventSource('/ui/api/events' + accountQuery());
  source.addEventListener('change', changed);
  source.onopen = () => { live.textContent = 'live'; live.classList.add('on'); };
  source.onerror = () => { live.textContent = 'reconnecting'; live.classList.remove('on'); };
}

// ---- session ------------------------------------------------------------------------

function showLogin(message) {
  if (source) source.close();
  if (current && current.dispose) current.dispose();
  current = null;
  const err = h('p', { class: 'error', hidden: !message }, message || '');
  const form = h('form', { class: 'login', id: 'login' },
    h('h1', {}, 'Log in to Cobalt'),
    h('p', { class: 'muted' }, 'Requests from other hosts need a Batch account key.'),
    h('label', {}, 'Batch account', h('input', { name: 'account', required: true, autocomplete: 'username' })),
    h('label', {}, 'Key', h('input', { name: 'key', type: 'password', required: true, autocomplete: 'current-password' })),
    h('label', {}, 'Storage account (optional)', h('input', { name: 'storageAccount' })),
    h('label', {}, 'Storage key', h('input', { name: 'storageKey', type: 'password' })),
    h('button', { type: 'submit' }, 'Log in'), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const r = await fetch('/ui/api/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(data),
      credentials: 'same-origin',
    });
    if (r.ok) return start();
    const e = await failure(r);
    err.textContent = e.message;
    err.hidden = false;
  });
  main().replaceChildren(form);
}

function accountSwitcher() {
  const s = state.session;
  const select = document.getElementById('account');
  select.replaceChildren(...s.accounts.map((a) => h('option', { value: a, selected: a === state.account }, a)));
  select.closest('label').hidden = s.accounts.length < 2;
  select.onchange = () => {
    state.account = select.value;
    sessionStorage.setItem('cobalt.account', state.account);
    listen();
    show();
  };
  const logout = document.getElementById('logout');
  logout.hidden = s.local;
  logout.onclick = async () => {
    await fetch('/ui/api/logout', { method: 'POST', credentials: 'same-origin' });
    showLogin();
  };
}

async function start() {
  const r = await fetch('/ui/api/session' + (sessionStorage.getItem('cobalt.account') ? '?account=' + enc(sessionStorage.getItem('cobalt.account')) : ''), { credentials: 'same-origin' });
  if (r.status === 401) return showLogin();
  if (r.status === 404) { sessionStorage.removeItem('cobalt.account'); return start(); }
  if (!r.ok) { main().replaceChildren(errorBox(await failure(r))); return; }
  state.session = await r.json();
  state.account = state.session.account;
  state.storage = state.session.storageAccount;
  accountSwitcher();
  listen();
  show();
}

window.addEventListener('hashchange', () => { if (state.session) show(); });
start();
