// The main message list: rendering a room's messages, one message, day
// dividers, scrolling.

import { loadOlder } from './chat.js';
import { editBox, startEdit } from './edit.js';
import { renderAttachments } from './files.js';
import { authorSub, isMe, isMine, labelOf, toSub } from './identity.js';
import { mentionsMe } from './mentions.js';
import { deleteMessage, sortedMain, toggleReaction, visibleInMain } from './messages.js';
import { applyMute, isMod, moderationText, openUserMenu } from './moderation.js';
import { renderPendingEl } from './outbox.js';
import { renderSeenBy } from './reads.js';
import { roomName } from './rooms.js';
import { currentRoom, state } from './state.js';
import { openThread } from './threads.js';
import { avatar } from './ui/avatar.js';
import { dayKey, fmtDay, fmtFull, fmtTime } from './ui/dates.js';
import { confirmDialog } from './ui/dialogs.js';
import { $, $$, h } from './ui/dom.js';
import { icon } from './ui/icons.js';
import { openEmojiPicker } from './ui/popovers.js';
import { renderRichText } from './ui/rich-text.js';

export const mainBox = () => $('#messages');

export const nearBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 140;

// Whether the list follows the newest message: true until the reader
// scrolls up, so pictures that load late do not leave the view short of
// the bottom.
let following = true;

/** Keep the view at the newest message if it was following it. */
export function keepFollowing() {
  const box = mainBox();
  if (following) box.scrollTop = box.scrollHeight;
}

/** Scroll to the newest message and follow it from now on. */
export function scrollToLatest() {
  const box = mainBox();
  following = true;
  box.scrollTop = box.scrollHeight;
  $('#jump-latest').hidden = true;
}

/** The id of the first message from someone else after `readId` (the "new since you left" line). */
export function firstUnreadAfter(r, readId) {
  for (const m of sortedMain(r)) {
    if (m.id > readId && m.type === 'message' && !isMine(m)) return m.id;
  }
  return null;
}

function unreadDivider(r) {
  const list = sortedMain(r).filter((m) => m.id >= r.unreadFrom && m.type === 'message' && !isMine(m));
  const mentions = list.filter((m) => !m.deleted && mentionsMe(m)).length;
  let text = `${list.length} new message${list.length === 1 ? '' : 's'} since you left`;
  if (mentions) text += ` · ${mentions} mention${mentions === 1 ? '' : 's'} of you`;
  return h('div', { class: 'unread-divider', id: 'unread-divider', role: 'separator', 'aria-label': text },
    h('span', { text }));
}

export function renderRoomMessages(r, opts = {}) {
  const box = mainBox();
  const stick = opts.toBottom || nearBottom(box);
  const nodes = [];
  const list = sortedMain(r);
  if (!r.gotInitial && !list.length) {
    // Under a refusal there is nothing coming: no "Loading" then.
    if (!r.forbidden && $('#notice').dataset.kind !== 'error') nodes.push(h('div', { class: 'loading', text: 'Loading messages…' }));
  } else if (!r.noMore && list.length) {
    nodes.push(h('div', { class: 'older-wrap' }, h('button', {
      id: 'load-older', type: 'button', class: 'btn btn-ghost btn-sm',
      text: r.loadingOlder ? 'Loading…' : 'Load older messages', disabled: r.loadingOlder,
      on: { click: loadOlder },
    })));
  } else {
    nodes.push(h('div', { class: 'room-start' },
      h('div', { class: 'room-start-icon', text: '#', 'aria-hidden': 'true' }),
      h('h2', { text: `Welcome to #${roomName(r.id)}` }),
      h('p', { text: 'This is the very beginning of the room.' })));
  }
  let lastDay = null;
  for (const m of list) {
    const d = dayKey(m.timestamp);
    if (d && d !== lastDay) {
      nodes.push(dayDivider(m.timestamp, d));
      lastDay = d;
    }
    if (r.unreadFrom !== null && r.unreadFrom !== undefined && m.id === r.unreadFrom) nodes.push(unreadDivider(r));
    nodes.push(renderMessageEl(r, m, 'main'));
  }
  for (const p of r.pending) if (p.thread_id === undefined) nodes.push(renderPendingEl(p));
  box.replaceChildren(...nodes);
  renderSeenBy(r);
  applyMute(r);
  if (stick) {
    following = true;
    box.scrollTop = box.scrollHeight;
  }
  if (r.unreadFrom !== null && r.unreadFrom !== undefined && !r.unreadShown) {
    // Coming back: start at the first new message, not at the bottom.
    const line = $('#unread-divider', box);
    if (line) {
      r.unreadShown = true;
      box.scrollTop += line.getBoundingClientRect().top - box.getBoundingClientRect().top - 12;
      following = nearBottom(box);
    }
  }
  $('#jump-latest').hidden = nearBottom(box);
}

