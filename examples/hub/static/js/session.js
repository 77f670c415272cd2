// A signed-in session: start it, end it (sign out), and notice that the token
// was refused.

import { api } from './api.js';
import { signinError } from './auth.js';
import { openRoom } from './chat.js';
import { openDm, renderDmList, startInbox } from './dm.js';
import { renderPresence, startPresence } from './presence.js';
import { loadRooms, renderRoomList } from './rooms.js';
import { clearSession, state } from './state.js';
import { load, loadJson, save, STORAGE } from './storage.js';
import { renderEmptyView } from './views.js';
import { hashHue, initials } from './ui/avatar.js';
import { $ } from './ui/dom.js';
import { closePopovers } from './ui/popovers.js';
import { setConnStatus, updateTitle } from './ui/status.js';

export function sessionExpired() {
  if (!state.token) return;
  signOut();
  signinError('Your session has expired or the token was refused. Please sign in again.');
}

export function signOut() {
  for (const c of [state.chat, state.presence, state.inbox, state.dm && state.dm.conn]) if (c) c.stop();
  clearInterval(state.roomsTimer);
  clearSession();
  setConnStatus('idle');
  save(STORAGE.token, undefined);
  $('#app').hidden = true;
  $('#signin-screen').hidden = false;
  $('#thread-panel').hidden = true;
  $('#search-panel').hidden = true;
  $('#toasts').replaceChildren();
  closePopovers();
  updateTitle();
  $('#guest-name').focus();
}

export function startSession() {
  $('#signin-screen').hidden = true;
  $('#app').hidden = false;
  $('#me-name').textContent = state.me.username;
  $('#me-name').title = `id: ${state.me.sub}${state.isAdmin ? ' · admin' : ''}`;
  const av = $('#me-avatar');
  av.textContent = initials(state.me.username);
  av.style.setProperty('--hue', hashHue(state.me.username));

  state.users.set(state.me.sub, { id: state.me.sub, username: state.me.username, status: 'offline' });
  state.myStatus = load(STORAGE.status, 'online');
  if (!['online', 'away', 'busy'].includes(state.myStatus)) state.myStatus = 'online';
  $('#status-select').value = state.myStatus;
  $('#status-select').dataset.status = state.myStatus;

  for (const id of loadJson(STORAGE.rooms(state.me.sub), [])) {
    if (typeof id === 'string' && !state.rooms.has(id)) state.rooms.set(id, { id, name: id, adhoc: true });
  }
  const dms = loadJson(STORAGE.dms(state.me.sub), { peers: [], names: {} });
  state.dmPeers = Array.isArray(dms.peers) ? dms.peers.filter((x) => typeof x === 'string') : [];
  state.dmNames = dms.names && typeof dms.names === 'object' ? dms.names : {};

  renderRoomList();
  renderDmList();
  renderPresence();
  renderEmptyView();
  loadRooms();
  clearInterval(state.roomsTimer);
  state.roomsTimer = setInterval(loadRooms, 20000);
  startPresence();
  startInbox();

  const last = loadJson(STORAGE.last(state.me.sub), null);
  if (last && last.kind === 'room' && typeof last.id === 'string') openRoom(last.id);
  else if (last && last.kind === 'dm' && typeof last.peer === 'string') openDm(last.peer);
}

export async function probeToken() {
  const res = await api('GET', '/rooms');
  if (res.status === 401) sessionExpired();
}
