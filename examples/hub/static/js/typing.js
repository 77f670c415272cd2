// Typing indicators: sending mine (throttled to the hub's limit) and showing
// the others'.

import { isMe, nameOf } from './identity.js';
import { currentRoom, state } from './state.js';
import { $ } from './ui/dom.js';

export function onTyping(r, f) {
  const who = f.user;
  if (who === undefined || isMe(who) || (f.user_id !== undefined && isMe(f.user_id))) return;
  const name = state.users.has(String(who)) ? nameOf(String(who)) : String(who);
  if (f.state === false) r.typing.delete(name);
  else r.typing.set(name, Date.now() + 5000);
  if (currentRoom() === r) renderTyping(r);
}

export function clearTyping(r, name) {
  if (r.typing.delete(String(name)) && currentRoom() === r) renderTyping(r);
}

export function renderTyping(r) {
  const now = Date.now();
  for (const [name, exp] of r.typing) if (exp < now) r.typing.delete(name);
  const names = Array.from(r.typing.keys());
  let text = '';
  if (names.length === 1) text = `${names[0]} is typing…`;
  else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
  else if (names.length > 2) text = 'Several people are typing…';
  const node = $('#typing');
  if (node.textContent !== text) node.textContent = text;
  node.classList.toggle('active', !!text);
}

// Typing: `true` at most once per 2 s while typing (it also keeps the others' indicator
// alive), `false` after 3 s idle or on send. That stays within the hub's 2 notices a second.
const typingState = { active: false, lastSent: 0, idle: null, deferred: null };

function sendTypingTrue() {
  clearTimeout(typingState.deferred);
  typingState.deferred = null;
  if (!state.view || state.view.kind !== 'room' || !state.chat || !$('#composer').value.trim()) return;
  const wait = typingState.lastSent + 2000 - Date.now();
  if (wait > 0) {
    // Too soon after the last one: say it as soon as allowed, if still typing then.
    typingState.deferred = setTimeout(sendTypingTrue, wait);
    return;
  }
  if (state.chat.send({ type: 'typing', state: true })) {
    typingState.lastSent = Date.now();
    typingState.active = true;
  }
}

/** The composer changed: say I am typing, or that I stopped. */
export function noteTyping() {
  if (!state.view || state.view.kind !== 'room' || !state.chat) return;
  if ($('#composer').value.trim()) {
    if (!typingState.deferred) sendTypingTrue();
    clearTimeout(typingState.idle);
    typingState.idle = setTimeout(stopTyping, 3000);
  } else {
    stopTyping();
  }
}

/** A notice of mine went out just now: a `rate_limited` error is about it, not a message. */
export function typingJustSent() {
  return Date.now() - typingState.lastSent < 300;
}

export function stopTyping() {
  clearTimeout(typingState.idle);
  clearTimeout(typingState.deferred);
  typingState.deferred = null;
  if (typingState.active && state.chat) state.chat.send({ type: 'typing', state: false });
  typingState.active = false;
}
