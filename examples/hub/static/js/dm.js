// Direct messages: the open conversation's /dm connection, the DM list, and
// the inbox connection that notifies of messages from anyone else.

import { enc, wsUrl } from './api.js';
import { onErrorFrame } from './chat.js';
import { setComposerEnabled } from './composer.js';
import { isMe, labelOf, nameOf, subForName } from './identity.js';
import { onMention } from './mentions.js';
import { dayDivider, mainBox, nearBottom } from './message-list.js';
import { randomId, renderPendingEl } from './outbox.js';
import { renderPresence } from './presence.js';
import { renderRoomList } from './rooms.js';
import { probeToken } from './session.js';
import { Conn } from './socket.js';
import { state } from './state.js';
import { save, STORAGE } from './storage.js';
import { closeView, renderEmptyView, renderHeader } from './views.js';
import { avatar } from './ui/avatar.js';
import { dayKey, fmtFull, fmtTime } from './ui/dates.js';
import { $, h } from './ui/dom.js';
import { renderRichText } from './ui/rich-text.js';
import { setConnStatus, showNotice, updateTitle } from './ui/status.js';
import { toast } from './ui/toasts.js';
import { renderAttachments } from './files.js';
import { fmtUnread, unreadBadge } from './unread.js';

function saveDms() {
  save(STORAGE.dms(state.me.sub), { peers: state.dmPeers.slice(0, 30), names: state.dmNames });
}

function addDmPeer(sub, name) {
  if (!sub || sub === state.me.sub) return;
  state.dmPeers = [sub, ...state.dmPeers.filter((x) => x !== sub)];
  if (name) state.dmNames[sub] = name;
  saveDms();
}

export function renderDmList() {
  if (!state.me) return;
  const ul = $('#dm-list');
  ul.replaceChildren(...state.dmPeers.map((sub) => {
    const u = state.users.get(sub);
    const status = u ? u.status : 'offline';
    const active = state.view && state.view.kind === 'dm' && state.view.peer === sub;
    const unread = active ? 0 : state.dmUnread.get(sub);
    const unreadText = unread ? fmtUnread(unread, state.dmUnreadMore.has(sub)) : '';
    const av = avatar(nameOf(sub), 'avatar-sm');
    av.append(h('span', { class: `status-dot ${status}` }));
    return h('li', { class: `nav-item${active ? ' active' : ''}${unread ? ' unread' : ''}`, dataset: { dm: sub } },
      h('button', {
        type: 'button', class: 'nav-btn',
        on: { click: () => openDm(sub) },
      },
        av,
        h('span', { class: 'nav-label', text: labelOf(sub) }),
        unread ? unreadBadge(unreadText) : null),
      h('button', {
        type: 'button', class: 'nav-x', title: 'Close conversation', 'aria-label': `Close conversation with ${nameOf(sub)}`, text: '✕',
        on: {
          click: (e) => {
            e.stopPropagation();
            state.dmPeers = state.dmPeers.filter((x) => x !== sub);
            saveDms();
            if (state.view && state.view.kind === 'dm' && state.view.peer === sub) { closeView(); renderEmptyView(); }
            renderDmList();
          },
        },
      }));
  }));
  if (!state.dmPeers.length) ul.append(h('li', { class: 'nav-empty', text: 'Click someone under People' }));
}