export function dayDivider(ts, key) {
  return h('div', { class: 'day-divider', dataset: { day: key } }, h('span', { text: fmtDay(ts) }));
}

export function appendMessageEl(r, m) {
  const box = mainBox();
  const rendered = $$('.message[data-id]', box);
  const lastRendered = rendered.length ? Number(rendered[rendered.length - 1].dataset.id) : -Infinity;
  if (m.id < lastRendered || !r.gotInitial) {
    renderRoomMessages(r);
    return;
  }
  const stick = nearBottom(box) || isMine(m);
  const firstPending = $('.message.pending', box);
  const d = dayKey(m.timestamp);
  const dividers = $$('.day-divider', box);
  const lastDay = dividers.length ? dividers[dividers.length - 1].dataset.day : null;
  const frag = document.createDocumentFragment();
  if (d && d !== lastDay) frag.append(dayDivider(m.timestamp, d));
  frag.append(renderMessageEl(r, m, 'main'));
  box.insertBefore(frag, firstPending);
  renderSeenBy(r);
  if (stick) {
    following = true;
    box.scrollTop = box.scrollHeight;
  } else if (m.type === 'message') $('#jump-latest').hidden = false;
}

export function appendTransient(m) {
  const box = mainBox();
  const stick = nearBottom(box);
  const text = m.message || m.content || '';
  box.insertBefore(h('div', { class: 'message system transient' },
    h('span', { class: 'system-icon' }, icon('info', 14)),
    h('span', { class: 'content', text }),
    h('time', { class: 'time', text: fmtTime(m.timestamp) })), $('.message.pending', box));
  if (stick) box.scrollTop = box.scrollHeight;
}

/** Re-render one message in place, in the main list and in the thread panel. */
export function updateMessageEl(r, id) {
  const m = r.messages.get(id);
  if (!m) return;
  const main = $(`#messages .message[data-id="${id}"]`);
  if (main) {
    const fresh = renderMessageEl(r, m, 'main');
    const seen = $('.seen-by', main);
    if (seen) $('.msg-body', fresh) ? $('.msg-body', fresh).append(seen) : fresh.append(seen);
    main.replaceWith(fresh);
  } else if (visibleInMain(r, m) && currentRoom() === r && r.gotInitial) {
    appendMessageEl(r, m);
  }
  const inThread = $(`#thread-messages .message[data-tid="${id}"]`);
  if (inThread) inThread.replaceWith(renderMessageEl(r, m, 'thread'));
}

const SYSTEM_ICONS = { kick: 'kick', ban: 'ban', mute: 'mute', unban: 'check' };

