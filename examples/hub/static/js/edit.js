// Editing one of my messages inline: a text area, so line breaks stay
// (Enter saves, Shift+Enter starts a new line, as in the composer).

import { autoGrow } from './composer.js';
import { updateMessageEl } from './message-list.js';
import { state } from './state.js';
import { $, h } from './ui/dom.js';

export function editBox(r, m) {
  const input = h('textarea', { class: 'edit-input', rows: '1', 'aria-label': 'Edit message' });
  input.value = m.content || '';
  input.addEventListener('input', () => autoGrow(input));
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      saveEdit(r, m.id, input.value);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      cancelEdit(r, m.id);
    }
  });
  return h('div', { class: 'edit-wrap' }, input,
    h('div', { class: 'edit-hint' },
      'Enter to ',
      h('button', { type: 'button', class: 'link-btn', text: 'save', on: { click: () => saveEdit(r, m.id, input.value) } }),
      ' · Shift+Enter for a new line · Esc to ',
      h('button', { type: 'button', class: 'link-btn', text: 'cancel', on: { click: () => cancelEdit(r, m.id) } })));
}

export function startEdit(r, id, where = 'main') {
  const prev = state.editing;
  state.editing = id;
  state.editingWhere = where;
  if (prev !== null && prev !== id) updateMessageEl(r, prev);
  updateMessageEl(r, id);
  const input = where === 'thread'
    ? $(`#thread-messages .message[data-tid="${id}"] .edit-input`)
    : $(`#messages .message[data-id="${id}"] .edit-input`);
  if (input) {
    autoGrow(input);
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

function saveEdit(r, id, value) {
  const m = r.messages.get(id);
  state.editing = null;
  // Only the ends are trimmed: the line breaks inside are the message's.
  const content = value.replace(/^\s*\n|\s+$/g, '');
  if (!m || !content || content === m.content) {
    updateMessageEl(r, id);
    return;
  }
  if (state.chat && state.chat.send({ type: 'edit', message_id: id, content })) {
    m.content = content;
    m.edited = true;
  }
  updateMessageEl(r, id);
  $('#composer').focus();
}

function cancelEdit(r, id) {
  state.editing = null;
  updateMessageEl(r, id);
}
