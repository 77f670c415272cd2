// A room's messages as data: normalized, stored by id, and the frames and
// actions that change one (reactions, edits, deletes).

import { isMe, toSub } from './identity.js';
import { noteModeration } from './moderation.js';
import { state } from './state.js';

export function normMessage(f) {
  const m = Object.assign({}, f);
  if (m.id !== undefined && m.id !== null && !isNaN(Number(m.id))) m.id = Number(m.id);
  if (!m.type) m.type = m.message !== undefined && m.user === undefined && m.content === undefined ? 'system' : 'message';
  if (m.type === 'message' && m.content === undefined && typeof m.message === 'string') m.content = m.message;
  if (m.thread_id !== undefined && m.thread_id !== null) m.thread_id = Number(m.thread_id);
  else delete m.thread_id;
  return m;
}

export function storeMessage(r, m) {
  if (typeof m.id !== 'number') return;
  if (m.user_id !== undefined && m.user !== undefined && !state.knownNames[m.user_id]) state.knownNames[String(m.user_id)] = String(m.user);
  const old = r.messages.get(m.id);
  if (old && old.reactions && !m.reactions) m.reactions = old.reactions;
  r.messages.set(m.id, m);
  if (m.thread_id !== undefined) {
    if (!r.replies.has(m.thread_id)) r.replies.set(m.thread_id, new Set());
    r.replies.get(m.thread_id).add(m.id);
  }
  if (r.lastId === null || m.id > r.lastId) r.lastId = m.id;
  noteModeration(r, m);
}

export function oldestId(r) {
  let min = null;
  for (const id of r.messages.keys()) if (min === null || id < min) min = id;
  return min;
}

export function visibleInMain(r, m) {
  return !(m.thread_id !== undefined && r.messages.has(m.thread_id) && m.thread_id !== m.id);
}

export function sortedMain(r) {
  return Array.from(r.messages.values()).filter((m) => visibleInMain(r, m)).sort((a, b) => a.id - b.id);
}

export function toggleReaction(r, id, emoji) {
  const m = r.messages.get(id);
  if (!m || !state.chat) return;
  const users = (m.reactions && m.reactions[emoji]) || [];
  const mine = users.some((u) => toSub(u) === state.me.sub || isMe(u));
  state.chat.send({ type: 'reaction', message_id: id, emoji, op: mine ? 'remove' : 'add' });
}

export function deleteMessage(id) {
  if (!state.chat) return;
  state.chat.send({ type: 'delete', message_id: id });
}
