// Read receipts: telling the hub what I have read, and "Seen by" under
// messages.

import { nameOf, toSub } from './identity.js';
import { catchUpMentions, lastSeen, noteSeen } from './mentions.js';
import { firstUnreadAfter, mainBox, nearBottom, renderRoomMessages } from './message-list.js';
import { currentRoom, state } from './state.js';
import { avatar } from './ui/avatar.js';
import { $, $$, h } from './ui/dom.js';

export function renderSeenBy(r) {
  if (currentRoom() !== r) return;
  const box = mainBox();
  const stick = nearBottom(box);
  for (const n of $$('.seen-by', box)) n.remove();
  const ids = $$('.message[data-id]', box).map((n) => Number(n.dataset.id)).sort((a, b) => a - b);
  if (!ids.length) return;
  const groups = new Map();
  for (const [sub, readId] of Object.entries(r.reads)) {
    if (sub === state.me.sub || isNaN(readId)) continue;
    // The newest rendered message the reader has reached.
    let target = null;
    for (const id of ids) {
      if (id <= readId) target = id;
      else break;
    }
    if (target === null) continue;
    if (!groups.has(target)) groups.set(target, []);
    groups.get(target).push(sub);
  }
  for (const [id, subs] of groups) {
    const msg = $(`.message[data-id="${id}"]`, box);
    if (!msg) continue;
    const names = subs.map(nameOf);
    const seen = h('div', { class: 'seen-by', title: `Seen by ${names.join(', ')}`, dataset: { users: subs.join(',') } },
      h('span', { class: 'seen-label', text: 'Seen by' }),
      ...subs.slice(0, 5).map((s) => avatar(nameOf(s), 'avatar-xs')),
      h('span', { class: 'seen-names', text: names.length > 3 ? `${names.slice(0, 3).join(', ')} +${names.length - 3}` : names.join(', ') }));
    const bodyEl = $('.msg-body', msg);
    (bodyEl || msg).append(seen);
  }
  if (stick) box.scrollTop = box.scrollHeight;
}

// Read receipts: only while the room is on screen.
let readTimer = null;

function sendRead(r) {
  if (currentRoom() !== r || document.visibilityState !== 'visible' || !state.chat || !state.chat.open) return;
  let last = null;
  for (const id of r.messages.keys()) if (last === null || id > last) last = id;
  if (last !== null) noteSeen(r.id, last);
  if (last === null || last <= r.myRead) return;
  if (state.chat.send({ type: 'read', message_id: last })) r.myRead = last;
}

export function scheduleRead(r) {
  clearTimeout(readTimer);
  readTimer = setTimeout(() => sendRead(r), 400);
}

/** The page is going away: what is on screen now counts as read. */
export function flushRead() {
  clearTimeout(readTimer);
  const r = currentRoom();
  if (r) sendRead(r);
}

/** `reads`: where everyone is, sent on join. */
export function onReads(r, f) {
  r.reads = {};
  const reads = f.reads && typeof f.reads === 'object' ? f.reads : {};
  for (const [who, id] of Object.entries(reads)) r.reads[toSub(who)] = Number(id);
  const hubSays = r.reads[state.me.sub];
  if (hubSays !== undefined) r.myRead = Math.max(r.myRead, hubSays);
  // Where I left off: the hub's receipt, or what this browser last showed me if that is further.
  const local = lastSeen(r.id);
  const known = [hubSays, local].filter((x) => x !== undefined && x !== null && !isNaN(x));
  const mine = known.length ? Math.max(...known) : undefined;
  // The first `reads` of a visit says where I left off: mark what came since.
  if (!r.unreadDecided && currentRoom() === r) {
    r.unreadDecided = true;
    r.unreadFrom = mine === undefined || isNaN(mine) ? null : firstUnreadAfter(r, mine);
    r.unreadShown = false;
    if (r.unreadFrom !== null) renderRoomMessages(r);
  }
  renderSeenBy(r);
  scheduleRead(r);
  catchUpMentions();
}

/** `read`: one reader moved on. */
export function onRead(r, f) {
  const who = toSub(f.user);
  const id = Number(f.message_id);
  if (who === undefined || isNaN(id)) return;
  if (who === state.me.sub) { r.myRead = Math.max(r.myRead, id); return; }
  r.reads[who] = id;
  renderSeenBy(r);
}
