// Moderation: who may moderate, the user menu (DM, kick, mute, ban, unban,
// each asked about first), the hub's notices about it in words people read,
// and a muted user's composer (disabled, with the reason and the time left).

import { setComposerEnabled } from './composer.js';
import { openDm } from './dm.js';
import { isMe, labelOf } from './identity.js';
import { roomName } from './rooms.js';
import { currentRoom, roomState, state } from './state.js';
import { avatar } from './ui/avatar.js';
import { confirmDialog } from './ui/dialogs.js';
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
    items.push(act('kick', 'Kick…', name));
    if (!muted && !banned) items.push(act('mute', 'Mute…', name));
    if (!banned) items.push(act('ban', 'Ban…', name));
    if (banned || muted) items.push(act('unban', 'Unban', name));
  }
  if (items.length === 1 && sub === state.me.sub) items.push(h('div', { class: 'menu-note', text: 'That is you.' }));
  menu.replaceChildren(...items);
  placePopover(menu, anchor);
  const r = menu.getBoundingClientRect();
  const a = anchor.getBoundingClientRect();
  menu.style.left = `${Math.min(window.innerWidth - r.width - 8, Math.max(8, a.left))}px`;
  menu.style.top = `${a.bottom + r.height + 8 < window.innerHeight ? a.bottom + 4 : Math.max(8, a.top - r.height - 4)}px`;
  // Keyboard users land in the menu.
  const first = menu.querySelector('button');
  if (first) first.focus();
}

/** "10 minutes", "1 hour", "90 seconds": a duration in seconds as people say it. */
export function fmtDuration(seconds) {
  const s = Math.round(Number(seconds));
  if (!Number.isFinite(s) || s <= 0) return '';
  const units = [[604800, 'week'], [86400, 'day'], [3600, 'hour'], [60, 'minute'], [1, 'second']];
  for (const [size, unit] of units) {
    if (s >= size && s % size === 0) {
      const n = s / size;
      return `${n} ${unit}${n === 1 ? '' : 's'}`;
    }
  }
  return `${s} seconds`;
}

/** Time left, rounded up to what matters: "9 minutes", "1 hour 5 minutes", "30 seconds". */
export function fmtLeft(ms) {
  const s = Math.max(1, Math.ceil(ms / 1000));
  if (s < 60) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.ceil(s / 60);
  if (m < 60) return `${m} minute${m === 1 ? '' : 's'}`;
  const hrs = Math.floor(m / 60);
  const rest = m % 60;
  return `${hrs} hour${hrs === 1 ? '' : 's'}${rest ? ` ${rest} minute${rest === 1 ? '' : 's'}` : ''}`;
}

const MUTE_CHOICES = [[300, '5 minutes'], [600, '10 minutes'], [3600, '1 hour'], [86400, '1 day'], [604800, '1 week']];
const BAN_CHOICES = [[3600, '1 hour'], [86400, '1 day'], [604800, '1 week'], ['forever', 'Until unbanned']];

async function moderate(action, sub, name) {
  const room = state.view && state.view.kind === 'room' ? roomName(state.view.id) : '';
  let duration = null;
  if (action === 'kick') {
    const ok = await confirmDialog({
      title: `Kick ${name}?`,
      text: `${name} is removed from #${room} now. They can come back unless you ban them.`,
      confirm: 'Kick',
    });
    if (!ok) return;
  } else if (action === 'mute') {
    const chosen = await confirmDialog({
      title: `Mute ${name}?`,
      text: `${name} stays in #${room} and reads it, but cannot post, react or type there until the mute ends.`,
      confirm: 'Mute', choices: MUTE_CHOICES, choice: 600, choiceLabel: 'Mute for',
    });
    if (chosen === false) return;
    duration = Number(chosen);
  } else if (action === 'ban') {
    const chosen = await confirmDialog({
      title: `Ban ${name}?`,
      text: `${name} is removed from #${room} and cannot come back until the ban ends or you unban them.`,
      confirm: 'Ban', choices: BAN_CHOICES, choice: 'forever', choiceLabel: 'Ban for',
    });
    if (chosen === false) return;
    if (chosen !== 'forever') duration = Number(chosen);
  }
  if (!state.chat) return;
  const frame = { type: action, user: sub };
  if (duration) frame.duration_s = duration;
  state.chat.send(frame);
}

