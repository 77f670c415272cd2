// The page's status surfaces: the connection label, the notice bar and the
// title's unread count.

import { state } from '../state.js';
import { $ } from './dom.js';

/** The connection label in the top bar: connected, reconnecting…, kicked… */
export function setConnStatus(status) {
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
  node.dataset.state = status;
}

export function showNotice(text, kind = 'warn') {
  const n = $('#notice');
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