export function openDm(sub) {
  if (!state.me || !sub || sub === state.me.sub) return;
  if (state.view && state.view.kind === 'dm' && state.view.peer === sub && state.dm && !state.dm.conn.stopped) {
    $('#composer').focus();
    return;
  }
  closeView();
  addDmPeer(sub, state.users.get(sub) ? state.users.get(sub).username : state.dmNames[sub]);
  state.view = { kind: 'dm', peer: sub };
  save(STORAGE.last(state.me.sub), { kind: 'dm', peer: sub });
  state.dmUnread.delete(sub);
  state.dmUnreadMore.delete(sub);
  updateTitle();
  const d = { peer: sub, messages: [], pending: [], loaded: false, conn: null, myRead: 0 };
  renderHeader();
  renderRoomList();
  renderDmList();
  renderPresence();
  setComposerEnabled(true, `Message ${nameOf(sub)}`);
  renderDm(d, true);
  const conn = new Conn({
    url: () => wsUrl(`/dm/${enc(sub)}`),
    onFrame: (f) => onDmFrame(d, f),
    onStatus: (s) => { if (state.dm === d) setConnStatus(s); },
    onClose: (ev, opened, fails) => {
      if (state.dm !== d) return 'stop';
      if (ev.code === 4003) {
        setConnStatus('forbidden');
        showNotice('The hub refused this conversation.', 'error');
        return 'stop';
      }
      if (!opened && fails >= 3) probeToken();
      return undefined;
    },
  });
  d.conn = conn;
  state.dm = d;
  conn.start();
  setTimeout(() => { if (state.dm === d) $('#composer').focus(); }, 0);
}

// Who sent a direct message: `from_id` when the hub names it, else the display name.
const dmFromId = (f) => {
  const id = f.from_id ?? f.from_sub ?? f.user_id ?? f.sub;
  return id === undefined || id === null ? null : String(id);
};

/** Our own copy of a message we sent (the hub adds `to` to the sender's copies). */
function dmIsMine(f) {
  const fromId = dmFromId(f);
  if (fromId !== null) return fromId === state.me.sub;
  if (f.to !== undefined && f.to !== null) return String(f.to) !== state.me.sub || isMe(f.from);
  return isMe(f.from);
}

/** Only frames of this conversation: from the peer, or ours to the peer. */
function dmBelongs(d, f) {
  const peerName = nameOf(d.peer);
  if (dmIsMine(f)) {
    if (f.to === undefined || f.to === null) return true;
    return String(f.to) === d.peer || String(f.to) === peerName;
  }
  const fromId = dmFromId(f);
  if (fromId !== null) return fromId === d.peer;
  const from = String(f.from ?? '');
  return from === peerName || from === d.peer;
}

function onDmFrame(d, f) {
  if (state.dm !== d) return;
  switch (f.type) {
    case 'history': {
      d.conn.healthy();
      d.loaded = true;
      d.messages = (Array.isArray(f.messages) ? f.messages : []).filter((m) => m && typeof m === 'object');
      for (const p of d.pending) if (!p.sent) sendDmPending(d, p);
      renderDm(d, true);
      sendDmRead(d);
      return;
    }
    case 'direct_message': {
      if (!dmBelongs(d, f)) {
        if (!state.inboxOk && !dmIsMine(f)) notifyDm(f);
        return;
      }
      if (dmIsMine(f)) {
        const idx = d.pending.findIndex((p) => p.content === f.content);
        if (idx >= 0) d.pending.splice(idx, 1);
      } else if (f.from && !state.users.has(d.peer)) {
        state.dmNames[d.peer] = String(f.from);
      }
      d.messages.push(f);
      renderDm(d, nearBottom(mainBox()) || dmIsMine(f));
      sendDmRead(d);
      return;
    }
    case 'mention': return onMention(f);
    case 'error': return onErrorFrame(null, f);
    default: return undefined;
  }
}

/** The conversation is on screen: what it shows is read (on every device: unread counts). */
function sendDmRead(d) {
  if (state.dm !== d || document.visibilityState !== 'visible') return;
  let last = 0;
  for (const m of d.messages) if (Number(m.id) > last) last = Number(m.id);
  if (last > d.myRead && d.conn.send({ type: 'read', message_id: last })) d.myRead = last;
}

document.addEventListener('visibilitychange', () => { if (state.dm) sendDmRead(state.dm); });

