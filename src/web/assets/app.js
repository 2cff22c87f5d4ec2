// The dashboard: status arrives as server-sent events (/events, once a second); transfers,
// peers, trees and actions go through the JSON API over POST /api (protocol-spec/http.md).
'use strict';

const $ = (id) => document.getElementById(id);
const AUDIO = /\.(wav|mp3|flac|ogg|oga|opus|m4a|aiff?)$/i;
const HISTORY = 300; // samples: 5 minutes at one a second
const samples = [];
const trees = new Map(); // content ID -> content_tree reply
const openPeers = new Set();
// Beyond loopback the node wants the API token (http.md section 4): opened as /?token=T,
// the page passes it on with every request it makes.
const TOKEN = new URLSearchParams(location.search).get('token');
const withToken = (u) => (TOKEN ? u + (u.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN) : u);

async function api(type, payload) {
  const r = await fetch(withToken('/api'), { method: 'POST', body: JSON.stringify({ type, payload: payload || {} }) });
  if (!r.ok) throw new Error(await r.text());
  const v = await r.json();
  if (v.status !== 'success') throw new Error(v.message || 'error');
  return v;
}

function rate(n) {
  const u = ['B/s', 'kB/s', 'MB/s', 'GB/s'];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function eta(t) {
  if (t.complete) return 'done';
  if (!t.has_manifest) return 'searching';
  if (!t.down_rate) return 'stalled';
  const s = Math.round((t.size - t.have_bytes) / t.down_rate);
  return s >= 3600 ? `${Math.floor(s / 3600)}h${Math.floor(s / 60) % 60}m` : s >= 60 ? `${Math.floor(s / 60)}m${s % 60}s` : `${s}s`;
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
}

function say(text, bad) {
  $('msg').textContent = text;
  $('msg').className = bad ? 'err' : '';
}

// ----- live status --------------------------------------------------------------------

function onStatus(s) {
  $('conn').textContent = 'live';
  $('node-id').textContent = s.node_id;
  $('listen').textContent = s.listen;
  $('external').textContent = s.external_addr || '–';
  const nat = s.nat || {};
  $('nat').textContent = nat.reachability || 'unknown';
  const pm = nat.port_mapping;
  $('pmp').textContent = pm ? `${pm.protocol || ''} ${pm.state} ${pm.external || ''}` : 'off';
  // LAN discovery, where the node has it (status nat.lan).
  $('lan').textContent = nat.lan ? `${(nat.lan.peers || []).length} peers` : '–';
  $('rt-size').textContent = s.routing_table_size;
  $('records').textContent = s.provider_records;
  const bw = s.bandwidth || {};
  $('up-rate').textContent = rate(bw.up_rate || 0);
  $('down-rate').textContent = rate(bw.down_rate || 0);
  const l = bw.limits || {};
  $('limits-now').textContent = `now: up ${l.up ? rate(l.up) : 'unlimited'}, down ${l.down ? rate(l.down) : 'unlimited'}`;
  $('limits').dataset.up = l.up || 0;
  $('limits').dataset.down = l.down || 0;
  samples.push([bw.up_rate || 0, bw.down_rate || 0]);
  if (samples.length > HISTORY) samples.shift();
  drawChart();
  refreshTransfers();
}

function drawChart() {
  const c = $('chart');
  const g = c.getContext('2d');
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...samples.map(([u, d]) => Math.max(u, d)));
  for (const [k, color] of [[0, '#c63'], [1, '#36c']]) {
    g.strokeStyle = color;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = (c.width * (i + HISTORY - samples.length)) / (HISTORY - 1);
      const y = c.height - 2 - ((c.height - 4) * s[k]) / max;
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}

// ----- transfers ----------------------------------------------------------------------

let refreshing = false;
async function refreshTransfers() {
  if (refreshing) return;
  refreshing = true;
  try {
    const r = await api('transfer_status');
    const body = $('transfers').tBodies[0];
    const rows = [];
    for (const t of r.transfers) {
      rows.push(transferRow(t));
      if (openPeers.has(t.content_hash)) rows.push(await peersRow(t));
      rows.push(...(await playRows(t)));
    }
    body.replaceChildren(...rows);
  } catch (e) {
    say('transfers: ' + e.message, true);
  } finally {
    refreshing = false;
  }
}

function transferRow(t) {
  const pct = t.size ? Math.floor((100 * t.have_bytes) / t.size) : (t.complete ? 100 : 0);
  const bar = el('span', { class: 'bar' }, el('i'));
  bar.firstChild.style.width = pct + '%';
  const files = t.num_files ? `${t.files_done || 0}/${t.num_files}` : '1';
  const id = t.content_hash;
  const peersBtn = el('button', { class: 'peers-btn', onclick: () => { openPeers.has(id) ? openPeers.delete(id) : openPeers.add(id); refreshTransfers(); } }, `${t.peers} ▾`);
  const cancel = el('button', { class: 'cancel', onclick: () => act('cancel_transfer', { content_hash: id }, 'cancelled') }, t.complete ? 'Remove' : 'Cancel');
  return el('tr', { 'data-id': id, class: 'transfer' },
    el('td', { title: id }, t.name || id.slice(0, 16) + '…'),
    el('td', {}, bar, ' ', el('span', { class: 'progress' }, pct + '%')),
    el('td', { class: 'down' }, rate(t.down_rate || 0)),
    el('td', { class: 'up' }, rate(t.up_rate || 0)),
    el('td', { class: 'eta' }, eta(t)),
    el('td', {}, files),
    el('td', {}, peersBtn),
    el('td', {}, cancel));
}

async function peersRow(t) {
  let cells;
  try {
    const r = await api('transfer_peers', { content_hash: t.content_hash });
    cells = r.peers.map((p) => `${p.addr} · ${p.connection || p.state} · ↓${rate(p.down_rate)} ↑${rate(p.up_rate)}${p.seeder ? ' · seeder' : ''}`);
    if (!cells.length) cells = ['no peers connected'];
  } catch (e) {
    cells = [e.message];
  }
  return el('tr', { class: 'peers' }, el('td', { colspan: 8 }, ...cells.map((c) => el('div', {}, c))));
}

// Audio files of a transfer, each with a play button that streams it (GET /content/ID/PATH).
async function playRows(t) {
  if (!t.has_manifest) return [];
  let names;
  if (t.num_files) {
    let tree = trees.get(t.content_hash);
    if (!tree) {
      try { tree = await api('content_tree', { content_hash: t.content_hash }); } catch (e) { return []; }
      trees.set(t.content_hash, tree);
    }
    names = tree.entries.filter((e) => !e.folder && AUDIO.test(e.path)).map((e) => e.path);
  } else {
    names = t.name && AUDIO.test(t.name) ? [t.name] : [];
  }
  return names.slice(0, 50).map((p) => {
    const src = withToken(`/content/${t.content_hash}/${p.split('/').map(encodeURIComponent).join('/')}`);
    const play = el('button', { class: 'play', 'data-src': src, onclick: () => { const a = $('player'); a.src = src; a.play(); } }, '▶ ' + p);
    return el('tr', { class: 'file' }, el('td', { colspan: 8 }, play));
  });
}

async function act(type, payload, done) {
  try {
    await api(type, payload);
    say(done);
  } catch (e) {
    say(e.message, true);
  }
  refreshTransfers();
}

// ----- actions ------------------------------------------------------------------------

$('share').addEventListener('submit', (e) => {
  e.preventDefault();
  const path = $('share-path').value.trim();
  say('hashing ' + path + '…');
  api('local_add_file', { filepath: path })
    .then((r) => say('shared: ' + r.file_hash))
    .catch((err) => say(err.message, true))
    .finally(refreshTransfers);
});

$('get-tree').addEventListener('click', async () => {
  const id = $('get-id').value.trim();
  say('asking for the contents of ' + id + '…');
  try {
    const t = await api('content_tree', { content_hash: id });
    say(`${t.kind} ${t.name || ''}: ${t.num_files} files, ${t.size} bytes`);
    const items = t.entries.filter((e) => !e.folder).map((e) =>
      el('li', {}, el('label', {}, el('input', { type: 'checkbox', class: 'pick', value: e.path, checked: '' }), ` ${e.path} (${e.size} B)`)));
    $('tree').replaceChildren(t.kind === 'folder' ? el('ul', {}, ...items) : '');
  } catch (e) {
    say(e.message, true);
  }
});

$('get').addEventListener('submit', (e) => {
  e.preventDefault();
  const id = $('get-id').value.trim();
  const payload = { content_hash: id };
  const picks = [...document.querySelectorAll('#tree .pick')];
  if (picks.length && picks.some((p) => !p.checked)) {
    payload.only = picks.filter((p) => p.checked).map((p) => p.value.replace(/[*?[\]\\]/g, '\\$&'));
  }
  say('download started: ' + id);
  // The reply comes when the download is complete; progress shows in the table meanwhile.
  api('local_request_file', payload)
    .then((r) => say('downloaded: ' + (r.file_path || id)))
    .catch((err) => say(err.message, true));
  setTimeout(refreshTransfers, 300);
});

$('limits').addEventListener('submit', (e) => {
  e.preventDefault();
  const p = {};
  for (const k of ['up', 'down']) {
    const v = $('limit-' + k).value.trim();
    if (v) p[k] = /^\d+$/.test(v) ? Number(v) : v;
  }
  act('set_limits', p, 'limits set');
});

// ----- learners' page -----------------------------------------------------------------

async function refreshBuckets() {
  try {
    const r = await api('routing_table');
    const by = new Map();
    for (const c of r.contacts) {
      if (!by.has(c.bucket)) by.set(c.bucket, []);
      by.get(c.bucket).push(c);
    }
    const rows = [...by.entries()].sort((a, b) => b[0] - a[0]).map(([b, cs]) =>
      el('tr', {}, el('td', {}, String(b)), el('td', {}, String(cs.length)),
        el('td', {}, ...cs.map((c) => el('div', {}, el('code', {}, c.node_id.slice(0, 16) + '…'), ` ${c.addr}, ${c.last_seen_secs_ago}s ago`)))));
    $('buckets').tBodies[0].replaceChildren(...rows);
  } catch (e) {
    say(e.message, true);
  }
}

// Lookups whose requests are shown (by when they ended and their target); the newest is
// shown unless closed.
const openLookups = new Set();
const closedLookups = new Set();

function hopText(h, running) {
  const again = h.resent ? ` (sent ${h.resent + 1}×)` : '';
  switch (h.result) {
    case 'answered': {
      const best = h.best_bits == null ? '' : `, closest named shares ${h.best_bits} bits`;
      const prov = h.providers ? `, ${h.providers} provider${h.providers > 1 ? 's' : ''}` : '';
      const rtt = h.rtt_ms ? `${h.rtt_ms} ms` : '<1 ms';
      return `answered in ${rtt}${again}: ${h.closer} contacts (${h.new} new)${prov}${best}`;
    }
    case 'timeout': return `no answer: timed out after ${h.after_ms} ms${again}`;
    case 'error': return `answered with an error after ${h.after_ms} ms`;
    default: return running ? `waiting for the answer${again}` : `no answer before the lookup ended${again}`;
  }
}

// A lookup that ended (`seq`) or one still running (`query`, with `running_ms`).
function lookupRows(x, i) {
  const running = x.running_ms !== undefined;
  const key = running ? `q${x.query}` : x.seq;
  const open = openLookups.has(key) || (i === 0 && !closedLookups.has(key));
  const toggle = el('button', { type: 'button', class: 'hops-toggle' }, open ? 'hide' : `${x.requests.length} request${x.requests.length === 1 ? '' : 's'}`);
  toggle.addEventListener('click', () => {
    if (open) { openLookups.delete(key); closedLookups.add(key); } else { openLookups.add(key); closedLookups.delete(key); }
    refreshLookups();
  });
  const row = el('tr', { class: running ? 'lookup running' : 'lookup' }, el('td', {}, x.kind), el('td', {}, el('code', {}, (x.target || '').slice(0, 12) + '…')),
    el('td', {}, running ? 'running' : Math.round(x.ago_ms / 1000) + ' s ago'), el('td', {}, running ? `${x.running_ms} ms so far` : x.ms + ' ms'),
    el('td', {}, running || x.hops == null ? '–' : String(x.hops)),
    el('td', {}, String(x.answers)), el('td', {}, String(x.failures)), el('td', {}, toggle));
  if (!open) return [row];
  const hops = x.requests.map((h) => el('tr', { class: 'hop ' + h.result }, el('td', {}, String(h.round)),
    el('td', {}, el('code', {}, h.node.slice(0, 12) + '…'), ' ' + h.addr), el('td', {}, String(h.bits)),
    el('td', {}, '+' + h.sent_ms + ' ms'), el('td', {}, hopText(h, running))));
  const more = x.untraced ? [el('tr', {}, el('td', { colspan: '5' }, `… and ${x.untraced} more requests`))] : [];
  const inner = el('table', { class: 'hops' },
    el('thead', {}, el('tr', {}, el('th', {}, 'round'), el('th', {}, 'asked'), el('th', {}, 'bits shared with target'),
      el('th', {}, 'sent'), el('th', {}, 'what came back'))), el('tbody', {}, ...hops, ...more));
  return [row, el('tr', { class: 'hops-row' }, el('td', { colspan: '8' }, inner))];
}

async function refreshLookups() {
  try {
    const l = await (await fetch(withToken('/lookups'))).json();
    // Those running first (the newest first), then those that ended.
    const all = [...(l.running || []), ...l.lookups];
    $('lookups').tBodies[0].replaceChildren(...all.flatMap(lookupRows));
  } catch (e) {
    say(e.message, true);
  }
}

function route() {
  const learn = location.hash === '#learn';
  $('page-main').hidden = learn;
  $('page-learn').hidden = !learn;
  if (learn) { refreshBuckets(); refreshLookups(); }
}
window.addEventListener('hashchange', route);
route();

const events = new EventSource(withToken('/events'));
events.onmessage = (m) => {
  onStatus(JSON.parse(m.data));
  if (location.hash === '#learn') {
    refreshLookups();
    if (samples.length % 5 === 0) refreshBuckets();
  }
};
events.onerror = () => { $('conn').textContent = 'reconnecting…'; };
refreshTransfers();
