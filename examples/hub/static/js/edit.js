// Editing one of my messages inline.

import { updateMessageEl } from './message-list.js';
import { state } from './state.js';
import { $, h } from './ui/dom.js';

export function editBox(r, m) {
  const input = h('input', { class: 'edit-input', type: 'text', value: m.content || '', 'aria-label': 'Edit message' });
  input.value = m.content || '';
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.isComposing) {
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
      ' · Esc to ',
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
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
  }
}

function saveEdit(r, id, value) {
  const m = r.messages.get(id);
  state.editing = null;
  const content = value.trim();
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
