// Update events: an edit, a delete or a reaction, which the hub saves to the
// room's history with an id of its own and sends live as saved. A ?since=
// recovery replays the ones missed while away, among the messages, in id
// order. Each carries a resulting state (the new text, the tombstone, one
// user's reaction with one emoji present or not), so applying one twice, or
// replaying events over a copy that already has them, is harmless.
// A message this client does not hold is left alone: history shows it as it
// is now when it is loaded.

import { updateMessageEl } from './message-list.js';
import { currentRoom, state } from './state.js';

const TYPES = new Set(['edited', 'deleted', 'reaction']);

/** True for an update event, live or in a history frame. */
export function isUpdate(f) {
  return !!f && TYPES.has(f.type) && f.message_id !== undefined;
}

/** Applies update event `f` to room `r`'s copy of the message it names. */
export function applyUpdate(r, f) {
  // Its own id moves the recovery point on: a reconnect asks only for what follows.
  const own = Number(f.id);
  if (Number.isInteger(own) && own > 0 && (r.lastId === null || own > r.lastId)) r.lastId = own;
  const id = Number(f.message_id);
  const m = r.messages.get(id);
  if (!m) return;
  if (f.type === 'deleted') {
    m.deleted = true;
    delete m.content;
    delete m.attachments;
    delete m.mentions;
    m.reactions = {};
  } else if (m.deleted) {
    return;
  } else if (f.type === 'edited') {
    m.content = f.content;
    m.edited = true;
    if (Array.isArray(f.mentions)) m.mentions = f.mentions;
    else delete m.mentions;
  } else {
    if (f.user !== undefined && f.username !== undefined) state.knownNames[String(f.user)] = String(f.username);
    if (!f.emoji || f.user === undefined) return;
    const who = String(f.user);
    m.reactions = m.reactions && typeof m.reactions === 'object' ? m.reactions : {};
    const list = (m.reactions[f.emoji] || []).filter((x) => String(x) !== who);
    if (f.op !== 'remove') list.push(who);
    if (list.length) m.reactions[f.emoji] = list;
    else delete m.reactions[f.emoji];
  }
  if (f.type !== 'reaction' && state.editing === id) state.editing = null;
  if (currentRoom() === r) updateMessageEl(r, id);
}
