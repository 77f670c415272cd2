// Moderation: who may moderate, the user menu (DM, kick, mute, ban, unban) and
// the hub's notices about it.

import { openDm } from './dm.js';
import { isMe } from './identity.js';
import { roomName } from './rooms.js';
import { roomState, state } from './state.js';
import { avatar } from './ui/avatar.js';
import { $, h } from './ui/dom.js';
import { closePopovers, placePopover } from './ui/popovers.js';
import { showNotice } from './ui/status.js';
import { toast } from './ui/toasts.js';

export function isMod(roomId) {
  if (state.isAdmin) return true;
  const room = state.rooms.get(roomId);
  return !!room && !!room.owner && room.owner === state.me.sub;
}

export function openUserMenu(anchor, sub, name) {
  closePopovers();
  const menu = $('#user-menu');
  const items = [h('div', { class: 'menu-head' }, avatar(name, 'avatar-sm'),
    h('div', {}, h('div', { class: 'menu-name', text: name }), h('div', { class: 'menu-sub', text: sub || '' })))];
  if (sub && sub !== state.me.sub) {
    items.push(h('button', { type: 'button', class: 'menu-item menu-dm', text: 'Send direct message', on: { click: () => { closePopovers(); openDm(sub); } } }));
  }
  const room = state.view && state.view.kind === 'room' ? state.view.id : null;
  if (room && sub && sub !== state.me.sub && isMod(room)) {
    items.push(h('div', { class: 'menu-sep' }));
    const act = (action, label, extra) => h('button', {
      type: 'button', class: `menu-item menu-${action}${action === 'ban' || action === 'kick' ? ' danger' : ''}`,
      dataset: { action }, text: label,
      on: { click: () => { closePopovers(); moderate(action, sub, extra); } },
    });
    // Offer what fits what we saw happen in this room: no "Ban" for the banned, "Unban" only for them.
    const r = roomState(room);
    const banned = r.banned.has(sub);
    const muted = r.muted.has(sub);
    items.push(act('kick', 'Kick'));
    if (!muted && !banned) items.push(act('mute', 'Mute', 600));
    if (!banned) items.push(act('ban', 'Ban'));
    if (banned || muted) items.push(act('unban', 'Unban'));
  }
  if (items.length === 1 && sub === state.me.sub) items.push(h('div', { class: 'menu-note', text: 'That is you.' }));
  menu.replaceChildren(...items);
  placePopover(menu, anchor);
  const r = menu.getBoundingClientRect();
  const a = anchor.getBoundingClientRect();
  menu.style.left = `${Math.min(window.innerWidth - r.width - 8, Math.max(8, a.left))}px`;
  menu.style.top = `${a.bottom + r.height + 8 < window.innerHeight ? a.bottom + 4 : Math.max(8, a.top - r.height - 4)}px`;
}

function moderate(action, sub, duration) {
  if (!state.chat) return;
  const frame = { type: action, user: sub };
  if (duration) frame.duration_s = duration;
  state.chat.send(frame);
}

/** Remember who was banned or muted here, from the hub's notices, for the user menu. */
export function noteModeration(r, m) {
  if (m.type !== 'system' || !m.action || m.user === undefined) return;
  const who = String(m.user);
  if (m.action === 'ban') r.banned.add(who);
  else if (m.action === 'mute') r.muted.add(who);
  else if (m.action === 'unban') {
    r.banned.delete(who);
    r.muted.delete(who);
  }
}

/** Tell me when a moderation notice is about me. */
export function announceModeration(r, m) {
  if (m.type !== 'system' || !m.action || m.user === undefined || !isMe(m.user)) return;
  const what = { kick: 'kicked from', ban: 'banned from', mute: 'muted in', unban: 'unbanned in' }[m.action] || `${m.action} in`;
  toast(`You were ${what} #${roomName(r.id)}.`, { kind: m.action === 'unban' ? 'info' : 'error' });
  if (m.action === 'mute') showNotice('You are muted in this room: your messages will be refused.', 'warn');
  if (m.action === 'unban') showNotice('');
}
