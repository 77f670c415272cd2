// The main composer: sending to the open room or conversation.

import { sendDm } from './dm.js';
import { startEdit } from './edit.js';
import { isMine } from './identity.js';
import { sortedMain } from './messages.js';
import { queueRoomMessage } from './outbox.js';
import { currentRoom, state } from './state.js';
import { noteTyping, stopTyping } from './typing.js';
import { $ } from './ui/dom.js';

export function setComposerEnabled(on, placeholder) {
  $('#composer').disabled = !on;
  $('#send').disabled = !on;
  $('#file-input').disabled = !on;
  $('#composer').placeholder = placeholder || 'Message';
}

function submitComposer(e) {
  if (e) e.preventDefault();
  const input = $('#composer');
  const text = input.value.replace(/\s+$/, '');
  if (!text.trim() || input.disabled) return;
  if (state.view && state.view.kind === 'room') {
    const r = currentRoom();
    if (r.forbidden) return;
    queueRoomMessage(r, text);
    stopTyping();
  } else if (state.view && state.view.kind === 'dm') {
    sendDm(text);
  } else {
    return;
  }
  input.value = '';
  autoGrow(input);
  input.focus();
}

export function autoGrow(t) {
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 180)}px`;
}

/** The main composer: Enter sends, Up edits my last message, typing notices. */
export function wireComposer() {
  const composer = $('#composer');
  $('#composer-form').addEventListener('submit', submitComposer);
  composer.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submitComposer(e);
    // Up in an empty composer edits my last message, as in most chat apps.
    if (e.key === 'ArrowUp' && !composer.value && state.view && state.view.kind === 'room') {
      const r = currentRoom();
      const mine = sortedMain(r).filter((m) => m.type === 'message' && !m.deleted && isMine(m)).pop();
      if (mine) {
        e.preventDefault();
        startEdit(r, mine.id);
      }
    }
  });
  composer.addEventListener('input', () => {
    autoGrow(composer);
    noteTyping();
  });
}