export function renderMessageEl(r, m, where) {
  const idAttr = where === 'main' ? { id: String(m.id) } : { tid: String(m.id) };
  const day = dayKey(m.timestamp);
  if (m.type === 'system') {
    const node = h('div', {
      class: `message system${m.action ? ` mod-action action-${m.action}` : ''}`,
      dataset: Object.assign({ day }, idAttr),
    },
    h('span', { class: 'system-icon' }, icon(SYSTEM_ICONS[m.action] || (/ left /.test(m.message || '') ? 'kick' : 'join'), 14)),
    h('span', { class: 'content', text: m.action ? moderationText(m) : (m.message || m.content || '') }),
    h('time', { class: 'time', text: fmtTime(m.timestamp), title: fmtFull(m.timestamp), datetime: m.timestamp || '' }));
    return node;
  }

  const mine = isMine(m);
  const cls = ['message'];
  if (mine) cls.push('mine');
  if (m.deleted) cls.push('deleted');
  if (!m.deleted && !mine && mentionsMe(m)) cls.push('mentions-me');
  if (where === 'thread') cls.push('thread-item');
  const node = h('div', { class: cls.join(' '), dataset: Object.assign({ day }, idAttr) });
  // The menu acts on the author's id; the name is only a label.
  const sub = authorSub(m);
  const name = m.user !== undefined ? labelOf(sub, m.user) : 'unknown';

  const author = h('button', {
    type: 'button', class: 'author', text: name, dataset: { sub: sub || '' },
    on: { click: (e) => openUserMenu(e.currentTarget, sub, name) },
  });
  const head = h('div', { class: 'msg-head' },
    author,
    h('time', { class: 'time', text: fmtTime(m.timestamp), title: fmtFull(m.timestamp), datetime: m.timestamp || '' }));

  const body = h('div', { class: 'msg-body' }, head);
  if (m.deleted) {
    body.append(h('div', { class: 'content tombstone', text: 'message deleted' }));
  } else if (state.editing === m.id && where === state.editingWhere) {
    body.append(editBox(r, m));
  } else {
    const content = h('div', { class: 'content' });
    renderRichText(content, typeof m.content === 'string' ? m.content : '');
    body.append(content);
    if (m.edited) body.append(h('span', { class: 'edited', text: '(edited)' }));
    if (Array.isArray(m.attachments) && m.attachments.length) body.append(renderAttachments(m.attachments));
  }

  const reactions = h('div', { class: 'reactions' });
  if (!m.deleted && m.reactions && typeof m.reactions === 'object') {
    for (const [emoji, usersRaw] of Object.entries(m.reactions)) {
      const users = Array.isArray(usersRaw) ? usersRaw : [];
      if (!users.length) continue;
      const mineR = users.some((u) => toSub(u) === state.me.sub || isMe(u));
      reactions.append(h('button', {
        type: 'button', class: `reaction${mineR ? ' mine reacted' : ''}`, dataset: { emoji },
        title: users.map((u) => labelOf(toSub(u))).join(', '),
        'aria-pressed': mineR ? 'true' : 'false',
        on: { click: () => toggleReaction(r, m.id, emoji) },
      }, h('span', { class: 'emoji', text: emoji }), h('span', { class: 'count', text: users.length })));
    }
  }
  if (reactions.childElementCount) {
    reactions.append(h('button', {
      type: 'button', class: 'reaction-add', title: 'Add reaction', 'aria-label': 'Add reaction',
      on: { click: (e) => openEmojiPicker(e.currentTarget, (emoji) => toggleReaction(r, m.id, emoji)) },
    }, icon('smile', 15)));
  }
  body.append(reactions);

  if (where === 'main' && m.thread_id === undefined) {
    const replies = r.replies.get(m.id);
    const n = replies ? replies.size : 0;
    if (n) {
      const lastReply = Math.max(...replies);
      const lr = r.messages.get(lastReply);
      body.append(h('button', {
        type: 'button', class: 'thread-count', on: { click: () => openThread(m.id) },
      }, h('span', { class: 'replies', text: `${n} ${n === 1 ? 'reply' : 'replies'}` }),
      lr ? h('span', { class: 'thread-last', text: `last reply ${fmtTime(lr.timestamp)}` }) : null));
    }
  } else if (where === 'main' && m.thread_id !== undefined) {
    body.append(h('button', {
      type: 'button', class: 'thread-count in-thread', text: 'replied in a thread',
      on: { click: () => openThread(m.thread_id) },
    }));
  }

  node.append(avatar(name), body);

  if (!m.deleted) {
    const acts = h('div', { class: 'msg-actions', role: 'toolbar', 'aria-label': 'Message actions' });
    acts.append(h('button', {
      type: 'button', class: 'act act-react', title: 'Add reaction', 'aria-label': 'Add reaction',
      on: { click: (e) => openEmojiPicker(e.currentTarget, (emoji) => toggleReaction(r, m.id, emoji)) },
    }, icon('smile', 17)));
    if (where === 'main' && m.thread_id === undefined) {
      acts.append(h('button', {
        type: 'button', class: 'act act-thread', title: 'Reply in thread', 'aria-label': 'Reply in thread',
        on: { click: () => openThread(m.id) },
      }, icon('thread', 17)));
    }
    if (mine) {
      acts.append(h('button', {
        type: 'button', class: 'act act-edit', title: 'Edit', 'aria-label': 'Edit message',
        on: { click: () => startEdit(r, m.id, where) },
      }, icon('edit', 17)));
    }
    if (mine || isMod(r.id)) {
      acts.append(h('button', {
        type: 'button', class: 'act act-delete', title: 'Delete', 'aria-label': 'Delete message',
        on: { click: () => confirmDelete(m) },
      }, icon('trash', 17)));
    }
    node.append(acts);
  }
  return node;
}

