// channelbox browser client: boot.
//
// Native ES modules, no build step, no network resources other than the hub
// that served this page. Written against the hub's PROTOCOL.md: JWT auth,
// /chat/{room}, /presence, /dm/{user} and the extensions (typing, reactions,
// edit, delete, read receipts, threads, mentions, search, paging, recovery,
// rooms and files APIs).
//
// Every piece of user data reaches the DOM through textContent or attribute
// setters (ui/dom.js's h()), never innerHTML.
//
// The modules, from the ground up:
//   state.js      the store every module imports; storage.js keeps a little of it
//   identity.js   who is who: user ids and display names
//   api.js        HTTP calls with the token; socket.js a WebSocket that reconnects
//   auth.js       the sign-in screen; session.js starts and ends a session
//   chat.js       the open room's connection: join, recovery, frames to features
//   messages.js   a room's messages as data; message-list.js renders them
//   outbox.js     my messages until acked; composer.js, edit.js, typing.js
//   reads.js, threads.js, search.js, files.js, mentions.js, moderation.js
//   presence.js   /presence and the People list; dm.js direct messages
//   rooms.js      the room list; room-details.js its dialog; views.js the main pane
//   ui/           DOM building, icons, avatars, dates, rich text, toasts,
//                 status line, popovers, dialogs: no protocol in there
//
// This module wires the page's chrome, asks each feature module to wire its
// own controls, and signs in with a saved token if there is one.

import { setToken, wireSignIn } from './auth.js';
import { wireComposer } from './composer.js';
import { wireFiles } from './files.js';
import { wireMessageList } from './message-list.js';
import { setMyStatus } from './presence.js';
import { flushRead, scheduleRead } from './reads.js';
import { wireRoomDetails } from './room-details.js';
import { wireRooms } from './rooms.js';
import { wireSearch } from './search.js';
import { askSignOut } from './session.js';
import { currentRoom } from './state.js';
import { load, STORAGE } from './storage.js';
import { closeThread, wireThreads } from './threads.js';
import { renderTyping } from './typing.js';
import { $ } from './ui/dom.js';
import { closePopovers } from './ui/popovers.js';

function wire() {
  wireSignIn();
  $('#sign-out').addEventListener('click', askSignOut);
  // Small screens: the sidebar slides over the page and goes away once something is picked.
  $('#menu-toggle').addEventListener('click', (e) => {
    e.stopPropagation();
    $('#app').classList.toggle('show-sidebar');
  });
  $('.sidebar').addEventListener('click', (e) => {
    if (e.target.closest('.nav-btn')) $('#app').classList.remove('show-sidebar');
  });
  $('.main').addEventListener('click', () => $('#app').classList.remove('show-sidebar'));
  $('#status-select').addEventListener('change', setMyStatus);
  wireRooms();
  wireRoomDetails();
  wireComposer();
  wireFiles();
  wireThreads();
  wireSearch();
  wireMessageList();

  document.addEventListener('click', (e) => {
    if (e.target.closest('.popover, .act-react, .reaction-add, .author, .user-more')) return;
    closePopovers();
  });
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Escape') return;
    const popoverOpen = !$('#emoji-picker').hidden || !$('#user-menu').hidden;
    closePopovers();
    if (popoverOpen || e.target.closest('input, textarea, dialog')) return;
    if (!$('#thread-panel').hidden) closeThread();
    else if (!$('#search-panel').hidden) $('#search-close').click();
  });
  document.addEventListener('visibilitychange', () => {
    const r = currentRoom();
    if (r && document.visibilityState === 'visible') scheduleRead(r);
  });
  window.addEventListener('focus', () => {
    const r = currentRoom();
    if (r) scheduleRead(r);
  });
  window.addEventListener('resize', closePopovers);
  window.addEventListener('pagehide', flushRead);
  // Expire typing indicators.
  setInterval(() => {
    const r = currentRoom();
    if (r && r.typing.size) renderTyping(r);
  }, 1000);
}

function boot() {
  wire();
  const token = load(STORAGE.token, null);
  if (token && setToken(token)) return;
  $('#signin-screen').hidden = false;
  $('#guest-name').focus();
}

// Modules run once the document is parsed; the check is for a page that loads this late.
if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
else boot();
