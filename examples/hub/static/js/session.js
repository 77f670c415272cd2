// A signed-in session: start it, end it (sign out), and notice that the token
// was refused.

import { api } from './api.js';
import { signinError } from './auth.js';
import { openRoom } from './chat.js';
import { resetComposer } from './composer.js';
import { openDm, renderDmList, startInbox } from './dm.js';
import { renderPresence, startPresence } from './presence.js';
import { loadRooms, renderRoomList } from './rooms.js';
import { forgetGuest, keepGuest, renderSavedGuests, renewGuestToken } from './auth.js';
import { loadMentionBadges } from './mentions.js';
import { clearSession, state } from './state.js';
import { load, loadJson, save, STORAGE } from './storage.js';
import { renderEmptyView } from './views.js';
import { hashHue, initials } from './ui/avatar.js';
import { showDialog } from './ui/dialogs.js';
import { $ } from './ui/dom.js';
import { closePopovers } from './ui/popovers.js';
import { setConnStatus, updateTitle } from './ui/status.js';
import { onUnreadChange } from './unread.js';

export function sessionExpired() {
  if (!state.token) return;
  // A refused token is no identity to come back to.
  signOut({ forget: true });
  signinError('Your session has expired or the token was refused. Please sign in again.');
}

/** The sign-out button: sign out (keeping a guest's identity here) or forget me. */
export function askSignOut() {
  const d = $('#signout-dialog');
  d.returnValue = 'cancel';
  const done = () => {
    d.removeEventListener('close', done);
    if (d.returnValue === 'signout') signOut();
    else if (d.returnValue === 'forget') signOut({ forget: true });
    else $('#sign-out').focus();
  };
  d.addEventListener('close', done);
  showDialog(d);
  $('#signout-ok').focus();
}

export function signOut(opts = {}) {
  if (state.me && state.token) {
    if (opts.forget) forgetGuest(state.me.sub);
    else keepGuest(state.token, state.me);
  }
  for (const c of [state.chat, state.presence, state.inbox, state.dm && state.dm.conn]) if (c) c.stop();
  clearInterval(state.roomsTimer);
  clearInterval(state.renewTimer);
  resetComposer();
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
  renderSavedGuests();
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
  loadMentionBadges();

  // Unread counts come with the presence connection (unread.js).
  onUnreadChange(() => { renderRoomList(); renderDmList(); });
  renderRoomList();
  renderDmList();
  renderPresence();
  renderEmptyView();
  loadRooms();
  clearInterval(state.roomsTimer);
  state.roomsTimer = setInterval(loadRooms, 20000);
  renewGuestToken();
  clearInterval(state.renewTimer);
  state.renewTimer = setInterval(() => renewGuestToken(12 * 3600 * 1000), 3600 * 1000);
  startPresence();
  startInbox();

  const last = loadJson(STORAGE.last(state.me.sub), null);
  if (last && last.kind === 'room' && typeof last.id === 'string') openRoom(last.id);
  else if (last && last.kind === 'dm' && typeof last.peer === 'string') openDm(last.peer);
  // Not the page body: the composer (focused by the view just opened) or the rooms.
  else ($('#room-list .nav-btn') || $('#room-input')).focus();
}

export async function probeToken() {
  const res = await api('GET', '/rooms');
  if (res.status === 401) sessionExpired();
}
