// The admin dashboard (GET /dashboard): polls GET /stats?detail every
// 1.5 s with the chat client's token (localStorage, as a bearer token) and
// draws connections, messages and deliveries per second (from the
// difference of two samples' counters over the hub's own uptime clock),
// the top rooms and the engine's health.
//
// Who may see it is the hub's decision: /stats?detail answers 403 to a
// token without the admin role and 401 to none or a bad one; the page
// then shows why instead of the board. A pasted token is kept in memory
// only.

import { STORAGE, load } from './storage.js';
import { barChart, lineChart, short } from './dashboard-chart.js';

const POLL_MS = 1500;
/** Samples kept: two minutes at one per 1.5 s. */
const KEEP = 80;

const $ = (id) => document.getElementById(id);

const board = {
  /** A token pasted into the form (memory only); else the chat client's. */
  pasted: null,
  /** `{t, connections, messages, deliveries, rateMessages, rateDeliveries}` or null for a failed poll. */
  samples: [],
  timer: null,
  /** Bumped by each restart, so a poll still in flight does not schedule a second loop. */
  generation: 0,
};

function token() {
  return board.pasted || load(STORAGE.token, null);
}

/** The token's claims, unverified: only to name the caller in a message. */
function claimsOf(jwt) {
  try {
    const part = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    return JSON.parse(atob(part));
  } catch (_) {
    return null;
  }
}

function showGate(title, textContent) {
  $('board').hidden = true;
  $('gate').hidden = false;
  $('gate-title').textContent = title;
  $('gate-text').textContent = textContent;
  $('poll-status').textContent = title;
}

function showBoard() {
  if ($('board').hidden) {
    $('gate').hidden = true;
    $('board').hidden = false;
  }
}

/** One poll: 200 draws, 401/403 explain, anything else is a gap. */
async function poll() {
  const jwt = token();
  if (!jwt) {
    showGate('Sign in first', 'The dashboard is for admins. Sign in on the chat page with an admin account, or paste an admin token below.');
    return false;
  }
  let response;
  try {
    response = await fetch('/stats?detail', { headers: { Authorization: `Bearer ${jwt}` }, cache: 'no-store' });
  } catch (_) {
    record(null);
    $('poll-status').textContent = 'The hub does not answer; trying again.';
    return true;
  }
  if (response.status === 401) {
    showGate('Sign in again', 'The hub refused this token (expired, or signed with another secret). Sign in on the chat page again, or paste an admin token below.');
    return false;
  }
  if (response.status === 403) {
    const who = claimsOf(jwt);
    const name = who ? who.username || who.sub : 'this account';
    showGate('Admins only', `You are signed in as ${name}, who is not an admin. The dashboard shows the hub's numbers to admins only.`);
    return false;
  }
  if (!response.ok) {
    record(null);
    $('poll-status').textContent = `The hub answered ${response.status}; trying again.`;
    return true;
  }
  const stats = await response.json();
  showBoard();
  record(stats);
  draw(stats);
  $('poll-status').textContent = `Updated ${new Date().toLocaleTimeString()} · every ${POLL_MS / 1000} s`;
  return true;
}

/** Adds a sample (null: the poll failed), rates from the previous one. */
function record(stats) {
  if (!stats) {
    board.samples.push(null);
  } else {
    const sample = {
      t: stats.uptime_seconds,
      connections: stats.connections,
      messages: (stats.messages || 0) + (stats.direct_messages || 0),
      deliveries: stats.deliveries || 0,
      rateMessages: null,
      rateDeliveries: null,
    };
    const prev = board.samples[board.samples.length - 1];
    // A restarted hub (uptime or counters went back) starts a new series.
    if (prev && sample.t > prev.t && sample.messages >= prev.messages && sample.deliveries >= prev.deliveries) {
      const dt = sample.t - prev.t;
      sample.rateMessages = (sample.messages - prev.messages) / dt;
      sample.rateDeliveries = (sample.deliveries - prev.deliveries) / dt;
    }
    board.samples.push(sample);
  }
  while (board.samples.length > KEEP) board.samples.shift();
}

function series(key) {
  return board.samples.map((s) => (s ? s[key] : null));
}

function setNow(id, value, digits) {
  const node = $(`now-${id}`);
  node.dataset.value = value === null ? '' : String(value);
  node.textContent = value === null ? '–' : digits === 0 ? short(value) : short(Number(value.toFixed(digits)));
}

function draw(stats) {
  const span = ((board.samples.length - 1) * POLL_MS) / 1000;
  const now = board.samples[board.samples.length - 1];

  setNow('connections', now.connections, 0);
  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  $('sub-connections').textContent = `${plural(stats.users_online, 'user', 'users')} online · ${plural(stats.rooms, 'room', 'rooms')}`;
  lineChart($('chart-connections'), series('connections'), {
    label: `Open connections over the last ${Math.round(span)} seconds; now ${now.connections}.`,
    seconds: span,
  });

  setNow('messages', now.rateMessages, 2);
  $('sub-messages').textContent = `${short(now.messages)} in total (chat and direct)`;
  lineChart($('chart-messages'), series('rateMessages'), {
    label: `Messages per second over the last ${Math.round(span)} seconds; now ${short(now.rateMessages)}.`,
    seconds: span,
  });

  setNow('deliveries', now.rateDeliveries, 2);
  $('sub-deliveries').textContent = `${short(now.deliveries)} in total`;
  lineChart($('chart-deliveries'), series('rateDeliveries'), {
    label: `Deliveries per second over the last ${Math.round(span)} seconds; now ${short(now.rateDeliveries)}.`,
    seconds: span,
  });

  drawRooms(stats);
  drawHealth(stats);
}

