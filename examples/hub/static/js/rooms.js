// The room list: the rooms REST API, rooms joined by name, creating a room.

import { api, errText } from './api.js';
import { openRoom, sendLeave } from './chat.js';
import { saveMentionBadges } from './mentions.js';
import { peoplePicker, renderChips } from './people-picker.js';
import { state } from './state.js';
import { loadJson, save, STORAGE } from './storage.js';
import { clearRoomUnread, fmtUnread, roomUnread, unreadBadge, watchRooms } from './unread.js';
import { closeView, renderEmptyView, renderHeader } from './views.js';
import { hideDialog, showDialog } from './ui/dialogs.js';
import { $, h } from './ui/dom.js';
import { icon } from './ui/icons.js';

export function normRoom(x) {
  if (typeof x === 'string') return { id: x, name: x };
  if (!x || typeof x !== 'object') return null;
  const id = x.id !== undefined ? String(x.id) : (x.room_id !== undefined ? String(x.room_id) : null);
  if (!id) return null;
  return {
    id,
    name: x.name ? String(x.name) : id,
    private: !!x.private,
    owner: x.owner !== undefined && x.owner !== null ? String(x.owner) : null,
    members: Array.isArray(x.members) ? x.members.map(String) : [],
  };
}

export async function loadRooms() {
  if (!state.token) return;
  const res = await api('GET', '/rooms');
  if (!res.ok || !state.token) return;
  let list = res.data;
  if (list && !Array.isArray(list)) list = list.rooms || list.items || [];
  if (!Array.isArray(list)) return;
  const seen = new Set();
  const left = leftRooms();
  for (const raw of list) {
    const room = normRoom(raw);
    if (!room) continue;
    // Rooms I left stay out of the list until I join them again.
    if (left.has(room.id) && !(state.view && state.view.kind === 'room' && state.view.id === room.id)) {
      state.rooms.delete(room.id);
      continue;
    }
    seen.add(room.id);
    state.rooms.set(room.id, room);
  }
  // Server rooms that vanished (deleted or we were removed) drop out unless we joined them by hand.
  const adhoc = new Set(loadJson(STORAGE.rooms(state.me.sub), []));
  for (const [id, room] of state.rooms) {
    if (!room.adhoc && !seen.has(id)) {
      if (adhoc.has(id)) state.rooms.set(id, { id, name: id, adhoc: true });
      else if (!(state.view && state.view.kind === 'room' && state.view.id === id)) state.rooms.delete(id);
    }
  }
  renderRoomList();
  if (state.view && state.view.kind === 'room') renderHeader();
}

/** Rooms I left (ids), kept per user on this browser. */
function leftRooms() {
  const list = loadJson(STORAGE.left(state.me.sub), []);
  return new Set(Array.isArray(list) ? list.map(String) : []);
}

function setLeft(id, left) {
  const set = leftRooms();
  if (left) set.add(id);
  else set.delete(id);
  save(STORAGE.left(state.me.sub), Array.from(set));
}

/** Leave a room: the hub ends my membership (one "left" line), and the room is out of the list and the view until I join it again. */
export function leaveRoom(id) {
  sendLeave(id);
  setLeft(id, true);
  // Not where the next visit opens either.
  const last = loadJson(STORAGE.last(state.me.sub), null);
  if (last && last.kind === 'room' && last.id === id) save(STORAGE.last(state.me.sub), undefined);
  const room = state.rooms.get(id);
  if (room && !room.adhoc) state.rooms.delete(id);
  forgetRoom(id);
}

export function rememberAdhocRoom(id) {
  setLeft(id, false);
  if (!state.rooms.has(id)) state.rooms.set(id, { id, name: id, adhoc: true });
  const list = loadJson(STORAGE.rooms(state.me.sub), []);
  if (!list.includes(id)) {
    list.push(id);
    save(STORAGE.rooms(state.me.sub), list);
  }
}

export function forgetRoom(id) {
  const list = loadJson(STORAGE.rooms(state.me.sub), []).filter((x) => x !== id);
  save(STORAGE.rooms(state.me.sub), list);
  const room = state.rooms.get(id);
  if (room && room.adhoc) state.rooms.delete(id);
  if (state.view && state.view.kind === 'room' && state.view.id === id) {
    closeView();
    renderEmptyView();
  }
  renderRoomList();
}

export const roomName = (id) => (state.rooms.get(id) && state.rooms.get(id).name) || id;

/** Tooltip of a room in the sidebar: its name, and its id when that differs. */
function roomTitle(room) {
  return room.name === room.id ? room.id : `${room.name} (${room.id})`;
}

