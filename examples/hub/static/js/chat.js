// The open room's /chat connection: join, recovery with ?since=&epoch= after a
// drop, older pages, and the dispatch of its frames to the feature modules.

import { api, enc, wsUrl } from './api.js';
import { setComposerEnabled } from './composer.js';
import { renderDmList } from './dm.js';
import { isMine } from './identity.js';
import { onMention } from './mentions.js';
import { appendMessageEl, appendTransient, focusMessage, renderRoomMessages, updateMessageEl } from './message-list.js';
import { normMessage, oldestId, storeMessage } from './messages.js';
import { announceModeration, onMutedError } from './moderation.js';
import { matchPending, onAck, sendPending, updatePendingEl } from './outbox.js';
import { renderPresence } from './presence.js';
import { onRead, onReads, scheduleRead } from './reads.js';
import { rememberAdhocRoom, renderRoomList, roomName } from './rooms.js';
import { renderSearchResults } from './search.js';
import { Conn } from './socket.js';
import { currentRoom, roomState, state } from './state.js';
import { save, STORAGE } from './storage.js';
import { onThread, renderThread } from './threads.js';
import { clearTyping, onTyping, typingJustSent } from './typing.js';
import { applyUpdate, isUpdate } from './updates.js';
import { closeView, renderHeader } from './views.js';
import { $ } from './ui/dom.js';
import { setConnStatus, showNotice, updateTitle } from './ui/status.js';
import { toast } from './ui/toasts.js';

/** The close reason of the sockets an explicit leave closes (code 1000), as the hub sends it. */
export const LEFT_REASON = 'you left this room';

/**
 * Tell the hub I leave room `id`: it ends my membership, saves one "left the chat" line and
 * closes my sockets in the room. Through the open room's socket (`{"type":"leave"}`) when it is
 * that room's, else `POST /rooms/{id}/leave` (no join first, so no join line either).
 */
export function sendLeave(id) {
  const conn = state.chat;
  if (conn && !conn.stopped && conn.open && state.view && state.view.kind === 'room' && state.view.id === id) {
    conn.leaving = true;
    if (conn.send({ type: 'leave' })) return;
  }
  api('POST', `/rooms/${enc(id)}/leave`).then((res) => {
    if (!res.ok) toast(`Could not leave #${id} on the hub: ${res.status}`, { kind: 'error' });
  });
}

/** Open a room; with focusId, jump to that message once it is on screen (mentions, search). */
export function openRoom(id, focusId) {
  if (!state.me) return;
  id = String(id);
  if (focusId !== undefined && focusId !== null) roomState(id).focusId = Number(focusId);
  if (state.view && state.view.kind === 'room' && state.view.id === id && state.chat && !state.chat.stopped) {
    const r = roomState(id);
    if (r.focusId !== null && r.gotInitial) {
      focusMessage(r.focusId);
      r.focusId = null;
    }
    $('#composer').focus();
    return;
  }
  closeView();
  if (!state.rooms.has(id)) rememberAdhocRoom(id);
  state.view = { kind: 'room', id };
  save(STORAGE.last(state.me.sub), { kind: 'room', id });
  state.mentionBadges.delete(id);
  updateTitle();
  const r = roomState(id);
  r.gotInitial = false;
  r.forbidden = false;
  r.typing.clear();
  renderHeader();
  renderRoomList();
  renderDmList();
  renderPresence();
  setComposerEnabled(true, `Message #${roomName(id)}`);
  renderRoomMessages(r, { toBottom: true });

  const conn = new Conn({
    url: () => {
      let extra = '';
      if (r.lastId !== null && r.messages.size) {
        extra += `&since=${enc(r.lastId)}`;
        if (r.epoch !== null) extra += `&epoch=${enc(r.epoch)}`;
      }
      return wsUrl(`/chat/${enc(id)}`, extra);
    },
    onOpen: () => { r.gotInitial = false; conn.notFound = 0; },
    onFrame: (f) => onChatFrame(r, conn, f),
    onStatus: (s) => { if (state.chat === conn) setConnStatus(s); },
    onClose: (ev, opened, fails) => {
      if (state.chat !== conn) return 'stop';
      r.loadingOlder = false;
      if (ev.code === 1000 && ev.reason === LEFT_REASON) {
        // I left this room (here or in another tab): stay out until I open it again.
        setConnStatus('idle');
        showNotice('You left this room. Open it again to rejoin.', 'info');
        setComposerEnabled(false, 'You left this room');
        return 'stop';
      }
      if (ev.code === 4003) {
        r.forbidden = true;
        setConnStatus('forbidden');
        showNotice('You can no longer read this room: access was refused (banned or not a member).', 'error');
        setComposerEnabled(false, 'You cannot post here');
        return 'stop';
      }
      if (ev.code === 4000) {
        // Kicked by a moderator: say so and stay out until the user
        // chooses to rejoin (a kick is not a ban).
        setConnStatus('kicked');
        showNotice('You were removed from this room by a moderator. Open the room again to rejoin.', 'error');
        setComposerEnabled(false, 'You were removed from this room');
        return 'stop';
      }
      if (!opened && fails >= 2) checkRoomAccess(id, conn);
      return undefined;
    },
  });
  state.chat = conn;
  conn.start();
  setTimeout(() => { if (state.chat === conn) $('#composer').focus(); }, 0);
}

