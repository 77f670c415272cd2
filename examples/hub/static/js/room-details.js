// The room details dialog: rename, privacy, members, delete (owner and admins).

import { api, enc, errText } from './api.js';
import { labelOf, nameOf } from './identity.js';
import { peoplePicker } from './people-picker.js';
import { forgetRoom, leaveRoom, loadRooms, normRoom, renderRoomList } from './rooms.js';
import { state } from './state.js';
import { renderHeader } from './views.js';
import { avatar } from './ui/avatar.js';
import { hideDialog, showDialog } from './ui/dialogs.js';
import { $, h } from './ui/dom.js';

// Room details: owner and admins rename, change privacy, manage members, delete.

let roomDialogId = null;

async function openRoomDialog() {
  if (!state.view || state.view.kind !== 'room') return;
  const id = state.view.id;
  roomDialogId = id;
  const res = await api('GET', `/rooms/${enc(id)}`);
  if (roomDialogId !== id) return;
  let room = res.ok ? normRoom(res.data) : null;
  if (room) state.rooms.set(id, Object.assign(state.rooms.get(id) || {}, room, { adhoc: false }));
  renderRoomDialog(id, room, res);
  const d = $('#room-dialog');
  if (!d.open) showDialog(d);
}

function renderRoomDialog(id, room, res) {
  const canEdit = !!room && (state.isAdmin || room.owner === state.me.sub);
  $('#room-dialog-title').textContent = `#${room ? room.name : id}`;
  $('#room-dialog-error').textContent = '';
  let meta = `id ${id}`;
  if (room && room.owner) meta += ` · owner ${nameOf(room.owner)}`;
  if (!room) meta += res && res.status === 404 ? ' · never created: public, no owner' : ` · details unavailable (${errText(res)})`;
  if (room && !canEdit) meta += ' · only the owner or an admin can change it';
  $('#room-dialog-meta').textContent = meta;
  $('#room-edit-name').value = room ? room.name : id;
  $('#room-edit-private').checked = !!(room && room.private);
  for (const sel of ['#room-edit-name', '#room-edit-private', '#room-add-member', '#room-add-member-btn', '#room-save', '#room-delete']) {
    $(sel).disabled = !canEdit;
  }
  $('#room-delete').hidden = !canEdit;
  $('#room-save').hidden = !canEdit;
  const members = room ? room.members : [];
  const ul = $('#room-members');
  ul.replaceChildren(...members.map((sub) => h('li', { class: 'member', dataset: { member: sub } },
    avatar(nameOf(sub), 'avatar-xs'),
    h('span', { text: labelOf(sub), title: sub }),
    room.owner === sub ? h('span', { class: 'member-owner', text: 'owner' }) : null,
    canEdit ? h('button', {
      type: 'button', class: 'member-x', title: `Remove ${nameOf(sub)}`, 'aria-label': `Remove ${nameOf(sub)}`, text: '✕',
      on: { click: () => changeMembers(id, [], [sub]) },
    }) : null)));
  if (!members.length) ul.append(h('li', { class: 'member-empty', text: room && room.private ? 'No members listed.' : 'Public room: anyone may join.' }));
}

async function changeMembers(id, add, remove) {
  const res = await api('POST', `/rooms/${enc(id)}/members`, { add, remove });
  if (!res.ok) {
    $('#room-dialog-error').textContent = `Could not change members: ${errText(res)}`;
    return;
  }
  await openRoomDialog();
}

async function saveRoomDialog(e) {
  e.preventDefault();
  const id = roomDialogId;
  if (!id) return;
  const name = $('#room-edit-name').value.trim();
  const res = await api('PATCH', `/rooms/${enc(id)}`, { name: name || undefined, private: $('#room-edit-private').checked });
  if (!res.ok) {
    $('#room-dialog-error').textContent = `Could not save: ${errText(res)}`;
    return;
  }
  const room = normRoom(res.data);
  if (room) state.rooms.set(id, Object.assign(state.rooms.get(id) || {}, room, { adhoc: false }));
  else if (state.rooms.get(id)) Object.assign(state.rooms.get(id), { name: name || id, private: $('#room-edit-private').checked });
  hideDialog($('#room-dialog'));
  renderRoomList();
  if (state.view && state.view.kind === 'room' && state.view.id === id) renderHeader();
  loadRooms();
}

async function deleteRoom() {
  const id = roomDialogId;
  if (!id) return;
  const btn = $('#room-delete');
  if (btn.dataset.confirm !== id) {
    // Two clicks instead of a blocking confirm() dialog.
    btn.dataset.confirm = id;
    btn.textContent = 'Click again to delete';
    setTimeout(() => { btn.dataset.confirm = ''; btn.textContent = 'Delete room'; }, 4000);
    return;
  }
  btn.dataset.confirm = '';
  btn.textContent = 'Delete room';
  const res = await api('DELETE', `/rooms/${enc(id)}`);
  if (!res.ok) {
    $('#room-dialog-error').textContent = `Could not delete: ${errText(res)}`;
    return;
  }
  hideDialog($('#room-dialog'));
  state.rooms.delete(id);
  forgetRoom(id);
  loadRooms();
}

/** The room details button and dialog. */
export function wireRoomDetails() {
  $('#room-info').addEventListener('click', openRoomDialog);
  $('#room-form').addEventListener('submit', saveRoomDialog);
  $('#room-dialog-close').addEventListener('click', () => hideDialog($('#room-dialog')));
  $('#room-delete').addEventListener('click', deleteRoom);
  $('#room-leave').addEventListener('click', () => {
    const id = roomDialogId;
    hideDialog($('#room-dialog'));
    if (id) leaveRoom(id);
  });
  const picker = peoplePicker($('#room-add-member'), {
    onPick: (p) => { if (roomDialogId) changeMembers(roomDialogId, [p.id], []); },
    exclude: () => new Set(Array.from(document.querySelectorAll('#room-members [data-member]'), (n) => n.dataset.member)),
    status: (text) => { $('#room-dialog-error').textContent = text; },
  });
  $('#room-add-member-btn').addEventListener('click', () => picker.pickTyped());
}