/** Deleting asks first: the text is gone for everyone once the hub has it. */
async function confirmDelete(m) {
  const preview = typeof m.content === 'string' ? m.content : '';
  const ok = await confirmDialog({
    title: 'Delete this message?',
    text: `${preview.length > 140 ? `${preview.slice(0, 140)}…` : preview}\n\nIt will be removed for everyone in the room. This cannot be undone.`,
    confirm: 'Delete',
  });
  if (ok) deleteMessage(m.id);
}

export function focusMessage(id) {
  const node = $(`#messages .message[data-id="${id}"]`);
  if (!node) return false;
  node.scrollIntoView({ block: 'center' });
  node.classList.remove('flash');
  void node.offsetWidth;
  node.classList.add('flash');
  return true;
}

// Roving tabindex: the message list is one stop in the Tab order, not
// three or more a message. One message (the active one: the newest until
// the keyboard or a click picks another) has tabindex 0 and its controls
// are in the Tab order; every other message and its controls are -1
// (reachable by the arrows). ArrowUp/ArrowDown/Home/End move between
// messages while a message itself has the focus.
const FOCUSABLE = 'button, a[href], input, textarea, select, [tabindex]';
let activeId = null;

function listMessages(box) {
  return $$('.message[data-id]', box);
}

/** Gives the Tab order to the active message only (the newest when none is). */
function applyRoving() {
  const box = mainBox();
  const list = listMessages(box);
  if (!list.length) return;
  let active = activeId !== null ? list.find((n) => n.dataset.id === activeId) : null;
  if (!active) active = list[list.length - 1];
  for (const node of list) {
    const on = node === active;
    node.tabIndex = on ? 0 : -1;
    for (const c of node.querySelectorAll(FOCUSABLE)) c.tabIndex = on ? 0 : -1;
  }
}

function activate(node) {
  activeId = node.dataset.id;
  applyRoving();
}

function onListKey(e) {
  const node = e.target;
  if (!node.matches || !node.matches('#messages .message[data-id]')) return;
  const list = listMessages(mainBox());
  const i = list.indexOf(node);
  let next = null;
  if (e.key === 'ArrowUp') next = list[i - 1];
  else if (e.key === 'ArrowDown') next = list[i + 1];
  else if (e.key === 'Home') next = list[0];
  else if (e.key === 'End') next = list[list.length - 1];
  else return;
  e.preventDefault();
  if (!next) return;
  activate(next);
  next.focus({ preventScroll: true });
  next.scrollIntoView({ block: 'nearest' });
}

/** Scrolling the list: older pages at the top, the jump-to-latest button. */
export function wireMessageList() {
  const list = $('#messages');
  // Every render path (a room, a page, a live message, an edit) ends here.
  let queued = false;
  new MutationObserver(() => {
    if (queued) return;
    queued = true;
    queueMicrotask(() => { queued = false; applyRoving(); });
  }).observe(list, { childList: true, subtree: true });
  list.addEventListener('keydown', onListKey);
  // A click or a focus inside a message makes it the active one.
  list.addEventListener('focusin', (e) => {
    const node = e.target.closest && e.target.closest('.message[data-id]');
    if (node && node.dataset.id !== activeId) activate(node);
  });
  $('#messages').addEventListener('scroll', () => {
    const box = $('#messages');
    if (box.scrollTop < 60 && state.view && state.view.kind === 'room') loadOlder();
    following = nearBottom(box);
    // Scrolled up: a way back to the newest message.
    $('#jump-latest').hidden = following || !state.view;
  }, { passive: true });
  $('#jump-latest').addEventListener('click', () => {
    scrollToLatest();
    $('#composer').focus();
  });
}