/** The upgrade was refused before opening: ask the REST API why (403 private room, 401 token). */
async function checkRoomAccess(id, conn) {
  const res = await api('GET', `/rooms/${enc(id)}`);
  if (state.chat !== conn) return;
  // 404: the hub hides private rooms from non-members (and never-created rooms are 404 too): with
  // the upgrade refused twice in a row while the hub answers, that is what this is.
  conn.notFound = res.status === 404 ? (conn.notFound || 0) + 1 : 0;
  if (res.status === 403 || conn.notFound >= 2) {
    conn.stop();
    setConnStatus('forbidden');
    showNotice(`#${roomName(id)} is private, or you are banned from it, or joining too often: the hub refused to let you in. Open it again to retry.`, 'error');
    setComposerEnabled(false, 'You cannot post here');
  }
}

function onChatFrame(r, conn, f) {
  if (state.chat !== conn) return;
  switch (f.type) {
    case 'history': return onHistory(r, conn, f);
    case 'reads': return onReads(r, f);
    case 'message':
    case 'system': return onLiveMessage(r, normMessage(f));
    case 'ack': return onAck(r, f);
    case 'typing': return onTyping(r, f);
    case 'reaction':
    case 'edited':
    case 'deleted': return applyUpdate(r, f);
    case 'read': return onRead(r, f);
    case 'thread': return onThread(r, f);
    case 'search_results': return renderSearchResults(f);
    case 'mention': return onMention(f);
    case 'error': return onErrorFrame(r, f);
    default: return undefined;
  }
}

