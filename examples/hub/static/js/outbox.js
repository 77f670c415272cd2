// My messages on their way: shown as pending until the hub acks or echoes them,
// with Retry and Discard.

import { renderAttachments } from './files.js';
import { isMine } from './identity.js';
import { appendMessageEl, mainBox, updateMessageEl } from './message-list.js';
import { storeMessage } from './messages.js';
import { scheduleRead } from './reads.js';
import { currentRoom, state } from './state.js';
import { renderThread } from './threads.js';
import { renderHeader } from './views.js';
import { avatar } from './ui/avatar.js';
import { $, $$, h } from './ui/dom.js';
import { renderRichText } from './ui/rich-text.js';

export function randomId() {
  if (window.crypto && crypto.getRandomValues) {
    const b = new Uint8Array(12);
    crypto.getRandomValues(b);
    return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
  }
  return Math.random().toString(36).slice(2) + Date.now().toString(36);
}

/** Drop the pending copy of one of my own messages that the hub has now saved. */
export function matchPending(r, m) {
  if (!isMine(m) || m.type !== 'message') return false;
  let idx = -1;
  if (m.client_id) idx = r.pending.findIndex((p) => p.client_id === m.client_id);
  if (idx < 0) {
    idx = r.pending.findIndex((p) => p.sent && p.content === m.content
      && (p.thread_id === undefined ? m.thread_id === undefined : p.thread_id === m.thread_id));
  }
  if (idx < 0) return false;
  const [p] = r.pending.splice(idx, 1);
  removePendingEl(p);
  return true;
}

export function onAck(r, f) {
  const idx = r.pending.findIndex((p) => p.client_id === f.client_id);
  if (idx < 0) return;
  const [p] = r.pending.splice(idx, 1);
  removePendingEl(p);
  const id = Number(f.id);
  if (isNaN(id)) return;
  if (!r.messages.has(id)) {
    // The broadcast copy has not arrived yet: show ours under the real id.
    const m = {
      id, type: 'message', user: state.me.username, content: p.content,
      timestamp: f.timestamp || new Date().toISOString(),
    };
    if (p.thread_id !== undefined) m.thread_id = p.thread_id;
    if (p.attachments && p.attachments.length) m.attachments = p.attachments;
    storeMessage(r, m);
    if (currentRoom() === r) {
      if (m.thread_id !== undefined && r.messages.has(m.thread_id)) {
        updateMessageEl(r, m.thread_id);
        if (state.threadRoot === m.thread_id) renderThread(r, { toBottom: true });
      } else {
        appendMessageEl(r, m);
      }
      renderHeader();
    }
  }
  scheduleRead(r);
}

export function renderPendingEl(p) {
  const node = h('div', { class: `message pending mine${p.failed ? ' failed' : ''}`, dataset: { clientId: p.client_id } },
    avatar(state.me.username),
    h('div', { class: 'msg-body' },
      h('div', { class: 'msg-head' },
        h('span', { class: 'author', text: state.me.username }),
        h('span', { class: 'time pending-label', text: p.failed ? 'not sent' : 'sending…' })),
      (() => {
        const c = h('div', { class: 'content' });
        renderRichText(c, p.content);
        return c;
      })(),
      p.attachments && p.attachments.length ? renderAttachments(p.attachments) : null,
      p.failed ? h('div', { class: 'pending-actions' },
        h('button', { type: 'button', class: 'link-btn', text: 'Retry', on: { click: () => retryPending(p) } }),
        h('button', { type: 'button', class: 'link-btn', text: 'Discard', on: { click: () => discardPending(p) } })) : null));
  return node;
}

function pendingEls(p) {
  return $$(`.message.pending[data-client-id="${CSS.escape(p.client_id)}"]`);
}

function removePendingEl(p) {
  for (const n of pendingEls(p)) n.remove();
}

export function updatePendingEl(p) {
  for (const n of pendingEls(p)) n.replaceWith(renderPendingEl(p));
}

export function sendPending(r, p) {
  if (!state.chat || currentRoom() !== r) return false;
  const frame = { type: 'message', content: p.content, client_id: p.client_id };
  if (p.thread_id !== undefined) frame.thread_id = p.thread_id;
  if (p.attachments && p.attachments.length) frame.attachments = p.attachments;
  if (state.chat.send(frame)) {
    p.sent = true;
    p.sentAt = Date.now();
    p.failed = false;
    // No ack in 10 s: offer a retry (the resend carries a new client_id).
    setTimeout(() => {
      if (r.pending.includes(p) && !p.failed && Date.now() - p.sentAt >= 9900) {
        p.failed = true;
        updatePendingEl(p);
      }
    }, 10000);
    return true;
  }
  return false;
}

export function queueRoomMessage(r, content, extra = {}) {
  const p = {
    client_id: randomId(), content, ts: Date.now(), sent: false, failed: false,
    thread_id: extra.thread_id, attachments: extra.attachments,
  };
  if (p.thread_id === undefined) delete p.thread_id;
  r.pending.push(p);
  const box = mainBox();
  if (p.thread_id === undefined) {
    box.append(renderPendingEl(p));
    box.scrollTop = box.scrollHeight;
  } else if (state.threadRoot === p.thread_id) {
    const tbox = $('#thread-messages');
    tbox.append(renderPendingEl(p));
    tbox.scrollTop = tbox.scrollHeight;
  }
  sendPending(r, p);
  return p;
}

function retryPending(p) {
  const r = currentRoom();
  if (!r) return;
  // Same client_id: the hub answers a resend of a message it already saved with the same ack.
  p.failed = false;
  updatePendingEl(p);
  sendPending(r, p);
}

function discardPending(p) {
  const r = currentRoom();
  if (!r) return;
  r.pending = r.pending.filter((x) => x !== p);
  removePendingEl(p);
}
