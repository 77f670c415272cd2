// The main composer: sending to the open room or conversation, and the
// half-typed draft of each (kept per room and conversation, across room
// switches and reloads).

import { mentionAutocomplete } from './autocomplete.js';
import { sendDm } from './dm.js';
import { startEdit } from './edit.js';
import { isMine } from './identity.js';
import { sortedMain } from './messages.js';
import { queueRoomMessage } from './outbox.js';
import { currentRoom, state } from './state.js';
import { loadJson, save, STORAGE } from './storage.js';
import { noteTyping, stopTyping } from './typing.js';
import { $ } from './ui/dom.js';

// Which view the text in the composer belongs to ('room:<id>', 'dm:<sub>').
let draftKey = null;
let draftTimer = null;

const viewKey = () => {
  const v = state.view;
  if (!v) return null;
  return v.kind === 'room' ? `room:${v.id}` : `dm:${v.peer}`;
};

function saveDraft(key, text) {
  if (!state.me || !key) return;
  const drafts = loadJson(STORAGE.drafts(state.me.sub), {}) || {};
  if (text.trim()) drafts[key] = text;
  else delete drafts[key];
  save(STORAGE.drafts(state.me.sub), drafts);
}

/** The composer now belongs to the open view: keep the old view's draft, bring back this one's. */
function switchDraft() {
  const key = viewKey();
  if (key === draftKey) return;
  const input = $('#composer');
  clearTimeout(draftTimer);
  if (draftKey) saveDraft(draftKey, input.value);
  draftKey = key;
  const drafts = state.me ? loadJson(STORAGE.drafts(state.me.sub), {}) || {} : {};
  input.value = key && typeof drafts[key] === 'string' ? drafts[key] : '';
  autoGrow(input);
}

/** Signed out: the next session starts with an empty composer. */
export function resetComposer() {
  clearTimeout(draftTimer);
  if (draftKey) saveDraft(draftKey, $('#composer').value);
  draftKey = null;
  $('#composer').value = '';
}

/** The text went out: empty the composer and its saved draft. */
export function clearComposer() {
  const input = $('#composer');
  clearTimeout(draftTimer);
  input.value = '';
  saveDraft(draftKey, '');
  autoGrow(input);
}

export function setComposerEnabled(on, placeholder) {
  switchDraft();
  $('#composer').disabled = !on;
  $('#send').disabled = !on;
  // Attachments go to rooms and direct messages alike.
  const inView = !!state.view && (state.view.kind === 'room' || state.view.kind === 'dm');
  $('#file-input').disabled = !on || !inView;
  $('#attach').hidden = !inView;
  $('#attach').disabled = !on || !inView;
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
  clearComposer();
  input.focus();
}

export function autoGrow(t) {
  t.style.height = 'auto';
  t.style.height = `${Math.min(t.scrollHeight, 180)}px`;
}

/** The main composer: Enter sends, Up edits my last message, typing notices. */
export function wireComposer() {
  const composer = $('#composer');
  mentionAutocomplete(composer);
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
    clearTimeout(draftTimer);
    const key = draftKey;
    draftTimer = setTimeout(() => saveDraft(key, composer.value), 300);
  });
  // Leaving the page right after typing: the draft is not lost to the debounce.
  window.addEventListener('pagehide', () => saveDraft(draftKey, composer.value));
}