function renderDm(d, toBottom) {
  const box = mainBox();
  const nodes = [];
  if (!d.loaded) nodes.push(h('div', { class: 'loading', text: 'Loading conversation…' }));
  else {
    nodes.push(h('div', { class: 'room-start' },
      avatar(nameOf(d.peer), 'avatar-lg'),
      h('h2', { text: nameOf(d.peer) }),
      h('p', { text: `This is the beginning of your direct messages with ${nameOf(d.peer)}.` })));
  }
  let lastDay = null;
  d.messages.forEach((m, i) => {
    const day = dayKey(m.timestamp);
    if (day && day !== lastDay) {
      nodes.push(dayDivider(m.timestamp, day));
      lastDay = day;
    }
    const mine = dmIsMine(m);
    // Named as everywhere else: a short id is added when someone else has the same name.
    const name = mine ? labelOf(state.me.sub) : labelOf(dmFromId(m) ?? d.peer, m.from ?? nameOf(d.peer));
    const content = h('div', { class: 'content' });
    renderRichText(content, String(m.content ?? m.message ?? ''));
    const files = Array.isArray(m.attachments) && m.attachments.length ? renderAttachments(m.attachments) : null;
    const dataset = { day, index: String(i) };
    if (m.id !== undefined && m.id !== null) dataset.id = String(m.id);
    nodes.push(h('div', { class: `message dm${mine ? ' mine' : ''}`, dataset },
      avatar(name),
      h('div', { class: 'msg-body' },
        h('div', { class: 'msg-head' },
          h('span', { class: 'author', text: name }),
          h('time', { class: 'time', text: fmtTime(m.timestamp), title: fmtFull(m.timestamp) })),
        content, files)));
  });
  for (const p of d.pending) {
    nodes.push(renderPendingEl(p));
  }
  box.replaceChildren(...nodes);
  if (toBottom) box.scrollTop = box.scrollHeight;
}

function sendDmPending(d, p) {
  const frame = p.attachments && p.attachments.length ? { message: p.content, attachments: p.attachments } : { message: p.content };
  if (d.conn && d.conn.send(frame)) {
    p.sent = true;
    p.sentAt = Date.now();
    // Should the hub not echo our copy, stop showing it as pending after a while.
    setTimeout(() => {
      const idx = d.pending.indexOf(p);
      if (idx >= 0 && state.dm === d) {
        d.pending.splice(idx, 1);
        d.messages.push({ from: state.me.username, to: d.peer, content: p.content, attachments: p.attachments, timestamp: new Date(p.ts).toISOString() });
        renderDm(d, nearBottom(mainBox()));
      }
    }, 4000);
  }
}

export function sendDm(text, attachments) {
  const d = state.dm;
  if (!d) return;
  const p = { client_id: randomId(), content: text, attachments, ts: Date.now(), sent: false, failed: false };
  d.pending.push(p);
  mainBox().append(renderPendingEl(p));
  mainBox().scrollTop = mainBox().scrollHeight;
  sendDmPending(d, p);
}

function notifyDm(f) {
  const fromId = dmFromId(f);
  const sub = fromId !== null ? fromId : (subForName(f.from) || String(f.from));
  if (!sub || sub === state.me.sub) return;
  if (state.view && state.view.kind === 'dm' && state.view.peer === sub) return;
  addDmPeer(sub, String(f.from || sub));
  state.dmUnread.set(sub, (state.dmUnread.get(sub) || 0) + 1);
  renderDmList();
  renderPresence();
  updateTitle();
  toast(String(f.content ?? ''), { kind: 'dm', title: `Message from ${f.from || sub}`, onClick: () => openDm(sub) });
}

// A /dm connection receives every direct message sent to us, so one to our own
// id works as an inbox for notifications while another view is open.
export function startInbox() {
  const conn = new Conn({
    url: () => wsUrl(`/dm/${enc(state.me.sub)}`),
    onOpen: () => { state.inboxOk = true; },
    onFrame: (f) => {
      if (state.inbox !== conn) return;
      if (f.type === 'history') { conn.healthy(); return; }
      if (f.type === 'direct_message') {
        if (dmIsMine(f)) return;
        notifyDm(f);
      } else if (f.type === 'mention') onMention(f);
    },
    onClose: (ev, opened, fails) => {
      if (state.inbox !== conn) return 'stop';
      state.inboxOk = false;
      if (ev.code === 4003 || fails >= 3) return 'stop';
      return undefined;
    },
  });
  state.inbox = conn;
  conn.start();
}
