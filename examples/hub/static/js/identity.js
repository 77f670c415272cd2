// Who is who: `sub` is a user's id, `username` the display name; frames carry
// either.

import { state } from './state.js';

export function subForName(name) {
  if (name === undefined || name === null) return null;
  const s = String(name);
  if (state.users.has(s) && !state.users.get(s).guessed) return s;
  const low = s.toLowerCase();
  for (const u of state.users.values()) {
    if (!u.guessed && String(u.username).toLowerCase() === low) return u.id;
  }
  if (state.me && (s === state.me.username)) return state.me.sub;
  if (state.users.has(s)) return s;
  for (const [sub, uname] of Object.entries(state.knownNames)) if (uname.toLowerCase() === low) return sub;
  return null;
}

/** Normalize a user reference (sub or display name) to a sub when possible. */
export const toSub = (x) => subForName(x) || (x === undefined || x === null ? x : String(x));

export function nameOf(sub) {
  if (state.me && sub === state.me.sub) return state.me.username;
  const u = state.users.get(sub);
  if (u) return u.username;
  if (state.dmNames[sub]) return state.dmNames[sub];
  if (state.knownNames[sub]) return state.knownNames[sub];
  return String(sub);
}

export const isMe = (x) => !!state.me && x !== undefined && x !== null && (String(x) === state.me.sub || String(x) === state.me.username);

export function isMine(m) {
  const sub = m.sub || m.user_id;
  if (sub) return sub === state.me.sub;
  return m.user === state.me.username || m.user === state.me.sub;
}

export function authorSub(m) {
  return m.sub || m.user_id || toSub(m.user);
}