function onHistory(r, conn, f) {
  const msgs = Array.isArray(f.messages) ? f.messages.map(normMessage) : [];
  const box = $('#messages');
  if (!r.gotInitial) {
    r.gotInitial = true;
    conn.healthy();
    if ($('#notice').dataset.kind === 'retry') showNotice('');
    const epoch = f.epoch === undefined || f.epoch === null ? null : String(f.epoch);
    const epochChanged = epoch !== null && r.epoch !== null && epoch !== r.epoch;
    if (f.recovered === true && !epochChanged) {
      // What was missed, in id order: messages, and update events to
      // messages already held (edits, deletes, reactions).
      for (const m of msgs) {
        if (isUpdate(m)) {
          applyUpdate(r, m);
          continue;
        }
        matchPending(r, m);
        storeMessage(r, m);
      }
    } else {
      // A fresh join, or the gap is gone from history: the given history replaces the view.
      r.messages.clear();
      r.replies.clear();
      r.lastId = null;
      for (const m of msgs) {
        if (isUpdate(m)) continue; // a fresh join's history has none
        matchPending(r, m);
        storeMessage(r, m);
      }
      r.noMore = msgs.length < 50;
      if (f.recovered === false && r.epoch !== null) toast('Some messages were missed while disconnected; showing the latest history.', { timeout: 4000 });
    }
    if (epoch !== null) r.epoch = epoch;
    if (!msgs.length) r.noMore = true;
    renderHeader();
    renderRoomMessages(r, { toBottom: true });
    if (state.threadRoot !== null) renderThread(r);
    // Anything typed while we were away goes out now.
    for (const p of r.pending) {
      if (!p.failed) sendPending(r, p);
    }
    scheduleRead(r);
    if (r.focusId !== null) {
      focusMessage(r.focusId);
      r.focusId = null;
    }
    return;
  }
  // A page of older messages (or any later history reply): merge by id, keep the scroll anchor.
  const before = box.scrollHeight - box.scrollTop;
  for (const m of msgs) {
    if (isUpdate(m)) applyUpdate(r, m);
    else storeMessage(r, m);
  }
  if (r.loadingOlder) {
    r.loadingOlder = false;
    if (msgs.length < (r.pageLimit || 50)) r.noMore = true;
  }
  const oldest = oldestId(r);
  if (oldest !== null && oldest <= 0) r.noMore = true;
  renderHeader();
  renderRoomMessages(r);
  box.scrollTop = box.scrollHeight - before;
}

export function loadOlder() {
  const r = currentRoom();
  if (!r || r.loadingOlder || r.noMore || !state.chat || !state.chat.open) return;
  const oldest = oldestId(r);
  if (oldest === null || oldest <= 0) {
    r.noMore = true;
    renderRoomMessages(r);
    return;
  }
  r.loadingOlder = true;
  r.pageLimit = 50;
  state.chat.send({ type: 'history', before: oldest, limit: 50 });
  const btn = $('#load-older');
  if (btn) {
    btn.textContent = 'Loading…';
    btn.disabled = true;
  }
  // Do not stay stuck if the reply never comes.
  setTimeout(() => {
    if (r.loadingOlder) {
      r.loadingOlder = false;
      if (currentRoom() === r) renderRoomMessages(r);
    }
  }, 8000);
}

function onLiveMessage(r, m) {
  if (typeof m.id !== 'number') {
    // A notice without an id is live only: someone's socket came or went
    // (a reconnect, a room switch, a closed tab), not a membership change.
    // It is not a line of the room's history.
    if (m.type === 'system') return;
    // Other unsaved frames: show them but keep them out of the store.
    if (currentRoom() === r) appendTransient(m);
    return;
  }
  const existed = r.messages.has(m.id);
  matchPending(r, m);
  storeMessage(r, m);
  announceModeration(r, m);
  if (currentRoom() !== r) return;
  renderHeader();
  if (m.thread_id !== undefined && r.messages.has(m.thread_id)) {
    updateMessageEl(r, m.thread_id);
    if (state.threadRoot === m.thread_id) renderThread(r, { toBottom: true });
  } else if (existed) {
    updateMessageEl(r, m.id);
  } else {
    appendMessageEl(r, m);
  }
  if (m.type === 'message' && !isMine(m) && m.user) clearTyping(r, m.user);
  scheduleRead(r);
}

export function onErrorFrame(r, f) {
  const code = f.code || 'error';
  const detail = f.detail || f.message || '';
  if (r && r.loadingOlder) r.loadingOlder = false;
  // Typing notices are best effort: a refused one is not worth a word.
  if (/typing/i.test(detail) || typingJustSent()) {
    if (code === 'rate_limited') return;
  }
  if (code === 'muted' && r) onMutedError(r);
  // A message the hub refused: the newest unacknowledged one gets a Retry.
  if (r && ['muted', 'forbidden', 'too_large', 'rate_limited'].includes(code)) {
    const now = Date.now();
    const p = r.pending.filter((x) => x.sent && !x.failed && now - x.sentAt < 5000).pop();
    if (p) {
      p.failed = true;
      updatePendingEl(p);
    }
  }
  toast(detail ? `${detail}` : code, { kind: 'error', title: code.replace(/_/g, ' ') });
}
