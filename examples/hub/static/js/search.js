// Search: the query goes over the open room's connection; results open their
// room.

import { openRoom } from './chat.js';
import { authorSub, labelOf } from './identity.js';
import { onCatchUpResults } from './mentions.js';
import { focusMessage } from './message-list.js';
import { normMessage } from './messages.js';
import { roomName } from './rooms.js';
import { state } from './state.js';
import { fmtDay, fmtTime } from './ui/dates.js';
import { $, h } from './ui/dom.js';
import { highlight } from './ui/rich-text.js';
import { toast } from './ui/toasts.js';

let lastQuery = '';

function runSearch() {
  const q = $('#search-input').value.trim();
  if (!q) return;
  lastQuery = q;
  $('#thread-panel').hidden = true;
  state.threadRoot = null;
  $('#search-panel').hidden = false;
  $('#app').classList.add('with-panel');
  $('#search-sub').textContent = `“${q}”`;
  if (!state.chat || !state.chat.open) {
    $('#search-results').replaceChildren(h('div', { class: 'panel-empty', text: 'Open a room first: search runs on a room connection.' }));
    return;
  }
  $('#search-results').replaceChildren(h('div', { class: 'loading', text: 'Searching…' }));
  state.chat.send({ type: 'search', query: q, limit: 50 });
}

export function renderSearchResults(f) {
  if (onCatchUpResults(f)) return;
  const box = $('#search-results');
  const msgs = Array.isArray(f.messages) ? f.messages : [];
  $('#search-panel').hidden = false;
  $('#app').classList.add('with-panel');
  $('#search-sub').textContent = `${msgs.length} result${msgs.length === 1 ? '' : 's'} for “${lastQuery}”`;
  if (!msgs.length) {
    box.replaceChildren(h('div', { class: 'panel-empty', text: 'No messages match.' }));
    return;
  }
  const words = lastQuery.toLowerCase().split(/\s+/).filter(Boolean);
  box.replaceChildren(...msgs.map((raw) => {
    const m = normMessage(raw);
    const room = m.room !== undefined && m.room !== null ? String(m.room) : (state.view && state.view.id);
    const content = h('div', { class: 'result-content' });
    highlight(content, m.content || m.message || '', words);
    return h('button', {
      type: 'button', class: 'search-result', dataset: { room: room || '', id: String(m.id) },
      on: { click: () => goToResult(room, m.id) },
    },
    h('div', { class: 'result-head' },
      h('span', { class: 'result-room', text: `#${roomName(room)}` }),
      h('span', { class: 'result-user', text: m.user === undefined ? '' : labelOf(authorSub(m), m.user) }),
      h('time', { class: 'time', text: `${fmtDay(m.timestamp)} ${fmtTime(m.timestamp)}` })),
    content);
  }));
}

function goToResult(room, id) {
  if (!room) return;
  if (state.view && state.view.kind === 'room' && state.view.id === room) {
    if (!focusMessage(id)) toast('That message is older than what is loaded; scroll up to load more.', { timeout: 4000 });
    return;
  }
  openRoom(room, id);
}

function closeSearch() {
  $('#search-panel').hidden = true;
  // Closed is closed: the next search starts from an empty field.
  $('#search-input').value = '';
  if ($('#thread-panel').hidden) $('#app').classList.remove('with-panel');
}

/** The search field and the results panel's close button. */
export function wireSearch() {
  $('#search-form').addEventListener('submit', (e) => { e.preventDefault(); runSearch(); });
  $('#search-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); runSearch(); }
    if (e.key === 'Escape') { e.target.value = ''; $('#search-close').click(); }
  });
  $('#search-close').addEventListener('click', closeSearch);
  // On a phone the field is folded into its icon: a tap on the icon opens it.
  $('#search-form').addEventListener('click', () => $('#search-input').focus());
}