/** The length a ban or mute notice was given for, in seconds (the hub says it in its text). */
function noticeSeconds(m) {
  if (typeof m.duration_s === 'number') return m.duration_s;
  const mt = / for (\d+)s\b/.exec(String(m.message || ''));
  if (mt) return Number(mt[1]);
  // A mute without a length lasts the hub's default, 10 minutes.
  return m.action === 'mute' ? 600 : null;
}

/** A moderation notice with display names and a readable length. */
export function moderationText(m) {
  if (m.user === undefined || m.by === undefined) return String(m.message || '');
  const who = labelOf(String(m.user));
  const by = labelOf(String(m.by));
  const seconds = noticeSeconds(m);
  const forHowLong = seconds ? ` for ${fmtDuration(seconds)}` : '';
  switch (m.action) {
    case 'kick': return `${who} was kicked by ${by}`;
    case 'ban': return `${who} was banned by ${by}${forHowLong}`;
    case 'mute': return `${who} was muted by ${by}${forHowLong}`;
    case 'unban': return `${who} was unbanned by ${by}`;
    default: return String(m.message || '');
  }
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
  // My own mute: until when, from the newest notice about me (history pages come in any order).
  if (isMe(who) && (m.action === 'mute' || m.action === 'unban') && !(m.id < (r.muteNoticeId ?? -1))) {
    r.muteNoticeId = m.id;
    const at = Date.parse(m.timestamp);
    const seconds = noticeSeconds(m);
    r.mutedUntil = m.action === 'mute' && !isNaN(at) && seconds ? at + seconds * 1000 : 0;
    r.muteUnknown = false;
  }
}

/**
 * The hub refused a message with `muted`. Its error frame says only
 * "you are muted in this room", not until when: with no notice of the
 * mute in the history we hold, the composer is disabled for a minute and
 * then tried again.
 */
export function onMutedError(r) {
  if (r.mutedUntil > Date.now()) return;
  r.mutedUntil = Date.now() + 60000;
  r.muteUnknown = true;
  applyMute(r);
}

let muteTimer = null;

/** Disable the open room's composer while I am muted there, with the reason and the time left. */
export function applyMute(r) {
  clearTimeout(muteTimer);
  if (currentRoom() !== r) return;
  const left = (r.mutedUntil || 0) - Date.now();
  if (left > 0) {
    r.muteApplied = true;
    const text = r.muteUnknown
      ? 'You are muted in this room (the hub did not say for how long): your messages are refused. Trying again in a minute.'
      : `You are muted in this room for ${fmtLeft(left)} more: your messages are refused until then.`;
    setComposerEnabled(false, r.muteUnknown ? 'You are muted in this room' : `Muted: ${fmtLeft(left)} left`);
    showNotice(text, 'muted');
    // Count down once a second in the last minute, every 15 seconds before.
    muteTimer = setTimeout(() => applyMute(r), left < 61000 ? 1000 : Math.min(15000, left));
  } else if (r.muteApplied) {
    r.muteApplied = false;
    r.muteUnknown = false;
    if ($('#notice').dataset.kind === 'muted') showNotice('');
    if (!r.forbidden && $('#connection-status').dataset.state !== 'kicked') setComposerEnabled(true, `Message #${roomName(r.id)}`);
  }
}

/** Tell me when a moderation notice is about me. */
export function announceModeration(r, m) {
  if (m.type !== 'system' || !m.action || m.user === undefined || !isMe(m.user)) return;
  const what = { kick: 'kicked from', ban: 'banned from', mute: 'muted in', unban: 'unbanned in' }[m.action] || `${m.action} in`;
  const seconds = m.action === 'mute' || m.action === 'ban' ? noticeSeconds(m) : null;
  toast(`You were ${what} #${roomName(r.id)}${seconds ? ` for ${fmtDuration(seconds)}` : ''}.`, { kind: m.action === 'unban' ? 'info' : 'error' });
  applyMute(r);
}
