// Mentions of me: highlighting, sidebar badges (kept across reloads, and
// caught up after time away) and a toast when the room is not on screen.

import { openRoom } from './chat.js';
import { isMine } from './identity.js';
import { rememberAdhocRoom, renderRoomList, roomName } from './rooms.js';
import { state } from './state.js';
import { loadJson, save, STORAGE } from './storage.js';
import { updateTitle } from './ui/status.js';
import { toast } from './ui/toasts.js';

/** Badges as they were when this browser last showed them. */
export function loadMentionBadges() {
  const saved = loadJson(STORAGE.mentions(state.me.sub), {});
  state.mentionBadges.clear();
  for (const [room, n] of Object.entries(saved && typeof saved === 'object' ? saved : {})) {
    if (Number(n) > 0) state.mentionBadges.set(room, Number(n));
  }
}

export function saveMentionBadges() {
  if (!state.me) return;
  save(STORAGE.mentions(state.me.sub), Object.fromEntries(state.mentionBadges));
}

/** The newest message id I have had on screen in `room`, on this browser. */
export function lastSeen(room) {
  const seen = loadJson(STORAGE.seen(state.me.sub), {});
  const id = seen && typeof seen === 'object' ? Number(seen[room]) : NaN;
  return isNaN(id) ? null : id;
}

export function noteSeen(room, id) {
  const seen = loadJson(STORAGE.seen(state.me.sub), {}) || {};
  if (!(Number(seen[room]) >= id)) {
    seen[room] = id;
    save(STORAGE.seen(state.me.sub), seen);
  }
}

// Mentions made while I was away reach no socket of mine: once a session,
// a search for my name over the first room connection finds them, and
// each room I had seen counts those after the last message I saw there.
let catchUp = null; // the query sent, until its results come back

export function catchUpMentions() {
  if (!state.me || state.mentionsCaughtUp || !state.chat || !state.chat.open) return;
  state.mentionsCaughtUp = true;
  catchUp = String(state.me.username);
  state.chat.send({ type: 'search', query: catchUp, limit: 100 });
}

/** Search results that answer the catch-up query: true when they were (and are handled). */
export function onCatchUpResults(f) {
  if (catchUp === null || f.query !== catchUp) return false;
  catchUp = null;
  const open = state.view && state.view.kind === 'room' ? state.view.id : null;
  let counted = 0;
  for (const m of Array.isArray(f.messages) ? f.messages : []) {
    if (!m || typeof m !== 'object' || m.room === undefined || m.deleted) continue;
    const room = String(m.room);
    const key = `${room}:${m.id}`;
    const since = lastSeen(room);
    if (room === open || since === null || !(Number(m.id) > since) || isMine(m) || state.seenMentions.has(key)) continue;
    if (!Array.isArray(m.mentions) || !m.mentions.map(String).includes(state.me.sub)) continue;
    state.seenMentions.add(key);
    if (!state.rooms.has(room)) rememberAdhocRoom(room);
    state.mentionBadges.set(room, (state.mentionBadges.get(room) || 0) + 1);
    counted += 1;
  }
  if (counted) {
    renderRoomList();
    updateTitle();
  }
  return true;
}

export function mentionsMe(m) {
  if (!state.me) return false;
  const mine = [state.me.sub.toLowerCase(), String(state.me.username).toLowerCase()];
  if (Array.isArray(m.mentions) && m.mentions.some((x) => mine.includes(String(x).toLowerCase()))) return true;
  if (typeof m.content !== 'string') return false;
  const re = /@([A-Za-z0-9_.-]+)/g;
  let mt;
  while ((mt = re.exec(m.content))) {
    if (mine.includes(mt[1].toLowerCase())) return true;
  }
  return false;
}

export function onMention(f) {
  const key = `${f.room}:${f.message_id}`;
  if (state.seenMentions.has(key)) return;
  state.seenMentions.add(key);
  const room = f.room !== undefined && f.room !== null ? String(f.room) : null;
  const viewing = room && state.view && state.view.kind === 'room' && state.view.id === room && document.visibilityState === 'visible';
  // The room is on screen: the message itself is the notice.
  if (viewing) return;
  if (room) {
    if (!state.rooms.has(room)) rememberAdhocRoom(room);
    state.mentionBadges.set(room, (state.mentionBadges.get(room) || 0) + 1);
    renderRoomList();
    updateTitle();
  }
  toast(f.content || '', {
    kind: 'mention',
    title: `${f.from || 'Someone'} mentioned you${room ? ` in #${roomName(room)}` : ''}`,
    onClick: room ? () => openRoom(room, f.message_id) : null,
  });
}