function drawRooms(stats) {
  const perRoom = stats.per_room || {};
  const top = (stats.top_rooms || []).slice(0, 8);
  const rows = top.map((r) => ({
    name: r.room,
    value: r.messages_last_hour,
    total: r.messages,
    connections: (perRoom[r.room] && perRoom[r.room].connections) || 0,
  }));
  $('rooms-empty').hidden = rows.length > 0;
  $('rooms-table').hidden = rows.length === 0;
  $('chart-rooms').hidden = rows.length === 0;
  if (rows.length > 0) {
    const words = rows.map((r) => `${r.name} ${r.value}`).join(', ');
    barChart($('chart-rooms'), rows, { label: `Messages in the last hour by room: ${words}.` });
  }
  const body = $('rooms-body');
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement('tr');
    tr.dataset.room = r.name;
    for (const v of [r.name, r.value, r.total, r.connections]) {
      const td = document.createElement('td');
      td.textContent = String(v);
      tr.append(td);
    }
    return tr;
  }));
}

/** `[term, value, state]`: state is 'ok', 'warn' or 'bad' (shown in words too). */
function healthRows(stats) {
  const detail = stats.detail || {};
  const engine = stats.engine || {};
  const history = detail.history_store || {};
  const store = detail.state_store || {};
  const rows = [];
  if (detail.engine === 'redis') {
    rows.push(['Redis engine', engine.connected ? 'connected' : 'disconnected', engine.connected ? 'ok' : 'bad']);
    rows.push(['Engine reconnects / unavailable', `${engine.reconnects} / ${engine.unavailable}`, engine.unavailable ? 'warn' : 'ok']);
    rows.push(['Lost subscriptions', String(engine.lost_subscriptions), engine.lost_subscriptions ? 'warn' : 'ok']);
    rows.push(['Malformed engine entries', String(engine.malformed), engine.malformed ? 'warn' : 'ok']);
  } else {
    rows.push(['Engine', 'in memory (this hub alone)', 'ok']);
  }
  rows.push(['State store', `${store.kind || '?'}, ${stats.state_corrupt ?? store.corrupt ?? 0} corrupt values`, (stats.state_corrupt || store.corrupt) ? 'warn' : 'ok']);
  const failing = history.failing === true;
  rows.push(['History store', `${history.kind || '?'}${failing ? ', failing to write' : ''}`, failing ? 'bad' : 'ok']);
  if (history.kind === 'disk') {
    rows.push(['History commits (failed)', `${short(history.commits)} (${history.failed_commits})`, history.failed_commits ? 'warn' : 'ok']);
    rows.push(['History rows skipped at start', String(history.skipped_rows), history.skipped_rows ? 'warn' : 'ok']);
  }
  rows.push(['Saved messages', `${short(stats.history_messages)} (${short(stats.history_bytes)} B)`, 'ok']);
  rows.push(['Queued', `${short(stats.queued_messages)} frames, ${short(stats.queued_bytes)} B`, 'ok']);
  rows.push(['Dropped frames', String(stats.dropped), stats.dropped ? 'warn' : 'ok']);
  rows.push(['Slow-consumer / rate-limit closes', `${stats.slow_consumer_disconnects} / ${stats.rate_limit_disconnects}`, 'ok']);
  rows.push(['Upgrades refused', String(stats.upgrades_refused), 'ok']);
  if (detail.expired_connections !== undefined) rows.push(['Connections past their TTL', String(detail.expired_connections), 'ok']);
  if (stats.search_index_dropped !== undefined) {
    rows.push(['Search index changes dropped', String(stats.search_index_dropped), stats.search_index_dropped ? 'warn' : 'ok']);
  }
  if (detail.rss_bytes) rows.push(['Memory (RSS)', `${(detail.rss_bytes / 1048576).toFixed(1)} MiB`, 'ok']);
  rows.push(['Uptime', uptime(stats.uptime_seconds), 'ok']);
  return rows;
}

const STATE_WORDS = { ok: 'fine', warn: 'look', bad: 'problem' };

function drawHealth(stats) {
  const dl = $('health');
  const nodes = [];
  for (const [term, value, state] of healthRows(stats)) {
    const row = document.createElement('div');
    row.className = `health-row ${state}`;
    const dt = document.createElement('dt');
    dt.textContent = term;
    const dd = document.createElement('dd');
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = STATE_WORDS[state];
    const v = document.createElement('span');
    v.textContent = value;
    dd.append(badge, ' ', v);
    row.append(dt, dd);
    nodes.push(row);
  }
  dl.replaceChildren(...nodes);
}

function uptime(s) {
  const t = Math.floor(s || 0);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${t % 60} s` : `${t} s`;
}

async function loop() {
  clearTimeout(board.timer);
  const generation = ++board.generation;
  const again = await poll();
  if (again && generation === board.generation) board.timer = setTimeout(loop, POLL_MS);
}

$('token-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const value = $('token-input').value.trim();
  if (!value) return;
  board.pasted = value;
  board.samples = [];
  $('token-input').value = '';
  loop();
});

// The chat page may sign in (or out) in another tab.
window.addEventListener('storage', (e) => {
  if (e.key === STORAGE.token && !board.pasted) {
    board.samples = [];
    loop();
  }
});

loop();
