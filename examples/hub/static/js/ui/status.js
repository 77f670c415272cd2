// The page's status surfaces: the connection label, the notice bar (with
// the countdown to the next reconnection and "Retry now") and the title's
// unread count.

import { state } from '../state.js';
import { $, h } from './dom.js';

/** The connection on screen: the open room's or conversation's, else presence. */
const shownConn = () => state.chat || (state.dm && state.dm.conn) || state.presence;

let troubleTimer = null;
// Whether the hub answered /healthz during this outage (null: not asked yet).
let hubUp = null;
let probing = false;

async function probeHub() {
  if (probing) return;
  probing = true;
  try {
    const res = await fetch('/healthz', { cache: 'no-store' });
    hubUp = res.ok;
  } catch (_) {
    hubUp = false;
  } finally {
    probing = false;
  }
}

/** The notice while a connection is down: why, when the next try is, and Retry now. */
function renderTrouble() {
  clearTimeout(troubleTimer);
  const conn = shownConn();
  if (!conn || conn.stopped || conn.open) return;
  const left = conn.retryAt ? Math.max(0, Math.ceil((conn.retryAt - Date.now()) / 1000)) : 0;
  const why = hubUp === false
    ? 'Cannot reach the hub: it may be stopped, or the network is down.'
    : hubUp === true
      ? 'The hub is running but did not take this connection (it may be busy).'
      : 'The connection to the hub was lost.';
  const when = conn.retryAt ? `Retrying in ${left} s…` : 'Connecting…';
  const n = $('#notice');
  const retry = h('button', {
    type: 'button', id: 'retry-now', class: 'link-btn notice-action', text: 'Retry now',
    on: { click: () => { hubUp = null; probeHub(); conn.retryNow(); renderTrouble(); } },
  });
  // The same sentence every second is not re-announced: only the text node changes.
  if (n.dataset.kind !== 'retry' || !$('#retry-now', n)) {
    n.replaceChildren(h('span', { class: 'notice-text' }), ' ', retry);
    n.dataset.kind = 'retry';
    n.hidden = false;
  }
  $('.notice-text', n).textContent = `${why} ${when}`;
  troubleTimer = setTimeout(renderTrouble, 1000);
}

function connectionTrouble(status) {
  if (status === 'reconnecting') {
    if (hubUp === null) probeHub().then(renderTrouble);
    renderTrouble();
    return;
  }
  if (status === 'connecting') return;
  clearTimeout(troubleTimer);
  hubUp = null;
  if ($('#notice').dataset.kind === 'retry') showNotice('');
}

/** The connection label in the top bar: connected, reconnecting…, kicked… */
export function setConnStatus(status) {
  connectionTrouble(status);
  const node = $('#connection-status');
  const text = {
    connected: 'connected',
    connecting: 'connecting…',
    reconnecting: 'reconnecting…',
    forbidden: 'forbidden',
    idle: 'not joined',
    offline: 'offline',
  }[status] || status;
  node.textContent = text;
  node.title = `Connection: ${text}`;
  node.dataset.state = status;
}

export function showNotice(text, kind = 'warn') {
  const n = $('#notice');
  // A refusal: nothing is coming, so no "Loading messages…" under it.
  if (text && kind === 'error') for (const l of document.querySelectorAll('#messages > .loading')) l.remove();
  n.textContent = text;
  n.dataset.kind = kind;
  n.hidden = !text;
}

export function updateTitle() {
  let n = 0;
  for (const c of state.dmUnread.values()) n += c;
  for (const c of state.mentionBadges.values()) n += c;
  document.title = n ? `(${n}) channelbox` : 'channelbox';
}
