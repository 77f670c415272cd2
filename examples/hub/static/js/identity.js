// Who is who: `sub` is a user's id, `username` the display name. The client
// acts on people by id only (menus, DMs, kick, ban, reactions, receipts):
// every frame the hub sends names its user by id (`user_id` on a message,
// or `user` itself when the hub leaves `user_id` out because they are the
// same; `user` on reactions, receipts and moderation notices; `from_id` on
// DMs), so a display name is never looked up to find whom to act on. Names
// are labels; two people with one name are told apart by a short id.

import { state } from './state.js';

/**
 * The id behind a display name, for the rare frame that carries a name and
 * no id (a presence entry from an older hub). Never used to act on anyone.
 */
export function subForName(name) {
  if (name === undefined || name === null) return null;
  const s = String(name);
  if (state.users.has(s) && !state.users.get(s).guessed) return s;
  if (state.me && s === state.me.sub) return s;
  return null;
}

/** A user reference from a frame, which is always an id: as a string. */
export const toSub = (x) => (x === undefined || x === null ? x : String(x));

export function nameOf(sub) {
  if (state.me && sub === state.me.sub) return state.me.username;
  const u = state.users.get(sub);
  if (u) return u.username;
  if (state.dmNames[sub]) return state.dmNames[sub];
  if (state.knownNames[sub]) return state.knownNames[sub];
  // A guest id the hub made from a name ("guest-bob-<16 hex>"): the name is in it.
  const guest = /^guest-(.+)-[0-9a-f]{16}$/.exec(String(sub));
  if (guest) return guest[1];
  return String(sub);
}

/** True for my own id (never for my display name: anyone may share it). */
export const isMe = (x) => !!state.me && x !== undefined && x !== null && String(x) === state.me.sub;

/** The author's id: `user_id`, or `user` when the hub left `user_id` out (then they are the same). */
export function authorSub(m) {
  const sub = m.user_id ?? m.sub ?? m.user;
  return sub === undefined || sub === null ? null : String(sub);
}

export function isMine(m) {
  return !!state.me && authorSub(m) === state.me.sub;
}

/** Ids of everyone known by `name` (case-insensitive), `sub` included when it is. */
function subsNamed(name) {
  const low = String(name).toLowerCase();
  const subs = new Set();
  if (state.me && String(state.me.username).toLowerCase() === low) subs.add(state.me.sub);
  for (const u of state.users.values()) {
    if (!u.guessed && String(u.username).toLowerCase() === low) subs.add(String(u.id));
  }
  for (const [sub, uname] of Object.entries(state.knownNames)) {
    if (String(uname).toLowerCase() === low) subs.add(sub);
  }
  return subs;
}

/** A short, stable form of an id for telling namesakes apart. */
export const shortId = (sub) => (String(sub).length <= 12 ? String(sub) : `…${String(sub).slice(-6)}`);

/**
 * How to show `sub` called `name`: the name, plus a short id when someone
 * else is known by the same name (or the name is someone else's id).
 */
export function labelOf(sub, name) {
  const shown = name === undefined || name === null ? nameOf(sub) : String(name);
  if (sub === undefined || sub === null) return shown;
  const others = [...subsNamed(shown)].filter((s) => s !== String(sub));
  const impersonatesAnId = shown !== String(sub) && (state.users.has(shown) || state.knownNames[shown] !== undefined);
  return others.length || impersonatesAnId ? `${shown} (${shortId(sub)})` : shown;
}
