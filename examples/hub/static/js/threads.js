// The thread panel: a message's replies and replying to it.

import { mentionAutocomplete } from './autocomplete.js';
import { autoGrow } from './composer.js';
import { nearBottom, renderMessageEl, updateMessageEl } from './message-list.js';
import { normMessage, storeMessage } from './messages.js';
import { queueRoomMessage, renderPendingEl } from './outbox.js';
import { roomName } from './rooms.js';
import { currentRoom, state } from './state.js';
import { $, h } from './ui/dom.js';

export function openThread(rootId) {
  const r = currentRoom();
  if (!r) return;
  state.threadRoot = Number(rootId);
  $('#search-panel').hidden = true;
  $('#thread-panel').hidden = false;
  $('#app').classList.add('with-panel');
  $('#thread-sub').textContent = `#${roomName(r.id)}`;
  renderThread(r, { toBottom: true });
  if (state.chat) state.chat.send({ type: 'thread', message_id: state.threadRoot });
  $('#thread-composer').focus();
}

export function closeThread() {
  state.threadRoot = null;
  $('#thread-panel').hidden = true;
  $('#thread-messages').replaceChildren();
  if ($('#search-panel').hidden) $('#app').classList.remove('with-panel');
}

export function renderThread(r, opts = {}) {
  if (state.threadRoot === null) return;
  const box = $('#thread-messages');
  const stick = opts.toBottom || nearBottom(box);
  const root = r.messages.get(state.threadRoot);
  const replies = Array.from((r.replies.get(state.threadRoot) || new Set()))
    .map((id) => r.messages.get(id)).filter(Boolean).sort((a, b) => a.id - b.id);
  const nodes = [];
  if (root) {
    const rootEl = renderMessageEl(r, root, 'thread');
    rootEl.classList.add('thread-root');
    nodes.push(rootEl);
  } else {
    nodes.push(h('div', { class: 'loading', text: 'Loading thread…' }));
  }
  nodes.push(h('div', { class: 'thread-divider' },
    h('span', { text: replies.length ? `${replies.length} ${replies.length === 1 ? 'reply' : 'replies'}` : 'No replies yet' })));
  for (const m of replies) nodes.push(renderMessageEl(r, m, 'thread'));
  for (const p of r.pending) if (p.thread_id === state.threadRoot) nodes.push(renderPendingEl(p));
  box.replaceChildren(...nodes);
  if (stick) box.scrollTop = box.scrollHeight;
}

function submitThread(e) {
  e.preventDefault();
  const r = currentRoom();
  const input = $('#thread-composer');
  const text = input.value.replace(/\s+$/, '');
  if (!r || state.threadRoot === null || !text.trim()) return;
  queueRoomMessage(r, text, { thread_id: state.threadRoot });
  input.value = '';
  autoGrow(input);
  input.focus();
}

export function onThread(r, f) {
  const root = Number(f.message_id);
  const msgs = Array.isArray(f.messages) ? f.messages.map(normMessage) : [];
  for (const m of msgs) storeMessage(r, m);
  // The root comes back without thread_id; every other entry is a reply to it.
  for (const m of msgs) {
    if (m.id !== root && m.thread_id === undefined) {
      m.thread_id = root;
      storeMessage(r, m);
    }
  }
  if (currentRoom() !== r) return;
  if (r.messages.has(root)) updateMessageEl(r, root);
  if (state.threadRoot === root) renderThread(r, { toBottom: true });
}

/** The thread panel's composer and close button. */
export function wireThreads() {
  const tcomp = $('#thread-composer');
  mentionAutocomplete(tcomp);
  $('#thread-form').addEventListener('submit', submitThread);
  tcomp.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submitThread(e);
  });
  tcomp.addEventListener('input', () => autoGrow(tcomp));
  $('#thread-close').addEventListener('click', closeThread);
}
