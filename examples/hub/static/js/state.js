// The store: what the client knows and shows, shared by every module that
// imports it. Each module keeps its own timers and private state; what more
// than one module reads or writes lives here.

export const state = {
  token: null,
  me: null, // {sub, username, roles}
  isAdmin: false,
  rooms: new Map(), // id -> {id, name, private, owner, members, adhoc}
  roomStates: new Map(), // id -> RoomState
  view: null, // {kind: 'room', id} | {kind: 'dm', peer}
  chat: null, // Conn of the open room
  dm: null, // {peer, conn, messages, pending}
  presence: null, // Conn of /presence
  inbox: null, // Conn of /dm/{me}: notifications of direct messages
  inboxOk: false, // the inbox is open, so the open DM view need not notify
  users: new Map(), // sub -> {id, username, status, guessed}
  dmPeers: [], // subs, most recent first
  dmNames: {}, // sub -> last known username, for peers not on presence
  knownNames: {}, // sub -> username learnt from messages (user_id) and DMs (from_id)
  dmUnread: new Map(), // sub -> count
  dmUnreadMore: new Set(), // subs whose count the hub stopped at (shown "n+")
  roomUnread: new Map(), // room id -> messages by others since my read position (unread.js)
  roomUnreadMore: new Set(), // room ids whose count the hub stopped at
  mentionBadges: new Map(), // room id -> count
  seenMentions: new Set(), // `room:message id` of mentions already notified
  mentionsCaughtUp: false, // this session asked the hub for mentions made while I was away
  fileMeta: new Map(), // file id -> {type, name}
  threadRoot: null, // id of the message whose thread is open
  presenceState: null, // status of the presence connection, shown when no view is open
  editing: null, // message id being edited inline
  editingWhere: 'main', // in the main list or the thread panel
  myStatus: 'online', // online | away | busy
  roomsTimer: null, // refreshes the room list
  renewTimer: null, // renews a guest's token while the page is open
};

/** What the client knows of one room, made on first use and kept across visits. */
export function roomState(id) {
  let r = state.roomStates.get(id);
  if (!r) {
    r = {
      id,
      messages: new Map(), // id -> message
      epoch: null,
      lastId: null,
      reads: {}, // sub -> message id
      myRead: -1,
      typing: new Map(), // display name -> expiry ms
      pending: [], // {client_id, content, thread_id, attachments, ts, sent, failed}
      replies: new Map(), // root id -> Set(reply ids)
      banned: new Set(), // subs banned here, from moderation notices
      muted: new Set(), // subs muted here
      noMore: false,
      loadingOlder: false,
      gotInitial: false,
      forbidden: false,
      focusId: null,
    };
    state.roomStates.set(id, r);
  }
  return r;
}

/** The open room's state, or null when no room is open. */
export const currentRoom = () => (state.view && state.view.kind === 'room' ? roomState(state.view.id) : null);

/** Forget the signed-out user's session (its connections are stopped by the caller). */
export function clearSession() {
  state.chat = state.presence = state.inbox = state.dm = null;
  state.token = null;
  state.me = null;
  state.isAdmin = false;
  state.rooms.clear();
  state.roomStates.clear();
  state.users.clear();
  state.knownNames = {};
  state.view = null;
  state.dmUnread.clear();
  state.dmUnreadMore.clear();
  state.roomUnread.clear();
  state.roomUnreadMore.clear();
  state.mentionBadges.clear();
  state.seenMentions.clear();
  state.mentionsCaughtUp = false;
  state.threadRoot = null;
  state.editing = null;
  state.inboxOk = false;
  state.presenceState = null;
}
