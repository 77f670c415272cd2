// The main pane: the welcome screen, its header, and leaving a room or
// conversation.

import { api } from './api.js';
import { openRoom } from './chat.js';
import { setComposerEnabled } from './composer.js';
import { renderDmList } from './dm.js';
import { labelOf, nameOf } from './identity.js';
import { renderPresence } from './presence.js';
import { rememberAdhocRoom, renderRoomList } from './rooms.js';
import { currentRoom, roomState, state } from './state.js';
import { closeThread } from './threads.js';
import { stopTyping } from './typing.js';
import { $, h } from './ui/dom.js';
import { icon } from './ui/icons.js';
import { closePopovers } from './ui/popovers.js';
import { setConnStatus, showNotice } from './ui/status.js';

export function closeView() {
  $('#app').classList.remove('show-sidebar');
  const open = currentRoom();
  if (open) {
    // The next visit decides afresh what is new since then.
    open.unreadDecided = false;
    open.unreadFrom = null;
  }
  if (state.chat) state.chat.stop();
  if (state.dm && state.dm.conn) state.dm.conn.stop();
  stopTyping();
  state.chat = null;
  state.dm = null;
  state.view = null;
  state.editing = null;
  closeThread();
  closePopovers();
  showNotice('');
  $('#jump-latest').hidden = true;
  $('#typing').textContent = '';
  // With no room or conversation open, the status shows the presence connection.
  setConnStatus(state.presenceState || 'idle');
}

export function renderEmptyView() {
  $('#view-title').textContent = 'Welcome';
  $('#room-meta').textContent = state.me ? `Signed in as ${state.me.username}` : '';
  const box = $('#messages');
  const quick = h('div', { class: 'quick-rooms' },
    ['general', 'random'].map((id) => h('button', {
      type: 'button', class: 'btn btn-secondary btn-sm', text: `# ${id}`,
      on: { click: () => { rememberAdhocRoom(id); openRoom(id); } },
    })));
  box.replaceChildren(h('div', { class: 'empty-state' },
    h('div', { class: 'empty-icon' }, icon('chat', 40)),
    h('h2', { text: 'Pick a room to start chatting' }),
    h('p', { text: 'Join a room from the sidebar, create one with +, or click someone under People to send a direct message.' }),
    quick,
    h('div', { id: 'stats', class: 'stats' })));
  $('#room-info').hidden = true;
  showStats();
  setComposerEnabled(false, 'Message');
  renderRoomList();
  renderDmList();
  renderPresence();
}

// Hub numbers on the welcome screen, from GET /stats (any shape it has).
async function showStats() {
  const res = await api('GET', '/stats', undefined, { no401: true });
  const box = $('#stats');
  if (!box || !res.ok || !res.data || typeof res.data !== 'object') return;
  const d = res.data;
  const num = (...keys) => {
    for (const k of keys) {
      let v = d;
      for (const part of k.split('.')) v = v && typeof v === 'object' ? v[part] : undefined;
      if (typeof v === 'number') return v;
      if (v && typeof v === 'object' && typeof v.total === 'number') return v.total;
    }
    return null;
  };
  // "online" is the People list's count, so the two always agree.
  const items = [
    ['online', onlineCount()],
    ['connections', num('connections', 'connections.total')],
    ['rooms', num('rooms', 'rooms_total', 'rooms.count')],
    ['messages', num('messages', 'messages_total', 'messages.total')],
  ].filter(([, v]) => v !== null);
  box.replaceChildren(...items.map(([label, v]) => h('div', { class: 'stat', dataset: { stat: label } },
    h('b', { text: v.toLocaleString() }), h('span', { text: label }))));
}

/** Users online as the People list shows them. */
export function onlineCount() {
  let n = 0;
  for (const u of state.users.values()) if (u.status !== 'offline') n += 1;
  return n;
}

/** Presence changed: the welcome screen's count follows. */
export function updateOnlineStat() {
  const b = $('#stats .stat[data-stat="online"] b');
  if (b) b.textContent = onlineCount().toLocaleString();
}

export function renderHeader() {
  const v = state.view;
  $('#room-info').hidden = !v || v.kind !== 'room';
  if (!v) return;
  if (v.kind === 'room') {
    const room = state.rooms.get(v.id) || { id: v.id, name: v.id };
    const r = roomState(v.id);
    $('#view-title').replaceChildren(
      room.private ? h('span', { class: 'title-icon' }, icon('lock', 16)) : h('span', { class: 'title-icon', text: '#', 'aria-hidden': 'true' }),
      h('span', { text: room.name }));
    const bits = [];
    if (room.private) bits.push(`private · ${room.members ? room.members.length : 0} members`);
    if (room.owner) bits.push(room.owner === state.me.sub ? 'you own this room' : `owner ${nameOf(room.owner)}`);
    if (!bits.length) bits.push(room.private ? 'private room' : 'public room');
    // Recovery's position is for the client, not the reader: data attributes only.
    const meta = $('#room-meta');
    meta.textContent = bits.join(' · ');
    meta.dataset.epoch = r.epoch === null ? '' : r.epoch;
    meta.dataset.lastId = r.lastId === null ? '' : r.lastId;
  } else if (v.kind === 'dm') {
    const u = state.users.get(v.peer);
    $('#view-title').replaceChildren(
      h('span', { class: `status-dot ${u ? u.status : 'offline'}`, 'aria-hidden': 'true' }),
      h('span', { text: labelOf(v.peer) }));
    $('#room-meta').textContent = `Direct message${u ? ` · ${u.status}` : ''}`;
    $('#room-meta').title = `user id ${v.peer}`;
  }
}