export function renderRoomList() {
  saveMentionBadges();
  const ul = $('#room-list');
  const rooms = Array.from(state.rooms.values()).sort((a, b) => a.name.localeCompare(b.name));
  ul.replaceChildren(...rooms.map((room) => {
    const active = state.view && state.view.kind === 'room' && state.view.id === room.id;
    const badge = state.mentionBadges.get(room.id);
    if (active) clearRoomUnread(room.id);
    const unread = roomUnread(room.id);
    const unreadText = unread ? fmtUnread(unread, state.roomUnreadMore.has(room.id)) : '';
    const li = h('li', { class: `nav-item${active ? ' active' : ''}${unread ? ' unread' : ''}`, dataset: { room: room.id } },
      h('button', {
        type: 'button', class: 'nav-btn', title: roomTitle(room),
        on: { click: () => openRoom(room.id) },
      },
      room.private ? h('span', { class: 'nav-icon' }, icon('lock', 14)) : h('span', { class: 'nav-icon', text: '#', 'aria-hidden': 'true' }),
      h('span', { class: 'nav-label', text: room.name }),
      badge ? h('span', { class: 'badge mention-badge', text: `@${badge}`, 'aria-label': `${badge} mention${badge === 1 ? '' : 's'}` }) : null,
      // The count is part of the link's name: "general, 3 unread".
      unread ? unreadBadge(unreadText) : null),
      h('button', {
        type: 'button', class: 'nav-x room-leave', title: 'Leave room', 'aria-label': `Leave ${room.name}`, text: '✕',
        on: { click: (e) => { e.stopPropagation(); leaveRoom(room.id); } },
      }));
    return li;
  }));
  if (!rooms.length) ul.append(h('li', { class: 'nav-empty', text: 'No rooms yet' }));
  watchRooms(false);
}

async function createRoom(e) {
  e.preventDefault();
  const name = $('#new-room-name').value.trim();
  const priv = $('#new-room-private').checked;
  const members = newMembers.map((p) => p.id);
  if (!name) {
    $('#create-room-error').textContent = 'A room needs a name.';
    return;
  }
  if (priv && !members.includes(state.me.sub)) members.push(state.me.sub);
  $('#new-room-submit').disabled = true;
  $('#create-room-error').textContent = '';
  const res = await api('POST', '/rooms', { name, private: priv, members });
  $('#new-room-submit').disabled = false;
  if (!res.ok) {
    $('#create-room-error').textContent = `Could not create the room: ${errText(res)}`;
    return;
  }
  const room = normRoom(res.data) || { id: name, name };
  if (!room.owner) room.owner = state.me.sub;
  state.rooms.set(room.id, room);
  closeCreateDialog();
  renderRoomList();
  openRoom(room.id);
}

// People picked for the room being created.
let newMembers = [];

function renderNewMembers() {
  renderChips($('#new-room-chips'), newMembers, (p) => {
    newMembers = newMembers.filter((x) => x.id !== p.id);
    renderNewMembers();
    $('#new-room-members').focus();
  });
}

function openCreateDialog() {
  $('#create-room-form').reset();
  newMembers = [];
  renderNewMembers();
  $('#create-room-error').textContent = '';
  showDialog($('#create-room-dialog'));
  $('#new-room-name').focus();
}

function closeCreateDialog() {
  hideDialog($('#create-room-dialog'));
}

function joinRoomFromInput(e) {
  e.preventDefault();
  const id = $('#room-input').value.trim().replace(/^#/, '');
  if (!id) return;
  $('#room-input').value = '';
  if (!state.rooms.has(id)) rememberAdhocRoom(id);
  else setLeft(id, false);
  openRoom(id);
}

/** The sidebar's join field and the create-room dialog. */
export function wireRooms() {
  $('#room-join-form').addEventListener('submit', joinRoomFromInput);
  $('#create-room').addEventListener('click', openCreateDialog);
  $('#create-room-form').addEventListener('submit', createRoom);
  $('#new-room-cancel').addEventListener('click', closeCreateDialog);
  peoplePicker($('#new-room-members'), {
    onPick: (p) => {
      if (!newMembers.some((x) => x.id === p.id)) newMembers.push(p);
      $('#create-room-error').textContent = '';
      renderNewMembers();
    },
    exclude: () => new Set([...newMembers.map((p) => p.id), state.me.sub]),
    status: (text) => { $('#create-room-error').textContent = text; },
  });
}
