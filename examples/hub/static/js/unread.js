// Unread counts in the sidebar: the hub's counts (GET /unread) on sign-in and
// whenever a read position moves on one of my devices, `activity` frames for
// the sidebar's rooms over the presence connection, and direct messages from
// the inbox (dm.js). The open room or conversation never counts up.

import { api } from './api.js';
import { state } from './state.js';
import { h } from './ui/dom.js';
import { updateTitle } from './ui/status.js';

/** Rooms one `watch_unread` may name (the hub's limit). */
const MAX_WATCHED = 500;

/** "3", "99+", or "12+" when the hub stopped counting. */
export function fmtUnread(n, atLeast) {
  if (n > 99) return '99+';
  return atLeast ? `${n}+` : String(n);
}

/**
 * A count badge whose text reads as part of its link's name: "general, 3 unread"
 * (the comma and the word are for screen readers only).
 */
export function unreadBadge(text) {
  return h('span', { class: 'badge unread-badge' },
    h('span', { class: 'visually-hidden', text: ', ' }),
    text,
    h('span', { class: 'visually-hidden', text: ' unread' }));
}

/** The room's count now (0 for the room on screen). */
export function roomUnread(id) {
  if (state.view && state.view.kind === 'room' && state.view.id === id) return 0;
  return state.roomUnread.get(id) || 0;
}

// Render callbacks, set by the sidebar's modules (no import cycle).
let render = () => {};
export function onUnreadChange(fn) { render = fn; }

function changed() {
  render();
  updateTitle();
}

let loading = null;
let again = false;

/** Asks the hub for every count (one request at a time; a call meanwhile asks once more after). */
export async function loadUnread() {
  if (!state.token) return;
  if (loading) { again = true; return; }
  loading = api('GET', '/unread', undefined, { no401: true });
  const res = await loading;
  loading = null;
  if (res.ok && res.data && typeof res.data === 'object') apply(res.data);
  if (again) { again = false; loadUnread(); }
}

// Rooms the hub counts for me (visited before); with the rooms visited in
// this session, the only ones whose `activity` counts (a room never opened
// has no count at the hub either).
const listed = new Set();

function apply(data) {
  const more = data.at_least && typeof data.at_least === 'object' ? data.at_least : {};
  const moreRooms = new Set(Array.isArray(more.rooms) ? more.rooms.map(String) : []);
  const moreDms = new Set(Array.isArray(more.dms) ? more.dms.map(String) : []);
  const rooms = data.rooms && typeof data.rooms === 'object' ? data.rooms : {};
  state.roomUnread.clear();
  state.roomUnreadMore.clear();
  listed.clear();
  for (const room of Object.keys(rooms)) listed.add(room);
  for (const [room, n] of Object.entries(rooms)) {
    if (!(Number(n) > 0) || (state.view && state.view.kind === 'room' && state.view.id === room)) continue;
    state.roomUnread.set(room, Number(n));
    if (moreRooms.has(room)) state.roomUnreadMore.add(room);
  }
  const dms = data.dms && typeof data.dms === 'object' ? data.dms : {};
  for (const [peer, n] of Object.entries(dms)) {
    const open = state.view && state.view.kind === 'dm' && state.view.peer === peer;
    if (Number(n) > 0 && !open) {
      state.dmUnread.set(peer, Number(n));
      if (moreDms.has(peer)) state.dmUnreadMore.add(peer);
      else state.dmUnreadMore.delete(peer);
      if (!state.dmPeers.includes(peer)) state.dmPeers.push(peer);
    } else {
      state.dmUnread.delete(peer);
      state.dmUnreadMore.delete(peer);
    }
  }
  changed();
}

// The newest message id counted per room, so a frame seen twice counts once.
const counted = new Map();

/** `activity`: a message was saved in a room I watch. */
export function onActivity(f) {
  const room = f.room !== undefined && f.room !== null ? String(f.room) : null;
  const id = Number(f.id);
  if (!room || isNaN(id) || !state.rooms.has(room)) return;
  if (!listed.has(room) && !state.roomStates.has(room)) return;
  if (state.me && String(f.user) === state.me.sub) return;
  if (state.view && state.view.kind === 'room' && state.view.id === room) return;
  if ((counted.get(room) || 0) >= id) return;
  counted.set(room, id);
  state.roomUnread.set(room, (state.roomUnread.get(room) || 0) + 1);
  changed();
}

let readTimer = null;

/** `read` on my own channel: a read position moved on one of my devices. */
export function onReadElsewhere() {
  clearTimeout(readTimer);
  readTimer = setTimeout(loadUnread, 150);
}

/** The room is on screen: its count is gone (the read goes out from reads.js). */
export function clearRoomUnread(id) {
  if (!state.roomUnread.has(id)) return;
  state.roomUnread.delete(id);
  state.roomUnreadMore.delete(id);
  updateTitle();
}

let watched = '';

/** Tells the presence connection which rooms the sidebar shows (when that changed, or `force` after a reconnect). */
export function watchRooms(force) {
  const conn = state.presence;
  if (!conn || !conn.open) return;
  const ids = Array.from(state.rooms.keys()).sort().slice(0, MAX_WATCHED);
  const key = ids.join('\n');
  if (!force && key === watched) return;
  if (conn.send({ type: 'watch_unread', rooms: ids })) watched = key;
}
