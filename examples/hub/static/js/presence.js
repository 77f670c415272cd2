// Presence: the /presence connection, the People list and my status.

import { wsUrl } from './api.js';
import { openDm, renderDmList } from './dm.js';
import { labelOf, subForName } from './identity.js';
import { onMention } from './mentions.js';
import { isMod, openUserMenu } from './moderation.js';
import { probeToken } from './session.js';
import { Conn } from './socket.js';
import { state } from './state.js';
import { save, STORAGE } from './storage.js';
import { renderHeader, updateOnlineStat } from './views.js';
import { avatar } from './ui/avatar.js';
import { $, h } from './ui/dom.js';
import { setConnStatus } from './ui/status.js';
import { toast } from './ui/toasts.js';
import { onActivity, onReadElsewhere, watchRooms } from './unread.js';

function upsertUser(raw, status) {
  let u;
  if (typeof raw === 'string') u = { id: raw, username: raw };
  else if (raw && typeof raw === 'object') {
    const id = raw.id ?? raw.sub ?? raw.user_id ?? raw.user ?? raw.username;
    if (id === undefined || id === null) return null;
    u = { id: String(id), username: String(raw.username ?? raw.name ?? raw.user ?? id) };
    if (raw.status) status = raw.status;
  } else return null;
  // A real entry replaces any guess made from a display name.
  for (const [k, v] of state.users) {
    if (v.guessed && k !== u.id && String(v.username).toLowerCase() === u.username.toLowerCase()) state.users.delete(k);
  }
  const old = state.users.get(u.id);
  const entry = Object.assign(old || {}, u, { status: status || (old && old.status) || 'online', guessed: false });
  state.users.set(u.id, entry);
  if (state.dmPeers.includes(u.id)) state.dmNames[u.id] = u.username;
  return entry;
}

export function startPresence() {
  const conn = new Conn({
    url: () => wsUrl('/presence'),
    onOpen: () => {
      if (state.myStatus !== 'online') conn.send({ type: 'status', status: state.myStatus });
      // The sidebar's rooms send `activity` here; counts may have moved while away.
      watchRooms(true);
      onReadElsewhere();
    },
    onFrame: (f) => onPresenceFrame(conn, f),
    onStatus: (st) => {
      state.presenceState = st;
      if (!state.view) setConnStatus(st);
    },
    onClose: (ev, opened, fails) => {
      if (state.presence !== conn) return 'stop';
      // Without the presence connection nobody's status is known: none is shown as online.
      for (const u of state.users.values()) u.status = 'offline';
      renderPresence();
      if (ev.code === 4003) return 'stop';
      if (!opened && fails >= 3) probeToken();
      return undefined;
    },
  });
  state.presence = conn;
  conn.start();
}

function onPresenceFrame(conn, f) {
  if (state.presence !== conn) return;
  switch (f.type) {
    case 'users': {
      conn.healthy();
      mergeUsers(f.users, true);
      return;
    }
    case 'status': {
      const explicit = f.id ?? f.sub ?? f.user_id;
      let sub = explicit !== undefined ? String(explicit) : subForName(f.user);
      if (!sub) {
        // A newcomer known only by display name: list it now, learn its id from a fresh snapshot.
        sub = String(f.user);
        state.users.set(sub, { id: sub, username: String(f.user), status: f.status, guessed: true });
        refreshPresence();
      } else {
        const u = state.users.get(sub) || upsertUser({ id: sub, username: f.user || sub }, f.status);
        u.status = f.status || 'online';
        if (explicit !== undefined && f.user) u.username = String(f.user);
      }
      if (sub === state.me.sub && ['online', 'away', 'busy'].includes(f.status)) {
        $('#status-select').value = f.status;
        $('#status-select').dataset.status = f.status;
      }
      renderPresence();
      if (state.view && state.view.kind === 'dm' && state.view.peer === sub) renderHeader();
      return;
    }
    case 'mention': return onMention(f);
    case 'activity': return onActivity(f);
    case 'read': return onReadElsewhere();
    case 'watching_unread': return undefined;
    case 'error': return toast(f.detail || f.code || 'error', { kind: 'error', title: (f.code || 'error').replace(/_/g, ' ') });
    default: return undefined;
  }
}

function mergeUsers(list, authoritative) {
  if (!Array.isArray(list)) return;
  const online = new Set();
  for (const raw of list) {
    const u = upsertUser(raw, typeof raw === 'object' && raw ? raw.status : 'online');
    if (u) online.add(u.id);
  }
  if (authoritative) {
    for (const [id, u] of state.users) if (!online.has(id) && !u.guessed) u.status = 'offline';
  }
  renderPresence();
  renderDmList();
  if (state.view) renderHeader();
}

// A second /presence connection of the same user broadcasts nothing, and its
// `users` snapshot tells us the id of a newcomer we only know by name.
let refreshTimer = null;

function refreshPresence() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => {
    if (!state.presence || !state.presence.open) return;
    let ws;
    try { ws = new WebSocket(wsUrl('/presence')); } catch (_) { return; }
    const done = setTimeout(() => ws.close(), 5000);
    ws.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (_) { return; }
      if (f && f.type === 'users') {
        clearTimeout(done);
        ws.close();
        mergeUsers(f.users, false);
      }
    };
  }, 400);
}

const STATUS_ORDER = { online: 0, busy: 1, away: 2, offline: 3 };

export function renderPresence() {
  if (!state.me) return;
  const ul = $('#presence-list');
  const users = Array.from(state.users.values()).sort((a, b) => {
    if (a.id === state.me.sub) return -1;
    if (b.id === state.me.sub) return 1;
    const d = (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3);
    return d || String(a.username).localeCompare(String(b.username));
  });
  const mod = state.view && state.view.kind === 'room' && isMod(state.view.id);
  ul.replaceChildren(...users.map((u) => {
    const me = u.id === state.me.sub;
    const status = ['online', 'away', 'busy', 'offline'].includes(u.status) ? u.status : 'online';
    const active = state.view && state.view.kind === 'dm' && state.view.peer === u.id;
    const av = avatar(u.username, 'avatar-sm');
    av.append(h('span', { class: `status-dot ${status}`, title: status }));
    return h('li', { class: `nav-item user${active ? ' active' : ''}${status === 'offline' ? ' is-offline' : ''}`, dataset: { user: u.id, status } },
      h('button', {
        type: 'button', class: 'nav-btn', title: me ? `You (${u.id})` : `Message ${u.username} (${u.id})`,
        on: { click: () => (me ? null : openDm(u.id)) },
      }, av,
      h('span', { class: 'nav-label username', text: labelOf(u.id, u.username) }),
      me ? h('span', { class: 'you', text: 'you' }) : null,
      state.dmUnread.get(u.id) ? h('span', { class: 'badge', text: state.dmUnread.get(u.id) }) : null),
      mod && !me ? h('button', {
        type: 'button', class: 'nav-x user-more', title: 'Moderate', 'aria-label': `Moderate ${u.username}`, text: '⋯',
        on: { click: (e) => { e.stopPropagation(); openUserMenu(e.currentTarget, u.id, u.username); } },
      }) : null);
  }));
  const n = users.filter((u) => u.status !== 'offline').length;
  $('#online-count').textContent = `${n} online`;
  updateOnlineStat();
}

export function setMyStatus() {
  const s = $('#status-select').value;
  state.myStatus = s;
  save(STORAGE.status, s);
  $('#status-select').dataset.status = s;
  if (state.presence) state.presence.send({ type: 'status', status: s });
}
