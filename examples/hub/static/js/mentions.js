// Mentions of me: highlighting, sidebar badges and a toast.

import { openRoom } from './chat.js';
import { rememberAdhocRoom, renderRoomList, roomName } from './rooms.js';
import { state } from './state.js';
import { updateTitle } from './ui/status.js';
import { toast } from './ui/toasts.js';

export function mentionsMe(m) {
  if (!state.me) return false;
  const mine = [state.me.sub.toLowerCase(), String(state.me.username).toLowerCase()];
  if (Array.isArray(m.mentions) && m.mentions.some((x) => mine.includes(String(x).toLowerCase()))) return true;
  if (typeof m.content !== 'string') return false;
  const re = /@([A-Za-z0-9_.-]+)/g;
  let mt;
  while ((mt = re.exec(m.content))) {
    if (mine.includes(mt[1].toLowerCase())) return true;
  }
  return false;
}

export function onMention(f) {
  const key = `${f.room}:${f.message_id}`;
  if (state.seenMentions.has(key)) return;
  state.seenMentions.add(key);
  const room = f.room !== undefined && f.room !== null ? String(f.room) : null;
  const viewing = room && state.view && state.view.kind === 'room' && state.view.id === room && document.visibilityState === 'visible';
  if (room && !viewing) {
    if (!state.rooms.has(room)) rememberAdhocRoom(room);
    state.mentionBadges.set(room, (state.mentionBadges.get(room) || 0) + 1);
    renderRoomList();
    updateTitle();
  }
  toast(f.content || '', {
    kind: 'mention',
    title: `${f.from || 'Someone'} mentioned you${room ? ` in #${roomName(room)}` : ''}`,
    onClick: room ? () => openRoom(room, f.message_id) : null,
  });
}
