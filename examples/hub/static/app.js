// channelbox browser client.
//
// Plain ES2020, no build step, no network resources other than the hub that
// served this page. Written against the hub's PROTOCOL.md: JWT auth,
// /chat/{room}, /presence, /dm/{user} and the extensions (typing, reactions,
// edit, delete, read receipts, threads, mentions, search, paging, recovery,
// rooms and files APIs).
//
// Every piece of user data reaches the DOM through textContent or attribute
// setters, never innerHTML.
'use strict';

(() => {
  // ---------------------------------------------------------------------------
  // Small DOM helpers
  // ---------------------------------------------------------------------------

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  /** h('div', {class, text, title, dataset, on, ...attrs}, children...) */
  function h(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') node.className = v;
        else if (k === 'text') node.textContent = String(v);
        else if (k === 'dataset') Object.assign(node.dataset, v);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
        else if (k in node && typeof v !== 'string') node[k] = v;
        else node.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const enc = encodeURIComponent;
  const EMOJIS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];
  const STORAGE = {
    token: 'cbx.token',
    status: 'cbx.status',
    rooms: (sub) => `cbx.rooms.${sub}`,
    dms: (sub) => `cbx.dms.${sub}`,
    last: (sub) => `cbx.lastView.${sub}`,
  };

  function store(key, value) {
    try {
      if (value === undefined) localStorage.removeItem(key);
      else localStorage.setItem(key, typeof value === 'string' ? value : JSON.stringify(value));
    } catch (_) { /* storage may be disabled */ }
  }
  function load(key, fallback) {
    try {
      const v = localStorage.getItem(key);
      if (v === null) return fallback;
      return v;
    } catch (_) { return fallback; }
  }
  function loadJson(key, fallback) {
    const v = load(key, null);
    if (v === null) return fallback;
    try { return JSON.parse(v); } catch (_) { return fallback; }
  }

  function randomId() {
    if (window.crypto && crypto.getRandomValues) {
      const b = new Uint8Array(12);
      crypto.getRandomValues(b);
      return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    }
    return Math.random().toString(36).slice(2) + Date.now().toString(36);
  }

  function fmtTime(ts) {
    const d = ts ? new Date(ts) : null;
    if (!d || isNaN(d)) return '';
    return d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
  }
  function fmtFull(ts) {
    const d = ts ? new Date(ts) : null;
    if (!d || isNaN(d)) return '';
    return d.toLocaleString();
  }
  function dayKey(ts) {
    const d = ts ? new Date(ts) : null;
    if (!d || isNaN(d)) return '';
    return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
  }
  function fmtDay(ts) {
    const d = new Date(ts);
    const today = new Date();
    const yesterday = new Date(Date.now() - 864e5);
    if (dayKey(d) === dayKey(today)) return 'Today';
    if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
    return d.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
  }

  function hashHue(s) {
    let x = 0;
    for (const ch of String(s)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
    return x % 360;
  }
  function initials(name) {
    const s = String(name || '?').trim();
    const parts = s.split(/[\s._-]+/).filter(Boolean);
    const first = Array.from(parts[0] || s)[0] || '?';
    const second = parts.length > 1 ? Array.from(parts[1])[0] : '';
    return (first + (second || '')).toUpperCase();
  }
  function avatar(name, cls = '') {
    const a = h('span', { class: `avatar ${cls}`.trim(), text: initials(name), 'aria-hidden': 'true' });
    a.style.setProperty('--hue', hashHue(name));
    return a;
  }

  // Inline SVG icons for the UI chrome: emoji fonts are not everywhere.
  const ICONS = {
    lock: 'M12 17a2 2 0 1 0 0-4 2 2 0 0 0 0 4zm6-9h-1V6A5 5 0 0 0 7 6v2H6a2 2 0 0 0-2 2v10a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V10a2 2 0 0 0-2-2zM9 6a3 3 0 0 1 6 0v2H9V6zm9 14H6V10h12v10z',
    smile: 'M15.5 11a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zm-7 0a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3zM12 17.5c2.3 0 4.3-1.5 5.1-3.5H6.9c.8 2 2.8 3.5 5.1 3.5zM12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16z',
    thread: 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2zm0 14H5.2L4 17.2V4h16v12zM7 7h10v2H7zm0 4h7v2H7z',
    edit: 'M3 17.25V21h3.75L17.8 9.94l-3.75-3.75L3 17.25zM20.7 7.04a1 1 0 0 0 0-1.41l-2.34-2.34a1 1 0 0 0-1.41 0l-1.83 1.83 3.75 3.75 1.83-1.83z',
    trash: 'M6 19a2 2 0 0 0 2 2h8a2 2 0 0 0 2-2V7H6v12zM8 9h8v10H8V9zm7.5-5-1-1h-5l-1 1H5v2h14V4h-3.5z',
    ban: 'M12 2a10 10 0 1 0 0 20 10 10 0 0 0 0-20zM4 12a8 8 0 0 1 12.9-6.3L5.7 16.9A7.9 7.9 0 0 1 4 12zm8 8a7.9 7.9 0 0 1-4.9-1.7L18.3 7.1A8 8 0 0 1 12 20z',
    kick: 'M16 17l5-5-5-5-1.4 1.4 2.6 2.6H7v2h10.2l-2.6 2.6L16 17zM4 5h8V3H4a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h8v-2H4V5z',
    mute: 'M16.5 12A4.5 4.5 0 0 0 14 8v2.2l2.5 2.5V12zM19 12c0 .9-.2 1.8-.5 2.6l1.5 1.5A8.8 8.8 0 0 0 21 12a9 9 0 0 0-7-8.8v2.1A7 7 0 0 1 19 12zM4.3 3 3 4.3 7.7 9H3v6h4l5 5v-6.7l4.3 4.3c-.7.5-1.4.9-2.3 1.2v2.1a9 9 0 0 0 3.7-1.8l2 2L21 19.7l-9-9L4.3 3zM12 4 9.9 6.1 12 8.2V4z',
    check: 'M9 16.2 4.8 12l-1.4 1.4L9 19 21 7l-1.4-1.4L9 16.2z',
    file: 'M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8l-6-6zm4 18H6V4h7v5h5v11z',
    chat: 'M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2zM6 9h12v2H6V9zm8 5H6v-2h8v2zm4-6H6V6h12v2z',
    join: 'M10 17l5-5-5-5-1.4 1.4 2.6 2.6H3v2h8.2l-2.6 2.6L10 17zm9 2h-6v2h6a2 2 0 0 0 2-2V5a2 2 0 0 0-2-2h-6v2h6v14z',
    info: 'M11 7h2v2h-2zm0 4h2v6h-2zm1-9a10 10 0 1 0 0 20 10 10 0 0 0 0-20zm0 18a8 8 0 1 1 0-16 8 8 0 0 1 0 16z',
  };
  function icon(name, size = 16, cls = '') {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('width', String(size));
    svg.setAttribute('height', String(size));
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('class', `icon ${cls}`.trim());
    const path = document.createElementNS(ns, 'path');
    path.setAttribute('fill', 'currentColor');
    path.setAttribute('d', ICONS[name] || ICONS.info);
    svg.append(path);
    return svg;
  }

  // ---------------------------------------------------------------------------
  // State
  // ---------------------------------------------------------------------------

  const S = {
    token: null,
    me: null, // {sub, username, roles}
    isAdmin: false,
    rooms: new Map(), // id -> {id, name, private, owner, members, adhoc}
    roomStates: new Map(), // id -> RoomState
    view: null, // {kind: 'room', id} | {kind: 'dm', peer}
    chat: null, // Conn of the open room
    dm: null, // {peer, conn, messages, pending}
    presence: null,
    inbox: null,
    inboxOk: false,
    users: new Map(), // sub -> {id, username, status, guessed}
    dmPeers: [], // subs, most recent first
    dmNames: {}, // sub -> last known username, for peers not on presence
    knownNames: {}, // sub -> username learnt from messages (user_id) and DMs (from_id)
    dmUnread: new Map(), // sub -> count
    mentionBadges: new Map(), // room id -> count
    seenMentions: new Set(),
    fileMeta: new Map(), // file id -> {type, name}
    threadRoot: null,
    presenceState: null,
    editing: null, // message id being edited inline
    editingWhere: 'main', // in the main list or the thread panel
    myStatus: 'online',
    roomsTimer: null,
  };

  function roomState(id) {
    let r = S.roomStates.get(id);
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
      S.roomStates.set(id, r);
    }
    return r;
  }

  const currentRoom = () => (S.view && S.view.kind === 'room' ? roomState(S.view.id) : null);

  // ---------------------------------------------------------------------------
  // Identity helpers: `sub` is the id, `username` the display name.
  // ---------------------------------------------------------------------------

  function subForName(name) {
    if (name === undefined || name === null) return null;
    const s = String(name);
    if (S.users.has(s) && !S.users.get(s).guessed) return s;
    const low = s.toLowerCase();
    for (const u of S.users.values()) {
      if (!u.guessed && String(u.username).toLowerCase() === low) return u.id;
    }
    if (S.me && (s === S.me.username)) return S.me.sub;
    if (S.users.has(s)) return s;
    for (const [sub, uname] of Object.entries(S.knownNames)) if (uname.toLowerCase() === low) return sub;
    return null;
  }
  /** Normalize a user reference (sub or display name) to a sub when possible. */
  const toSub = (x) => subForName(x) || (x === undefined || x === null ? x : String(x));
  function nameOf(sub) {
    if (S.me && sub === S.me.sub) return S.me.username;
    const u = S.users.get(sub);
    if (u) return u.username;
    if (S.dmNames[sub]) return S.dmNames[sub];
    if (S.knownNames[sub]) return S.knownNames[sub];
    return String(sub);
  }
  const isMe = (x) => !!S.me && x !== undefined && x !== null && (String(x) === S.me.sub || String(x) === S.me.username);
  function isMine(m) {
    const sub = m.sub || m.user_id;
    if (sub) return sub === S.me.sub;
    return m.user === S.me.username || m.user === S.me.sub;
  }
  function authorSub(m) {
    return m.sub || m.user_id || toSub(m.user);
  }
  function isMod(roomId) {
    if (S.isAdmin) return true;
    const room = S.rooms.get(roomId);
    return !!room && !!room.owner && room.owner === S.me.sub;
  }
  function mentionsMe(m) {
    if (!S.me) return false;
    const mine = [S.me.sub.toLowerCase(), String(S.me.username).toLowerCase()];
    if (Array.isArray(m.mentions) && m.mentions.some((x) => mine.includes(String(x).toLowerCase()))) return true;
    if (typeof m.content !== 'string') return false;
    const re = /@([A-Za-z0-9_.-]+)/g;
    let mt;
    while ((mt = re.exec(m.content))) {
      if (mine.includes(mt[1].toLowerCase())) return true;
    }
    return false;
  }

  // ---------------------------------------------------------------------------
  // JWT, HTTP
  // ---------------------------------------------------------------------------

  function decodeJwt(token) {
    const parts = String(token).split('.');
    if (parts.length < 2) throw new Error('not a JWT');
    let b = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4) b += '=';
    const bin = atob(b);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    if (!claims || typeof claims !== 'object' || !claims.sub) throw new Error('token has no sub claim');
    return claims;
  }

  function wsUrl(path, extra = '') {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return `${proto}//${location.host}${path}?token=${enc(S.token)}${extra}`;
  }
  const fileUrl = (id) => `/files/${enc(id)}?token=${enc(S.token)}`;

  async function api(method, path, body, opts = {}) {
    const headers = { Authorization: `Bearer ${S.token}` };
    let payload;
    if (opts.raw) {
      payload = body;
      headers['Content-Type'] = opts.contentType || 'application/octet-stream';
    } else if (body !== undefined) {
      payload = JSON.stringify(body);
      headers['Content-Type'] = 'application/json';
    }
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      return { ok: false, status: 0, data: null, error: 'network error' };
    }
    let data = null;
    const text = await res.text().catch(() => '');
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
    if (res.status === 401 && !opts.no401) {
      sessionExpired();
    }
    return { ok: res.ok, status: res.status, data };
  }

  function errText(r) {
    if (!r) return 'unknown error';
    const d = r.data;
    if (d && typeof d === 'object') return d.detail || d.error || d.message || `HTTP ${r.status}`;
    if (typeof d === 'string' && d.trim()) return d.trim().slice(0, 200);
    return r.status ? `HTTP ${r.status}` : (r.error || 'network error');
  }

  // ---------------------------------------------------------------------------
  // Reconnecting WebSocket
  // ---------------------------------------------------------------------------

  class Conn {
    /**
     * opts: url() -> string, onFrame(frame), onOpen(), onClose(event, opened) -> 'stop' | undefined,
     *       onStatus(state), onFailBeforeOpen(count)
     */
    constructor(opts) {
      this.opts = opts;
      this.ws = null;
      this.attempt = 0;
      this.stopped = false;
      this.timer = null;
      this.failsBeforeOpen = 0;
    }
    start() {
      this.stopped = false;
      this.connect();
      return this;
    }
    connect() {
      clearTimeout(this.timer);
      if (this.stopped) return;
      let ws;
      try {
        ws = new WebSocket(this.opts.url());
      } catch (_) {
        this.schedule();
        return;
      }
      this.ws = ws;
      this.opened = false;
      this.status(this.attempt ? 'reconnecting' : 'connecting');
      ws.onopen = () => {
        if (ws !== this.ws) return;
        this.opened = true;
        this.failsBeforeOpen = 0;
        this.status('connected');
        if (this.opts.onOpen) this.opts.onOpen();
      };
      ws.onmessage = (ev) => {
        if (ws !== this.ws) return;
        let frame;
        try { frame = JSON.parse(ev.data); } catch (_) { return; }
        if (!frame || typeof frame !== 'object') return;
        try {
          this.opts.onFrame(frame);
        } catch (e) {
          console.error('frame handler failed', frame, e);
        }
      };
      ws.onerror = () => {};
      ws.onclose = (ev) => {
        if (ws !== this.ws) return;
        this.ws = null;
        if (this.stopped) return;
        if (!this.opened) this.failsBeforeOpen += 1;
        const verdict = this.opts.onClose ? this.opts.onClose(ev, this.opened, this.failsBeforeOpen) : undefined;
        if (verdict === 'stop') {
          this.stopped = true;
          return;
        }
        this.schedule();
      };
    }
    schedule() {
      if (this.stopped) return;
      const delay = Math.min(15000, 1000 * 2 ** this.attempt);
      this.attempt += 1;
      this.status('reconnecting');
      this.timer = setTimeout(() => this.connect(), delay);
    }
    /** The connection proved useful: the next drop starts the backoff at 1s again. */
    healthy() {
      this.attempt = 0;
    }
    status(s) {
      if (this.opts.onStatus) this.opts.onStatus(s);
    }
    get open() {
      return !!this.ws && this.ws.readyState === WebSocket.OPEN;
    }
    send(obj) {
      if (!this.open) return false;
      this.ws.send(JSON.stringify(obj));
      return true;
    }
    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        try { ws.close(1000); } catch (_) { /* already closing */ }
      }
    }
  }

  function setConnStatus(state) {
    const node = $('#connection-status');
    const text = {
      connected: 'connected',
      connecting: 'connecting…',
      reconnecting: 'reconnecting…',
      forbidden: 'forbidden',
      idle: 'not joined',
      offline: 'offline',
    }[state] || state;
    node.textContent = text;
    node.dataset.state = state;
  }

  // ---------------------------------------------------------------------------
  // Toasts and notices
  // ---------------------------------------------------------------------------

  function toast(body, opts = {}) {
    const kind = opts.kind || 'info';
    // The same notice again (say an error repeated for every typing frame) does not stack up.
    const key = `${kind}|${opts.title || ''}|${body}`;
    for (const old of $$('#toasts .toast')) {
      if (old.dataset.key === key && !old.classList.contains('leaving')) return old;
    }
    const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', text: '✕' });
    const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
      h('div', { class: 'toast-body' },
        opts.title ? h('div', { class: 'toast-title', text: opts.title }) : null,
        h('div', { class: 'toast-text', text: body })),
      close);
    t.dataset.key = key;
    const remove = () => {
      t.classList.add('leaving');
      setTimeout(() => t.remove(), 180);
    };
    close.addEventListener('click', (e) => { e.stopPropagation(); remove(); });
    // A click on the toast acts on it (opens the room or conversation) or dismisses it.
    if (opts.onClick) t.classList.add('clickable');
    t.addEventListener('click', () => {
      if (opts.onClick) opts.onClick();
      remove();
    });
    $('#toasts').append(t);
    while ($('#toasts').children.length > 5) $('#toasts').firstElementChild.remove();
    const timeout = opts.timeout === undefined ? (kind === 'info' ? 4000 : 6000) : opts.timeout;
    if (timeout) setTimeout(remove, timeout);
    return t;
  }

  function showNotice(text, kind = 'warn') {
    const n = $('#notice');
    n.textContent = text;
    n.dataset.kind = kind;
    n.hidden = !text;
  }

  function updateTitle() {
    let n = 0;
    for (const c of S.dmUnread.values()) n += c;
    for (const c of S.mentionBadges.values()) n += c;
    document.title = n ? `(${n}) channelbox` : 'channelbox';
  }

  // ---------------------------------------------------------------------------
  // Sign-in
  // ---------------------------------------------------------------------------

  function signinError(text) {
    $('#signin-error').textContent = text || '';
  }

  async function guestLogin(e) {
    e.preventDefault();
    const username = $('#guest-name').value.trim();
    if (!username) {
      signinError('Pick a name first.');
      $('#guest-name').focus();
      return;
    }
    $('#guest-login').disabled = true;
    signinError('');
    try {
      const res = await fetch('/auth/guest', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username }),
      });
      const text = await res.text();
      let data = null;
      try { data = JSON.parse(text); } catch (_) { /* not JSON */ }
      if (!res.ok) {
        const why = (data && (data.detail || data.error)) || text || `HTTP ${res.status}`;
        signinError(res.status === 404 || res.status === 403
          ? `Guest sign-in is not enabled on this hub (${res.status}). Paste a token instead.`
          : `Sign-in failed: ${why}`);
        return;
      }
      const token = data && (data.token || data.access_token || data.jwt);
      if (!token) {
        signinError('The hub answered without a token.');
        return;
      }
      setToken(token);
    } catch (err) {
      signinError('Could not reach the hub.');
    } finally {
      $('#guest-login').disabled = false;
    }
  }

  function tokenLogin(e) {
    e.preventDefault();
    const token = $('#token-input').value.trim().replace(/^Bearer\s+/i, '');
    if (!token) {
      signinError('Paste a token first.');
      return;
    }
    setToken(token);
  }

  function setToken(token) {
    let claims;
    try {
      claims = decodeJwt(token);
    } catch (err) {
      signinError(`That does not look like a valid token: ${err.message}`);
      return false;
    }
    if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now() - 30000) {
      signinError('That token has expired.');
      store(STORAGE.token, undefined);
      return false;
    }
    S.token = token;
    S.me = {
      sub: String(claims.sub),
      username: String(claims.username || claims.sub),
      roles: Array.isArray(claims.roles) ? claims.roles : [],
    };
    S.isAdmin = S.me.roles.includes('admin');
    store(STORAGE.token, token);
    signinError('');
    startApp();
    return true;
  }

  function sessionExpired() {
    if (!S.token) return;
    signOut();
    signinError('Your session has expired or the token was refused. Please sign in again.');
  }

  function signOut() {
    for (const c of [S.chat, S.presence, S.inbox, S.dm && S.dm.conn]) if (c) c.stop();
    clearInterval(S.roomsTimer);
    S.chat = S.presence = S.inbox = S.dm = null;
    S.token = null;
    S.me = null;
    S.isAdmin = false;
    S.rooms.clear();
    S.roomStates.clear();
    S.users.clear();
    S.knownNames = {};
    S.view = null;
    S.dmUnread.clear();
    S.mentionBadges.clear();
    S.seenMentions.clear();
    S.threadRoot = null;
    S.editing = null;
    S.inboxOk = false;
    S.presenceState = null;
    setConnStatus('idle');
    store(STORAGE.token, undefined);
    $('#app').hidden = true;
    $('#signin-screen').hidden = false;
    $('#thread-panel').hidden = true;
    $('#search-panel').hidden = true;
    $('#toasts').replaceChildren();
    closePopovers();
    updateTitle();
    $('#guest-name').focus();
  }

  // ---------------------------------------------------------------------------
  // App start
  // ---------------------------------------------------------------------------

  function startApp() {
    $('#signin-screen').hidden = true;
    $('#app').hidden = false;
    $('#me-name').textContent = S.me.username;
    $('#me-name').title = `id: ${S.me.sub}${S.isAdmin ? ' · admin' : ''}`;
    const av = $('#me-avatar');
    av.textContent = initials(S.me.username);
    av.style.setProperty('--hue', hashHue(S.me.username));

    S.users.set(S.me.sub, { id: S.me.sub, username: S.me.username, status: 'offline' });
    S.myStatus = load(STORAGE.status, 'online');
    if (!['online', 'away', 'busy'].includes(S.myStatus)) S.myStatus = 'online';
    $('#status-select').value = S.myStatus;
    $('#status-select').dataset.status = S.myStatus;

    for (const id of loadJson(STORAGE.rooms(S.me.sub), [])) {
      if (typeof id === 'string' && !S.rooms.has(id)) S.rooms.set(id, { id, name: id, adhoc: true });
    }
    const dms = loadJson(STORAGE.dms(S.me.sub), { peers: [], names: {} });
    S.dmPeers = Array.isArray(dms.peers) ? dms.peers.filter((x) => typeof x === 'string') : [];
    S.dmNames = dms.names && typeof dms.names === 'object' ? dms.names : {};

    renderRoomList();
    renderDmList();
    renderPresence();
    renderEmptyView();
    loadRooms();
    clearInterval(S.roomsTimer);
    S.roomsTimer = setInterval(loadRooms, 20000);
    startPresence();
    startInbox();

    const last = loadJson(STORAGE.last(S.me.sub), null);
    if (last && last.kind === 'room' && typeof last.id === 'string') openRoom(last.id);
    else if (last && last.kind === 'dm' && typeof last.peer === 'string') openDm(last.peer);
  }

  // ---------------------------------------------------------------------------
  // Rooms REST API and sidebar
  // ---------------------------------------------------------------------------

  function normRoom(x) {
    if (typeof x === 'string') return { id: x, name: x };
    if (!x || typeof x !== 'object') return null;
    const id = x.id !== undefined ? String(x.id) : (x.room_id !== undefined ? String(x.room_id) : null);
    if (!id) return null;
    return {
      id,
      name: x.name ? String(x.name) : id,
      private: !!x.private,
      owner: x.owner !== undefined && x.owner !== null ? String(x.owner) : null,
      members: Array.isArray(x.members) ? x.members.map(String) : [],
    };
  }

  async function loadRooms() {
    if (!S.token) return;
    const res = await api('GET', '/rooms');
    if (!res.ok || !S.token) return;
    let list = res.data;
    if (list && !Array.isArray(list)) list = list.rooms || list.items || [];
    if (!Array.isArray(list)) return;
    const seen = new Set();
    for (const raw of list) {
      const room = normRoom(raw);
      if (!room) continue;
      seen.add(room.id);
      S.rooms.set(room.id, room);
    }
    // Server rooms that vanished (deleted or we were removed) drop out unless we joined them by hand.
    const adhoc = new Set(loadJson(STORAGE.rooms(S.me.sub), []));
    for (const [id, room] of S.rooms) {
      if (!room.adhoc && !seen.has(id)) {
        if (adhoc.has(id)) S.rooms.set(id, { id, name: id, adhoc: true });
        else if (!(S.view && S.view.kind === 'room' && S.view.id === id)) S.rooms.delete(id);
      }
    }
    renderRoomList();
    if (S.view && S.view.kind === 'room') renderHeader();
  }

  function rememberAdhocRoom(id) {
    if (!S.rooms.has(id)) S.rooms.set(id, { id, name: id, adhoc: true });
    const list = loadJson(STORAGE.rooms(S.me.sub), []);
    if (!list.includes(id)) {
      list.push(id);
      store(STORAGE.rooms(S.me.sub), list);
    }
  }

  function forgetRoom(id) {
    const list = loadJson(STORAGE.rooms(S.me.sub), []).filter((x) => x !== id);
    store(STORAGE.rooms(S.me.sub), list);
    const room = S.rooms.get(id);
    if (room && room.adhoc) S.rooms.delete(id);
    if (S.view && S.view.kind === 'room' && S.view.id === id) {
      closeView();
      renderEmptyView();
    }
    renderRoomList();
  }

  const roomName = (id) => (S.rooms.get(id) && S.rooms.get(id).name) || id;

  /** Tooltip of a room in the sidebar: its id and, once joined, where recovery would resume. */
  function roomTitle(room) {
    let t = room.name === room.id ? room.id : `${room.name} (${room.id})`;
    const r = S.roomStates.get(room.id);
    if (r && r.lastId !== null) t += ` · epoch ${r.epoch === null ? '–' : r.epoch} · last seen #${r.lastId}`;
    return t;
  }

  function renderRoomList() {
    const ul = $('#room-list');
    const rooms = Array.from(S.rooms.values()).sort((a, b) => a.name.localeCompare(b.name));
    ul.replaceChildren(...rooms.map((room) => {
      const active = S.view && S.view.kind === 'room' && S.view.id === room.id;
      const badge = S.mentionBadges.get(room.id);
      const li = h('li', { class: `nav-item${active ? ' active' : ''}`, dataset: { room: room.id } },
        h('button', {
          type: 'button', class: 'nav-btn', title: roomTitle(room),
          on: { click: () => openRoom(room.id) },
        },
        room.private ? h('span', { class: 'nav-icon' }, icon('lock', 14)) : h('span', { class: 'nav-icon', text: '#', 'aria-hidden': 'true' }),
        h('span', { class: 'nav-label', text: room.name }),
        badge ? h('span', { class: 'badge', text: `@${badge}` }) : null),
        room.adhoc ? h('button', {
          type: 'button', class: 'nav-x', title: 'Leave room', 'aria-label': `Leave ${room.name}`, text: '✕',
          on: { click: (e) => { e.stopPropagation(); forgetRoom(room.id); } },
        }) : null);
      return li;
    }));
    if (!rooms.length) ul.append(h('li', { class: 'nav-empty', text: 'No rooms yet' }));
  }

  async function createRoom(e) {
    e.preventDefault();
    const name = $('#new-room-name').value.trim();
    const priv = $('#new-room-private').checked;
    const members = $('#new-room-members').value.split(',').map((x) => x.trim()).filter(Boolean);
    if (!name) {
      $('#create-room-error').textContent = 'A room needs a name.';
      return;
    }
    if (priv && !members.includes(S.me.sub)) members.push(S.me.sub);
    $('#new-room-submit').disabled = true;
    $('#create-room-error').textContent = '';
    const res = await api('POST', '/rooms', { name, private: priv, members });
    $('#new-room-submit').disabled = false;
    if (!res.ok) {
      $('#create-room-error').textContent = `Could not create the room: ${errText(res)}`;
      return;
    }
    const room = normRoom(res.data) || { id: name, name };
    if (!room.owner) room.owner = S.me.sub;
    S.rooms.set(room.id, room);
    closeDialog();
    renderRoomList();
    openRoom(room.id);
  }

  function openDialog() {
    const d = $('#create-room-dialog');
    $('#create-room-form').reset();
    $('#create-room-error').textContent = '';
    if (typeof d.showModal === 'function') d.showModal();
    else d.setAttribute('open', '');
    $('#new-room-name').focus();
  }
  function closeDialog() {
    const d = $('#create-room-dialog');
    if (typeof d.close === 'function' && d.open) d.close();
    else d.removeAttribute('open');
  }

  function joinRoomFromInput(e) {
    e.preventDefault();
    const id = $('#room-input').value.trim().replace(/^#/, '');
    if (!id) return;
    $('#room-input').value = '';
    if (!S.rooms.has(id)) rememberAdhocRoom(id);
    openRoom(id);
  }

  // Room details: owner and admins rename, change privacy, manage members, delete.
  let roomDialogId = null;
  async function openRoomDialog() {
    if (!S.view || S.view.kind !== 'room') return;
    const id = S.view.id;
    roomDialogId = id;
    const res = await api('GET', `/rooms/${enc(id)}`);
    if (roomDialogId !== id) return;
    let room = res.ok ? normRoom(res.data) : null;
    if (room) S.rooms.set(id, Object.assign(S.rooms.get(id) || {}, room, { adhoc: false }));
    renderRoomDialog(id, room, res);
    const d = $('#room-dialog');
    if (!d.open) {
      if (typeof d.showModal === 'function') d.showModal();
      else d.setAttribute('open', '');
    }
  }

  function renderRoomDialog(id, room, res) {
    const canEdit = !!room && (S.isAdmin || room.owner === S.me.sub);
    $('#room-dialog-title').textContent = `#${room ? room.name : id}`;
    $('#room-dialog-error').textContent = '';
    let meta = `id ${id}`;
    if (room && room.owner) meta += ` · owner ${nameOf(room.owner)}`;
    if (!room) meta += res && res.status === 404 ? ' · never created: public, no owner' : ` · details unavailable (${errText(res)})`;
    if (room && !canEdit) meta += ' · only the owner or an admin can change it';
    $('#room-dialog-meta').textContent = meta;
    $('#room-edit-name').value = room ? room.name : id;
    $('#room-edit-private').checked = !!(room && room.private);
    for (const sel of ['#room-edit-name', '#room-edit-private', '#room-add-member', '#room-add-member-btn', '#room-save', '#room-delete']) {
      $(sel).disabled = !canEdit;
    }
    $('#room-delete').hidden = !canEdit;
    $('#room-save').hidden = !canEdit;
    const members = room ? room.members : [];
    const ul = $('#room-members');
    ul.replaceChildren(...members.map((sub) => h('li', { class: 'member', dataset: { member: sub } },
      avatar(nameOf(sub), 'avatar-xs'),
      h('span', { text: nameOf(sub), title: sub }),
      room.owner === sub ? h('span', { class: 'member-owner', text: 'owner' }) : null,
      canEdit ? h('button', {
        type: 'button', class: 'member-x', title: `Remove ${nameOf(sub)}`, 'aria-label': `Remove ${nameOf(sub)}`, text: '✕',
        on: { click: () => changeMembers(id, [], [sub]) },
      }) : null)));
    if (!members.length) ul.append(h('li', { class: 'member-empty', text: room && room.private ? 'No members listed.' : 'Public room: anyone may join.' }));
  }

  async function changeMembers(id, add, remove) {
    const res = await api('POST', `/rooms/${enc(id)}/members`, { add, remove });
    if (!res.ok) {
      $('#room-dialog-error').textContent = `Could not change members: ${errText(res)}`;
      return;
    }
    await openRoomDialog();
  }

  async function saveRoomDialog(e) {
    e.preventDefault();
    const id = roomDialogId;
    if (!id) return;
    const name = $('#room-edit-name').value.trim();
    const res = await api('PATCH', `/rooms/${enc(id)}`, { name: name || undefined, private: $('#room-edit-private').checked });
    if (!res.ok) {
      $('#room-dialog-error').textContent = `Could not save: ${errText(res)}`;
      return;
    }
    const room = normRoom(res.data);
    if (room) S.rooms.set(id, Object.assign(S.rooms.get(id) || {}, room, { adhoc: false }));
    else if (S.rooms.get(id)) Object.assign(S.rooms.get(id), { name: name || id, private: $('#room-edit-private').checked });
    $('#room-dialog').close();
    renderRoomList();
    if (S.view && S.view.kind === 'room' && S.view.id === id) renderHeader();
    loadRooms();
  }

  async function deleteRoom() {
    const id = roomDialogId;
    if (!id) return;
    const btn = $('#room-delete');
    if (btn.dataset.confirm !== id) {
      // Two clicks instead of a blocking confirm() dialog.
      btn.dataset.confirm = id;
      btn.textContent = 'Click again to delete';
      setTimeout(() => { btn.dataset.confirm = ''; btn.textContent = 'Delete room'; }, 4000);
      return;
    }
    btn.dataset.confirm = '';
    btn.textContent = 'Delete room';
    const res = await api('DELETE', `/rooms/${enc(id)}`);
    if (!res.ok) {
      $('#room-dialog-error').textContent = `Could not delete: ${errText(res)}`;
      return;
    }
    $('#room-dialog').close();
    S.rooms.delete(id);
    forgetRoom(id);
    loadRooms();
  }

  // Hub numbers on the welcome screen, from GET /stats (any shape it has).
  async function showStats() {
    const res = await api('GET', '/stats', undefined, { no401: true });
    const box = $('#stats');
    if (!box || !res.ok || !res.data || typeof res.data !== 'object') return;
    const d = res.data;
    const num = (...keys) => {
      for (const k of keys) {
        let v = d;
        for (const part of k.split('.')) v = v && typeof v === 'object' ? v[part] : undefined;
        if (typeof v === 'number') return v;
        if (v && typeof v === 'object' && typeof v.total === 'number') return v.total;
      }
      return null;
    };
    const items = [
      ['online', num('presence_users', 'users_online', 'users.online', 'online')],
      ['connections', num('connections', 'connections.total')],
      ['rooms', num('rooms', 'rooms_total', 'rooms.count')],
      ['messages', num('messages', 'messages_total', 'messages.total')],
    ].filter(([, v]) => v !== null);
    box.replaceChildren(...items.map(([label, v]) => h('div', { class: 'stat' },
      h('b', { text: v.toLocaleString() }), h('span', { text: label }))));
  }

  // ---------------------------------------------------------------------------
  // Views
  // ---------------------------------------------------------------------------

  function closeView() {
    $('#app').classList.remove('show-sidebar');
    if (S.chat) S.chat.stop();
    if (S.dm && S.dm.conn) S.dm.conn.stop();
    stopTyping();
    S.chat = null;
    S.dm = null;
    S.view = null;
    S.editing = null;
    closeThread();
    closePopovers();
    showNotice('');
    $('#jump-latest').hidden = true;
    $('#typing').textContent = '';
    // With no room or conversation open, the status shows the presence connection.
    setConnStatus(S.presenceState || 'idle');
  }

  function renderEmptyView() {
    $('#view-title').textContent = 'Welcome';
    $('#room-meta').textContent = S.me ? `Signed in as ${S.me.username}` : '';
    const box = $('#messages');
    const quick = h('div', { class: 'quick-rooms' },
      ['general', 'random'].map((id) => h('button', {
        type: 'button', class: 'btn btn-secondary btn-sm', text: `# ${id}`,
        on: { click: () => { rememberAdhocRoom(id); openRoom(id); } },
      })));
    box.replaceChildren(h('div', { class: 'empty-state' },
      h('div', { class: 'empty-icon' }, icon('chat', 40)),
      h('h2', { text: 'Pick a room to start chatting' }),
      h('p', { text: 'Join a room from the sidebar, create one with +, or click someone under People to send a direct message.' }),
      quick,
      h('div', { id: 'stats', class: 'stats' })));
    $('#room-info').hidden = true;
    showStats();
    setComposerEnabled(false, 'Message');
    renderRoomList();
    renderDmList();
    renderPresence();
  }

  function setComposerEnabled(on, placeholder) {
    $('#composer').disabled = !on;
    $('#send').disabled = !on;
    $('#file-input').disabled = !on;
    $('#composer').placeholder = placeholder || 'Message';
  }

  /** Open a room; with focusId, jump to that message once it is on screen (mentions, search). */
  function openRoom(id, focusId) {
    if (!S.me) return;
    id = String(id);
    if (focusId !== undefined && focusId !== null) roomState(id).focusId = Number(focusId);
    if (S.view && S.view.kind === 'room' && S.view.id === id && S.chat && !S.chat.stopped) {
      const r = roomState(id);
      if (r.focusId !== null && r.gotInitial) {
        focusMessage(r.focusId);
        r.focusId = null;
      }
      $('#composer').focus();
      return;
    }
    closeView();
    if (!S.rooms.has(id)) rememberAdhocRoom(id);
    S.view = { kind: 'room', id };
    store(STORAGE.last(S.me.sub), { kind: 'room', id });
    S.mentionBadges.delete(id);
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
      onOpen: () => { r.gotInitial = false; },
      onFrame: (f) => onChatFrame(r, conn, f),
      onStatus: (s) => { if (S.chat === conn) setConnStatus(s); },
      onClose: (ev, opened, fails) => {
        if (S.chat !== conn) return 'stop';
        r.loadingOlder = false;
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
        if (!opened && fails >= 3) showNotice('The hub is not letting us into this room right now; still trying…', 'retry');
        return undefined;
      },
    });
    S.chat = conn;
    conn.start();
    setTimeout(() => { if (S.chat === conn) $('#composer').focus(); }, 0);
  }

  /** The upgrade was refused before opening: ask the REST API why (403 private room, 401 token). */
  async function checkRoomAccess(id, conn) {
    const res = await api('GET', `/rooms/${enc(id)}`);
    if (S.chat !== conn) return;
    if (res.status === 403) {
      conn.stop();
      setConnStatus('forbidden');
      showNotice(`#${roomName(id)} is private or you are banned from it: the hub refused to let you in.`, 'error');
      setComposerEnabled(false, 'You cannot post here');
    }
  }

  function renderHeader() {
    const v = S.view;
    $('#room-info').hidden = !v || v.kind !== 'room';
    if (!v) return;
    if (v.kind === 'room') {
      const room = S.rooms.get(v.id) || { id: v.id, name: v.id };
      const r = roomState(v.id);
      $('#view-title').replaceChildren(
        room.private ? h('span', { class: 'title-icon' }, icon('lock', 16)) : h('span', { class: 'title-icon', text: '#', 'aria-hidden': 'true' }),
        h('span', { text: room.name }));
      const bits = [];
      if (room.name !== room.id) bits.push(`id ${room.id}`);
      if (room.private) bits.push(`private · ${room.members ? room.members.length : 0} members`);
      if (room.owner) bits.push(room.owner === S.me.sub ? 'you own this room' : `owner ${nameOf(room.owner)}`);
      bits.push(`epoch ${r.epoch === null ? '–' : r.epoch}`);
      bits.push(`last seen #${r.lastId === null ? '–' : r.lastId}`);
      const meta = $('#room-meta');
      meta.textContent = bits.join(' · ');
      meta.dataset.epoch = r.epoch === null ? '' : r.epoch;
      meta.dataset.lastId = r.lastId === null ? '' : r.lastId;
    } else if (v.kind === 'dm') {
      const u = S.users.get(v.peer);
      $('#view-title').replaceChildren(
        h('span', { class: `status-dot ${u ? u.status : 'offline'}`, 'aria-hidden': 'true' }),
        h('span', { text: nameOf(v.peer) }));
      $('#room-meta').textContent = `Direct message · id ${v.peer}${u ? ` · ${u.status}` : ''}`;
    }
  }

  // ---------------------------------------------------------------------------
  // Room frames
  // ---------------------------------------------------------------------------

  function normMessage(f) {
    const m = Object.assign({}, f);
    if (m.id !== undefined && m.id !== null && !isNaN(Number(m.id))) m.id = Number(m.id);
    if (!m.type) m.type = m.message !== undefined && m.user === undefined && m.content === undefined ? 'system' : 'message';
    if (m.type === 'message' && m.content === undefined && typeof m.message === 'string') m.content = m.message;
    if (m.thread_id !== undefined && m.thread_id !== null) m.thread_id = Number(m.thread_id);
    else delete m.thread_id;
    return m;
  }

  function storeMessage(r, m) {
    if (typeof m.id !== 'number') return;
    if (m.user_id !== undefined && m.user !== undefined && !S.knownNames[m.user_id]) S.knownNames[String(m.user_id)] = String(m.user);
    const old = r.messages.get(m.id);
    if (old && old.reactions && !m.reactions) m.reactions = old.reactions;
    r.messages.set(m.id, m);
    if (m.thread_id !== undefined) {
      if (!r.replies.has(m.thread_id)) r.replies.set(m.thread_id, new Set());
      r.replies.get(m.thread_id).add(m.id);
    }
    if (r.lastId === null || m.id > r.lastId) r.lastId = m.id;
    if (m.type === 'system' && m.action && m.user !== undefined) {
      const who = String(m.user);
      if (m.action === 'ban') r.banned.add(who);
      else if (m.action === 'mute') r.muted.add(who);
      else if (m.action === 'unban') {
        r.banned.delete(who);
        r.muted.delete(who);
      }
    }
  }

  /** Drop the pending copy of one of my own messages that the hub has now saved. */
  function matchPending(r, m) {
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

  function onChatFrame(r, conn, f) {
    if (S.chat !== conn) return;
    switch (f.type) {
      case 'history': return onHistory(r, conn, f);
      case 'reads': {
        r.reads = {};
        const reads = f.reads && typeof f.reads === 'object' ? f.reads : {};
        for (const [who, id] of Object.entries(reads)) r.reads[toSub(who)] = Number(id);
        if (r.reads[S.me.sub] !== undefined) r.myRead = Math.max(r.myRead, r.reads[S.me.sub]);
        renderSeenBy(r);
        scheduleRead(r);
        return;
      }
      case 'message':
      case 'system': return onLiveMessage(r, normMessage(f));
      case 'ack': return onAck(r, f);
      case 'typing': return onTyping(r, f);
      case 'reaction': return onReaction(r, f);
      case 'edited': return onEdited(r, f);
      case 'deleted': return onDeleted(r, f);
      case 'read': {
        const who = toSub(f.user);
        const id = Number(f.message_id);
        if (who === undefined || isNaN(id)) return;
        if (who === S.me.sub) { r.myRead = Math.max(r.myRead, id); return; }
        r.reads[who] = id;
        renderSeenBy(r);
        return;
      }
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
        for (const m of msgs) {
          matchPending(r, m);
          storeMessage(r, m);
        }
      } else {
        // A fresh join, or the gap is gone from history: the given history replaces the view.
        r.messages.clear();
        r.replies.clear();
        r.lastId = null;
        for (const m of msgs) {
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
      if (S.threadRoot !== null) renderThread(r);
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
    for (const m of msgs) storeMessage(r, m);
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

  function oldestId(r) {
    let min = null;
    for (const id of r.messages.keys()) if (min === null || id < min) min = id;
    return min;
  }

  function loadOlder() {
    const r = currentRoom();
    if (!r || r.loadingOlder || r.noMore || !S.chat || !S.chat.open) return;
    const oldest = oldestId(r);
    if (oldest === null || oldest <= 0) {
      r.noMore = true;
      renderRoomMessages(r);
      return;
    }
    r.loadingOlder = true;
    r.pageLimit = 50;
    S.chat.send({ type: 'history', before: oldest, limit: 50 });
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
      // Unsaved frame: show it but keep it out of the store.
      if (currentRoom() === r) appendTransient(m);
      return;
    }
    const existed = r.messages.has(m.id);
    matchPending(r, m);
    storeMessage(r, m);
    if (m.type === 'system' && m.action && m.user !== undefined && isMe(m.user)) {
      const what = { kick: 'kicked from', ban: 'banned from', mute: 'muted in', unban: 'unbanned in' }[m.action] || `${m.action} in`;
      toast(`You were ${what} #${roomName(r.id)}.`, { kind: m.action === 'unban' ? 'info' : 'error' });
      if (m.action === 'mute') showNotice('You are muted in this room: your messages will be refused.', 'warn');
      if (m.action === 'unban') showNotice('');
    }
    if (currentRoom() !== r) return;
    renderHeader();
    if (m.thread_id !== undefined && r.messages.has(m.thread_id)) {
      updateMessageEl(r, m.thread_id);
      if (S.threadRoot === m.thread_id) renderThread(r, { toBottom: true });
    } else if (existed) {
      updateMessageEl(r, m.id);
    } else {
      appendMessageEl(r, m);
    }
    if (m.type === 'message' && !isMine(m) && m.user) clearTyping(r, m.user);
    scheduleRead(r);
  }

  function onAck(r, f) {
    const idx = r.pending.findIndex((p) => p.client_id === f.client_id);
    if (idx < 0) return;
    const [p] = r.pending.splice(idx, 1);
    removePendingEl(p);
    const id = Number(f.id);
    if (isNaN(id)) return;
    if (!r.messages.has(id)) {
      // The broadcast copy has not arrived yet: show ours under the real id.
      const m = {
        id, type: 'message', user: S.me.username, content: p.content,
        timestamp: f.timestamp || new Date().toISOString(),
      };
      if (p.thread_id !== undefined) m.thread_id = p.thread_id;
      if (p.attachments && p.attachments.length) m.attachments = p.attachments;
      storeMessage(r, m);
      if (currentRoom() === r) {
        if (m.thread_id !== undefined && r.messages.has(m.thread_id)) {
          updateMessageEl(r, m.thread_id);
          if (S.threadRoot === m.thread_id) renderThread(r, { toBottom: true });
        } else {
          appendMessageEl(r, m);
        }
        renderHeader();
      }
    }
    scheduleRead(r);
  }

  function onTyping(r, f) {
    const who = f.user;
    if (who === undefined || isMe(who) || (f.user_id !== undefined && isMe(f.user_id))) return;
    const name = S.users.has(String(who)) ? nameOf(String(who)) : String(who);
    if (f.state === false) r.typing.delete(name);
    else r.typing.set(name, Date.now() + 5000);
    if (currentRoom() === r) renderTyping(r);
  }
  function clearTyping(r, name) {
    if (r.typing.delete(String(name)) && currentRoom() === r) renderTyping(r);
  }

  function renderTyping(r) {
    const now = Date.now();
    for (const [name, exp] of r.typing) if (exp < now) r.typing.delete(name);
    const names = Array.from(r.typing.keys());
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = 'Several people are typing…';
    const node = $('#typing');
    if (node.textContent !== text) node.textContent = text;
    node.classList.toggle('active', !!text);
  }

  function onReaction(r, f) {
    const id = Number(f.message_id);
    const m = r.messages.get(id);
    if (!m || !f.emoji) return;
    if (f.user !== undefined && f.username !== undefined) S.knownNames[String(f.user)] = String(f.username);
    const who = toSub(f.user);
    m.reactions = m.reactions && typeof m.reactions === 'object' ? m.reactions : {};
    const list = (m.reactions[f.emoji] || []).filter((x) => toSub(x) !== who);
    if (f.op !== 'remove') list.push(who);
    if (list.length) m.reactions[f.emoji] = list;
    else delete m.reactions[f.emoji];
    if (currentRoom() === r) updateMessageEl(r, id);
  }

  function onEdited(r, f) {
    const id = Number(f.message_id);
    const m = r.messages.get(id);
    if (!m) return;
    m.content = f.content;
    m.edited = true;
    if (Array.isArray(f.mentions)) m.mentions = f.mentions;
    if (S.editing === id) S.editing = null;
    if (currentRoom() === r) updateMessageEl(r, id);
  }

  function onDeleted(r, f) {
    const id = Number(f.message_id);
    const m = r.messages.get(id);
    if (!m) return;
    m.deleted = true;
    delete m.content;
    delete m.attachments;
    m.reactions = {};
    if (S.editing === id) S.editing = null;
    if (currentRoom() === r) updateMessageEl(r, id);
  }

  function onThread(r, f) {
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
    if (S.threadRoot === root) renderThread(r, { toBottom: true });
  }

  function onErrorFrame(r, f) {
    const code = f.code || 'error';
    const detail = f.detail || f.message || '';
    if (r && r.loadingOlder) r.loadingOlder = false;
    // Typing notices are best effort: a refused one is not worth a word.
    if (/typing/i.test(detail) || Date.now() - typingState.lastSent < 300) {
      if (code === 'rate_limited') return;
    }
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

  function onMention(f) {
    const key = `${f.room}:${f.message_id}`;
    if (S.seenMentions.has(key)) return;
    S.seenMentions.add(key);
    const room = f.room !== undefined && f.room !== null ? String(f.room) : null;
    const viewing = room && S.view && S.view.kind === 'room' && S.view.id === room && document.visibilityState === 'visible';
    if (room && !viewing) {
      if (!S.rooms.has(room)) rememberAdhocRoom(room);
      S.mentionBadges.set(room, (S.mentionBadges.get(room) || 0) + 1);
      renderRoomList();
      updateTitle();
    }
    toast(f.content || '', {
      kind: 'mention',
      title: `${f.from || 'Someone'} mentioned you${room ? ` in #${roomName(room)}` : ''}`,
      onClick: room ? () => openRoom(room, f.message_id) : null,
    });
  }

  // ---------------------------------------------------------------------------
  // Rendering messages
  // ---------------------------------------------------------------------------

  const mainBox = () => $('#messages');
  const nearBottom = (box) => box.scrollHeight - box.scrollTop - box.clientHeight < 140;

  function visibleInMain(r, m) {
    return !(m.thread_id !== undefined && r.messages.has(m.thread_id) && m.thread_id !== m.id);
  }

  function sortedMain(r) {
    return Array.from(r.messages.values()).filter((m) => visibleInMain(r, m)).sort((a, b) => a.id - b.id);
  }

  function renderRoomMessages(r, opts = {}) {
    const box = mainBox();
    const stick = opts.toBottom || nearBottom(box);
    const nodes = [];
    const list = sortedMain(r);
    if (!r.gotInitial && !list.length) {
      nodes.push(h('div', { class: 'loading', text: 'Loading messages…' }));
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
      nodes.push(renderMessageEl(r, m, 'main'));
    }
    for (const p of r.pending) if (p.thread_id === undefined) nodes.push(renderPendingEl(p));
    box.replaceChildren(...nodes);
    renderSeenBy(r);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function dayDivider(ts, key) {
    return h('div', { class: 'day-divider', dataset: { day: key } }, h('span', { text: fmtDay(ts) }));
  }

  function appendMessageEl(r, m) {
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
    if (stick) box.scrollTop = box.scrollHeight;
    else if (m.type === 'message') $('#jump-latest').hidden = false;
  }

  function appendTransient(m) {
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
  function updateMessageEl(r, id) {
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

  function renderMessageEl(r, m, where) {
    const idAttr = where === 'main' ? { id: String(m.id) } : { tid: String(m.id) };
    const day = dayKey(m.timestamp);
    if (m.type === 'system') {
      const node = h('div', {
        class: `message system${m.action ? ` mod-action action-${m.action}` : ''}`,
        dataset: Object.assign({ day }, idAttr),
      },
      h('span', { class: 'system-icon' }, icon(SYSTEM_ICONS[m.action] || (/ left /.test(m.message || '') ? 'kick' : 'join'), 14)),
      h('span', { class: 'content', text: m.message || m.content || '' }),
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
    const name = m.user !== undefined ? String(m.user) : 'unknown';

    const author = h('button', {
      type: 'button', class: 'author', text: name,
      on: { click: (e) => openUserMenu(e.currentTarget, authorSub(m), name) },
    });
    const head = h('div', { class: 'msg-head' },
      author,
      h('time', { class: 'time', text: fmtTime(m.timestamp), title: fmtFull(m.timestamp), datetime: m.timestamp || '' }));

    const body = h('div', { class: 'msg-body' }, head);
    if (m.deleted) {
      body.append(h('div', { class: 'content tombstone', text: 'message deleted' }));
    } else if (S.editing === m.id && where === S.editingWhere) {
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
        const mineR = users.some((u) => toSub(u) === S.me.sub || isMe(u));
        reactions.append(h('button', {
          type: 'button', class: `reaction${mineR ? ' mine reacted' : ''}`, dataset: { emoji },
          title: users.map((u) => nameOf(toSub(u))).join(', '),
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
          on: { click: () => deleteMessage(m.id) },
        }, icon('trash', 17)));
      }
      node.append(acts);
    }
    return node;
  }

  function renderPendingEl(p) {
    const node = h('div', { class: `message pending mine${p.failed ? ' failed' : ''}`, dataset: { clientId: p.client_id } },
      avatar(S.me.username),
      h('div', { class: 'msg-body' },
        h('div', { class: 'msg-head' },
          h('span', { class: 'author', text: S.me.username }),
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
  function updatePendingEl(p) {
    for (const n of pendingEls(p)) n.replaceWith(renderPendingEl(p));
  }

  /** Text with @mentions and links, built from text nodes only. */
  function renderRichText(container, text) {
    const re = /(@[A-Za-z0-9_.-]+)|(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])/g;
    let last = 0;
    let mt;
    const mine = S.me ? [S.me.sub.toLowerCase(), String(S.me.username).toLowerCase()] : [];
    while ((mt = re.exec(text))) {
      if (mt.index > last) container.append(document.createTextNode(text.slice(last, mt.index)));
      if (mt[1]) {
        const who = mt[1].slice(1);
        const me = mine.includes(who.toLowerCase());
        container.append(h('span', { class: `mention${me ? ' me' : ''}`, text: mt[1] }));
      } else {
        container.append(h('a', { href: mt[2], target: '_blank', rel: 'noopener noreferrer', text: mt[2] }));
      }
      last = mt.index + mt[0].length;
    }
    if (last < text.length) container.append(document.createTextNode(text.slice(last)));
  }

  function renderAttachments(list) {
    const wrap = h('div', { class: 'attachments' });
    for (const a of list) {
      const id = typeof a === 'object' && a !== null ? String(a.id || '') : String(a);
      if (!id) continue;
      const meta = S.fileMeta.get(id) || {};
      const type = meta.type || (typeof a === 'object' && a !== null ? (a.content_type || a.mime || a.type || '') : '');
      const name = meta.name || (typeof a === 'object' && a !== null ? (a.name || a.filename || '') : '') || `file ${id.slice(0, 8)}`;
      const src = fileUrl(id);
      const fileLink = () => h('a', {
        class: 'attachment attachment-file', href: src, download: name, target: '_blank', rel: 'noopener',
        dataset: { file: id },
      }, h('span', { class: 'file-icon' }, icon('file', 22)),
      h('span', { class: 'file-name', text: name }),
      h('span', { class: 'file-dl', text: 'Download' }));
      if (!type || type.startsWith('image/')) {
        const link = h('a', { class: 'attachment attachment-img', href: src, target: '_blank', rel: 'noopener', dataset: { file: id } });
        const img = h('img', { class: 'attachment-image', src, alt: name, loading: 'lazy' });
        img.addEventListener('load', () => {
          const box = mainBox();
          if (nearBottom(box)) box.scrollTop = box.scrollHeight;
        });
        img.addEventListener('error', () => {
          if (!type) link.replaceWith(fileLink());
          else link.classList.add('broken');
        });
        link.append(img);
        wrap.append(link);
      } else {
        wrap.append(fileLink());
      }
    }
    return wrap;
  }

  function renderSeenBy(r) {
    if (currentRoom() !== r) return;
    const box = mainBox();
    const stick = nearBottom(box);
    for (const n of $$('.seen-by', box)) n.remove();
    const ids = $$('.message[data-id]', box).map((n) => Number(n.dataset.id)).sort((a, b) => a - b);
    if (!ids.length) return;
    const groups = new Map();
    for (const [sub, readId] of Object.entries(r.reads)) {
      if (sub === S.me.sub || isNaN(readId)) continue;
      // The newest rendered message the reader has reached.
      let target = null;
      for (const id of ids) {
        if (id <= readId) target = id;
        else break;
      }
      if (target === null) continue;
      if (!groups.has(target)) groups.set(target, []);
      groups.get(target).push(sub);
    }
    for (const [id, subs] of groups) {
      const msg = $(`.message[data-id="${id}"]`, box);
      if (!msg) continue;
      const names = subs.map(nameOf);
      const seen = h('div', { class: 'seen-by', title: `Seen by ${names.join(', ')}`, dataset: { users: subs.join(',') } },
        h('span', { class: 'seen-label', text: 'Seen by' }),
        ...subs.slice(0, 5).map((s) => avatar(nameOf(s), 'avatar-xs')),
        h('span', { class: 'seen-names', text: names.length > 3 ? `${names.slice(0, 3).join(', ')} +${names.length - 3}` : names.join(', ') }));
      const bodyEl = $('.msg-body', msg);
      (bodyEl || msg).append(seen);
    }
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function focusMessage(id) {
    const node = $(`#messages .message[data-id="${id}"]`);
    if (!node) return false;
    node.scrollIntoView({ block: 'center' });
    node.classList.remove('flash');
    void node.offsetWidth;
    node.classList.add('flash');
    return true;
  }

  // ---------------------------------------------------------------------------
  // Sending
  // ---------------------------------------------------------------------------

  function sendPending(r, p) {
    if (!S.chat || currentRoom() !== r) return false;
    const frame = { type: 'message', content: p.content, client_id: p.client_id };
    if (p.thread_id !== undefined) frame.thread_id = p.thread_id;
    if (p.attachments && p.attachments.length) frame.attachments = p.attachments;
    if (S.chat.send(frame)) {
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

  function queueRoomMessage(r, content, extra = {}) {
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
    } else if (S.threadRoot === p.thread_id) {
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

  function submitComposer(e) {
    if (e) e.preventDefault();
    const input = $('#composer');
    const text = input.value.replace(/\s+$/, '');
    if (!text.trim() || input.disabled) return;
    if (S.view && S.view.kind === 'room') {
      const r = currentRoom();
      if (r.forbidden) return;
      queueRoomMessage(r, text);
      stopTyping();
    } else if (S.view && S.view.kind === 'dm') {
      sendDm(text);
    } else {
      return;
    }
    input.value = '';
    autoGrow(input);
    input.focus();
  }

  // Typing: `true` at most once per 2 s while typing (it also keeps the others' indicator
  // alive), `false` after 3 s idle or on send. That stays within the hub's 2 notices a second.
  const typingState = { active: false, lastSent: 0, idle: null, deferred: null };
  function sendTypingTrue() {
    clearTimeout(typingState.deferred);
    typingState.deferred = null;
    if (!S.view || S.view.kind !== 'room' || !S.chat || !$('#composer').value.trim()) return;
    const wait = typingState.lastSent + 2000 - Date.now();
    if (wait > 0) {
      // Too soon after the last one: say it as soon as allowed, if still typing then.
      typingState.deferred = setTimeout(sendTypingTrue, wait);
      return;
    }
    if (S.chat.send({ type: 'typing', state: true })) {
      typingState.lastSent = Date.now();
      typingState.active = true;
    }
  }
  function onComposerInput() {
    autoGrow($('#composer'));
    if (!S.view || S.view.kind !== 'room' || !S.chat) return;
    if ($('#composer').value.trim()) {
      if (!typingState.deferred) sendTypingTrue();
      clearTimeout(typingState.idle);
      typingState.idle = setTimeout(stopTyping, 3000);
    } else {
      stopTyping();
    }
  }
  function stopTyping() {
    clearTimeout(typingState.idle);
    clearTimeout(typingState.deferred);
    typingState.deferred = null;
    if (typingState.active && S.chat) S.chat.send({ type: 'typing', state: false });
    typingState.active = false;
  }

  function autoGrow(t) {
    t.style.height = 'auto';
    t.style.height = `${Math.min(t.scrollHeight, 180)}px`;
  }

  function toggleReaction(r, id, emoji) {
    const m = r.messages.get(id);
    if (!m || !S.chat) return;
    const users = (m.reactions && m.reactions[emoji]) || [];
    const mine = users.some((u) => toSub(u) === S.me.sub || isMe(u));
    S.chat.send({ type: 'reaction', message_id: id, emoji, op: mine ? 'remove' : 'add' });
  }

  function deleteMessage(id) {
    if (!S.chat) return;
    S.chat.send({ type: 'delete', message_id: id });
  }

  // Read receipts: only while the room is on screen.
  let readTimer = null;
  function scheduleRead(r) {
    clearTimeout(readTimer);
    readTimer = setTimeout(() => {
      if (currentRoom() !== r || document.visibilityState !== 'visible' || !S.chat || !S.chat.open) return;
      let last = null;
      for (const id of r.messages.keys()) if (last === null || id > last) last = id;
      if (last === null || last <= r.myRead) return;
      if (S.chat.send({ type: 'read', message_id: last })) r.myRead = last;
    }, 400);
  }

  // ---------------------------------------------------------------------------
  // Inline edit
  // ---------------------------------------------------------------------------

  function editBox(r, m) {
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

  function startEdit(r, id, where = 'main') {
    const prev = S.editing;
    S.editing = id;
    S.editingWhere = where;
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
    S.editing = null;
    const content = value.trim();
    if (!m || !content || content === m.content) {
      updateMessageEl(r, id);
      return;
    }
    if (S.chat && S.chat.send({ type: 'edit', message_id: id, content })) {
      m.content = content;
      m.edited = true;
    }
    updateMessageEl(r, id);
    $('#composer').focus();
  }
  function cancelEdit(r, id) {
    S.editing = null;
    updateMessageEl(r, id);
  }

  // ---------------------------------------------------------------------------
  // Threads
  // ---------------------------------------------------------------------------

  function openThread(rootId) {
    const r = currentRoom();
    if (!r) return;
    S.threadRoot = Number(rootId);
    $('#search-panel').hidden = true;
    $('#thread-panel').hidden = false;
    $('#app').classList.add('with-panel');
    $('#thread-sub').textContent = `#${roomName(r.id)}`;
    renderThread(r, { toBottom: true });
    if (S.chat) S.chat.send({ type: 'thread', message_id: S.threadRoot });
    $('#thread-composer').focus();
  }

  function closeThread() {
    S.threadRoot = null;
    $('#thread-panel').hidden = true;
    $('#thread-messages').replaceChildren();
    if ($('#search-panel').hidden) $('#app').classList.remove('with-panel');
  }

  function renderThread(r, opts = {}) {
    if (S.threadRoot === null) return;
    const box = $('#thread-messages');
    const stick = opts.toBottom || nearBottom(box);
    const root = r.messages.get(S.threadRoot);
    const replies = Array.from((r.replies.get(S.threadRoot) || new Set()))
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
    for (const p of r.pending) if (p.thread_id === S.threadRoot) nodes.push(renderPendingEl(p));
    box.replaceChildren(...nodes);
    if (stick) box.scrollTop = box.scrollHeight;
  }

  function submitThread(e) {
    e.preventDefault();
    const r = currentRoom();
    const input = $('#thread-composer');
    const text = input.value.replace(/\s+$/, '');
    if (!r || S.threadRoot === null || !text.trim()) return;
    queueRoomMessage(r, text, { thread_id: S.threadRoot });
    input.value = '';
    autoGrow(input);
    input.focus();
  }

  // ---------------------------------------------------------------------------
  // Search
  // ---------------------------------------------------------------------------

  let lastQuery = '';
  function runSearch() {
    const q = $('#search-input').value.trim();
    if (!q) return;
    lastQuery = q;
    $('#thread-panel').hidden = true;
    S.threadRoot = null;
    $('#search-panel').hidden = false;
    $('#app').classList.add('with-panel');
    $('#search-sub').textContent = `“${q}”`;
    if (!S.chat || !S.chat.open) {
      $('#search-results').replaceChildren(h('div', { class: 'panel-empty', text: 'Open a room first: search runs on a room connection.' }));
      return;
    }
    $('#search-results').replaceChildren(h('div', { class: 'loading', text: 'Searching…' }));
    S.chat.send({ type: 'search', query: q, limit: 50 });
  }

  function renderSearchResults(f) {
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
      const room = m.room !== undefined && m.room !== null ? String(m.room) : (S.view && S.view.id);
      const content = h('div', { class: 'result-content' });
      highlight(content, m.content || m.message || '', words);
      return h('button', {
        type: 'button', class: 'search-result', dataset: { room: room || '', id: String(m.id) },
        on: { click: () => goToResult(room, m.id) },
      },
      h('div', { class: 'result-head' },
        h('span', { class: 'result-room', text: `#${roomName(room)}` }),
        h('span', { class: 'result-user', text: m.user || '' }),
        h('time', { class: 'time', text: `${fmtDay(m.timestamp)} ${fmtTime(m.timestamp)}` })),
      content);
    }));
  }

  function highlight(container, text, words) {
    if (!words.length) {
      container.textContent = text;
      return;
    }
    const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    const re = new RegExp(`(${escaped.join('|')})`, 'gi');
    let last = 0;
    let mt;
    while ((mt = re.exec(text))) {
      if (mt[0] === '') { re.lastIndex += 1; continue; }
      if (mt.index > last) container.append(document.createTextNode(text.slice(last, mt.index)));
      container.append(h('mark', { text: mt[0] }));
      last = mt.index + mt[0].length;
    }
    if (last < text.length) container.append(document.createTextNode(text.slice(last)));
  }

  function goToResult(room, id) {
    if (!room) return;
    if (S.view && S.view.kind === 'room' && S.view.id === room) {
      if (!focusMessage(id)) toast('That message is older than what is loaded; scroll up to load more.', { timeout: 4000 });
      return;
    }
    openRoom(room, id);
  }

  // ---------------------------------------------------------------------------
  // Files
  // ---------------------------------------------------------------------------

  function onFileChosen() {
    const input = $('#file-input');
    const files = Array.from(input.files || []);
    input.value = '';
    uploadFiles(files);
  }

  /** Uploads files (picker, drop or paste) and sends one message that carries them. */
  async function uploadFiles(files) {
    if (!files.length) return;
    if (!S.view || S.view.kind !== 'room') {
      toast('Attachments can be sent in rooms only.', { kind: 'error' });
      return;
    }
    const r = currentRoom();
    const ids = [];
    for (const file of files) {
      const note = toast(`Uploading ${file.name}…`, { timeout: 0 });
      const res = await api('POST', '/files', file, { raw: true, contentType: file.type || 'application/octet-stream' });
      note.remove();
      if (!res.ok || !res.data || !res.data.id) {
        toast(res.status === 413 ? `${file.name} is too large for this hub.` : `Upload failed: ${errText(res)}`, { kind: 'error' });
        continue;
      }
      const id = String(res.data.id);
      S.fileMeta.set(id, { type: file.type || 'application/octet-stream', name: file.name });
      ids.push(id);
    }
    if (!ids.length || currentRoom() !== r) return;
    const composer = $('#composer');
    const text = composer.value.trim() || files.map((f) => f.name).join(', ');
    composer.value = '';
    autoGrow(composer);
    stopTyping();
    queueRoomMessage(r, text, { attachments: ids });
  }

  // ---------------------------------------------------------------------------
  // Presence
  // ---------------------------------------------------------------------------

  function upsertUser(raw, status) {
    let u;
    if (typeof raw === 'string') u = { id: raw, username: raw };
    else if (raw && typeof raw === 'object') {
      const id = raw.id ?? raw.sub ?? raw.user_id ?? raw.user ?? raw.username;
      if (id === undefined || id === null) return null;
      u = { id: String(id), username: String(raw.username ?? raw.name ?? raw.user ?? id) };
      if (raw.status) status = raw.status;
    } else return null;
    // A real entry replaces any guess made from a display name.
    for (const [k, v] of S.users) {
      if (v.guessed && k !== u.id && String(v.username).toLowerCase() === u.username.toLowerCase()) S.users.delete(k);
    }
    const old = S.users.get(u.id);
    const entry = Object.assign(old || {}, u, { status: status || (old && old.status) || 'online', guessed: false });
    S.users.set(u.id, entry);
    if (S.dmPeers.includes(u.id)) S.dmNames[u.id] = u.username;
    return entry;
  }

  function startPresence() {
    const conn = new Conn({
      url: () => wsUrl('/presence'),
      onOpen: () => {
        if (S.myStatus !== 'online') conn.send({ type: 'status', status: S.myStatus });
      },
      onFrame: (f) => onPresenceFrame(conn, f),
      onStatus: (st) => {
        S.presenceState = st;
        if (!S.view) setConnStatus(st);
      },
      onClose: (ev, opened, fails) => {
        if (S.presence !== conn) return 'stop';
        const me = S.users.get(S.me.sub);
        if (me) me.status = 'offline';
        renderPresence();
        if (ev.code === 4003) return 'stop';
        if (!opened && fails >= 3) probeToken();
        return undefined;
      },
    });
    S.presence = conn;
    conn.start();
  }

  function onPresenceFrame(conn, f) {
    if (S.presence !== conn) return;
    switch (f.type) {
      case 'users': {
        conn.healthy();
        mergeUsers(f.users, true);
        return;
      }
      case 'status': {
        const explicit = f.id ?? f.sub ?? f.user_id;
        let sub = explicit !== undefined ? String(explicit) : subForName(f.user);
        if (!sub) {
          // A newcomer known only by display name: list it now, learn its id from a fresh snapshot.
          sub = String(f.user);
          S.users.set(sub, { id: sub, username: String(f.user), status: f.status, guessed: true });
          refreshPresence();
        } else {
          const u = S.users.get(sub) || upsertUser({ id: sub, username: f.user || sub }, f.status);
          u.status = f.status || 'online';
          if (explicit !== undefined && f.user) u.username = String(f.user);
        }
        if (sub === S.me.sub && ['online', 'away', 'busy'].includes(f.status)) {
          $('#status-select').value = f.status;
          $('#status-select').dataset.status = f.status;
        }
        renderPresence();
        if (S.view && S.view.kind === 'dm' && S.view.peer === sub) renderHeader();
        return;
      }
      case 'mention': return onMention(f);
      case 'error': return toast(f.detail || f.code || 'error', { kind: 'error', title: (f.code || 'error').replace(/_/g, ' ') });
      default: return undefined;
    }
  }

  function mergeUsers(list, authoritative) {
    if (!Array.isArray(list)) return;
    const online = new Set();
    for (const raw of list) {
      const u = upsertUser(raw, typeof raw === 'object' && raw ? raw.status : 'online');
      if (u) online.add(u.id);
    }
    if (authoritative) {
      for (const [id, u] of S.users) if (!online.has(id) && !u.guessed) u.status = 'offline';
    }
    renderPresence();
    renderDmList();
    if (S.view) renderHeader();
  }

  // A second /presence connection of the same user broadcasts nothing, and its
  // `users` snapshot tells us the id of a newcomer we only know by name.
  let refreshTimer = null;
  function refreshPresence() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => {
      if (!S.presence || !S.presence.open) return;
      let ws;
      try { ws = new WebSocket(wsUrl('/presence')); } catch (_) { return; }
      const done = setTimeout(() => ws.close(), 5000);
      ws.onmessage = (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch (_) { return; }
        if (f && f.type === 'users') {
          clearTimeout(done);
          ws.close();
          mergeUsers(f.users, false);
        }
      };
    }, 400);
  }

  async function probeToken() {
    const res = await api('GET', '/rooms');
    if (res.status === 401) sessionExpired();
  }

  const STATUS_ORDER = { online: 0, busy: 1, away: 2, offline: 3 };
  function renderPresence() {
    if (!S.me) return;
    const ul = $('#presence-list');
    const users = Array.from(S.users.values()).sort((a, b) => {
      if (a.id === S.me.sub) return -1;
      if (b.id === S.me.sub) return 1;
      const d = (STATUS_ORDER[a.status] ?? 3) - (STATUS_ORDER[b.status] ?? 3);
      return d || String(a.username).localeCompare(String(b.username));
    });
    const mod = S.view && S.view.kind === 'room' && isMod(S.view.id);
    ul.replaceChildren(...users.map((u) => {
      const me = u.id === S.me.sub;
      const status = ['online', 'away', 'busy', 'offline'].includes(u.status) ? u.status : 'online';
      const active = S.view && S.view.kind === 'dm' && S.view.peer === u.id;
      const av = avatar(u.username, 'avatar-sm');
      av.append(h('span', { class: `status-dot ${status}`, title: status }));
      return h('li', { class: `nav-item user${active ? ' active' : ''}${status === 'offline' ? ' is-offline' : ''}`, dataset: { user: u.id, status } },
        h('button', {
          type: 'button', class: 'nav-btn', title: me ? `You (${u.id})` : `Message ${u.username} (${u.id})`,
          on: { click: () => (me ? null : openDm(u.id)) },
        }, av,
        h('span', { class: 'nav-label username', text: u.username }),
        me ? h('span', { class: 'you', text: 'you' }) : null,
        S.dmUnread.get(u.id) ? h('span', { class: 'badge', text: S.dmUnread.get(u.id) }) : null),
        mod && !me ? h('button', {
          type: 'button', class: 'nav-x user-more', title: 'Moderate', 'aria-label': `Moderate ${u.username}`, text: '⋯',
          on: { click: (e) => { e.stopPropagation(); openUserMenu(e.currentTarget, u.id, u.username); } },
        }) : null);
    }));
    const n = users.filter((u) => u.status !== 'offline').length;
    $('#online-count').textContent = `${n} online`;
  }

  function setMyStatus() {
    const s = $('#status-select').value;
    S.myStatus = s;
    store(STORAGE.status, s);
    $('#status-select').dataset.status = s;
    if (S.presence) S.presence.send({ type: 'status', status: s });
  }

  // ---------------------------------------------------------------------------
  // Direct messages
  // ---------------------------------------------------------------------------

  function saveDms() {
    store(STORAGE.dms(S.me.sub), { peers: S.dmPeers.slice(0, 30), names: S.dmNames });
  }

  function addDmPeer(sub, name) {
    if (!sub || sub === S.me.sub) return;
    S.dmPeers = [sub, ...S.dmPeers.filter((x) => x !== sub)];
    if (name) S.dmNames[sub] = name;
    saveDms();
  }

  function renderDmList() {
    if (!S.me) return;
    const ul = $('#dm-list');
    ul.replaceChildren(...S.dmPeers.map((sub) => {
      const u = S.users.get(sub);
      const status = u ? u.status : 'offline';
      const active = S.view && S.view.kind === 'dm' && S.view.peer === sub;
      const unread = S.dmUnread.get(sub);
      const av = avatar(nameOf(sub), 'avatar-sm');
      av.append(h('span', { class: `status-dot ${status}` }));
      return h('li', { class: `nav-item${active ? ' active' : ''}${unread ? ' unread' : ''}`, dataset: { dm: sub } },
        h('button', { type: 'button', class: 'nav-btn', on: { click: () => openDm(sub) } },
          av,
          h('span', { class: 'nav-label', text: nameOf(sub) }),
          unread ? h('span', { class: 'badge', text: unread }) : null),
        h('button', {
          type: 'button', class: 'nav-x', title: 'Close conversation', 'aria-label': `Close conversation with ${nameOf(sub)}`, text: '✕',
          on: {
            click: (e) => {
              e.stopPropagation();
              S.dmPeers = S.dmPeers.filter((x) => x !== sub);
              saveDms();
              if (S.view && S.view.kind === 'dm' && S.view.peer === sub) { closeView(); renderEmptyView(); }
              renderDmList();
            },
          },
        }));
    }));
    if (!S.dmPeers.length) ul.append(h('li', { class: 'nav-empty', text: 'Click someone under People' }));
  }

  function openDm(sub) {
    if (!S.me || !sub || sub === S.me.sub) return;
    if (S.view && S.view.kind === 'dm' && S.view.peer === sub && S.dm && !S.dm.conn.stopped) {
      $('#composer').focus();
      return;
    }
    closeView();
    addDmPeer(sub, S.users.get(sub) ? S.users.get(sub).username : S.dmNames[sub]);
    S.view = { kind: 'dm', peer: sub };
    store(STORAGE.last(S.me.sub), { kind: 'dm', peer: sub });
    S.dmUnread.delete(sub);
    updateTitle();
    const d = { peer: sub, messages: [], pending: [], loaded: false, conn: null };
    renderHeader();
    renderRoomList();
    renderDmList();
    renderPresence();
    setComposerEnabled(true, `Message ${nameOf(sub)}`);
    renderDm(d, true);
    const conn = new Conn({
      url: () => wsUrl(`/dm/${enc(sub)}`),
      onFrame: (f) => onDmFrame(d, f),
      onStatus: (s) => { if (S.dm === d) setConnStatus(s); },
      onClose: (ev, opened, fails) => {
        if (S.dm !== d) return 'stop';
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
    S.dm = d;
    conn.start();
    setTimeout(() => { if (S.dm === d) $('#composer').focus(); }, 0);
  }

  // Who sent a direct message: `from_id` when the hub names it, else the display name.
  const dmFromId = (f) => {
    const id = f.from_id ?? f.from_sub ?? f.user_id ?? f.sub;
    return id === undefined || id === null ? null : String(id);
  };
  /** Our own copy of a message we sent (the hub adds `to` to the sender's copies). */
  function dmIsMine(f) {
    const fromId = dmFromId(f);
    if (fromId !== null) return fromId === S.me.sub;
    if (f.to !== undefined && f.to !== null) return String(f.to) !== S.me.sub || isMe(f.from);
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
    if (S.dm !== d) return;
    switch (f.type) {
      case 'history': {
        d.conn.healthy();
        d.loaded = true;
        d.messages = (Array.isArray(f.messages) ? f.messages : []).filter((m) => m && typeof m === 'object');
        for (const p of d.pending) if (!p.sent) sendDmPending(d, p);
        renderDm(d, true);
        return;
      }
      case 'direct_message': {
        if (!dmBelongs(d, f)) {
          if (!S.inboxOk && !dmIsMine(f)) notifyDm(f);
          return;
        }
        if (dmIsMine(f)) {
          const idx = d.pending.findIndex((p) => p.content === f.content);
          if (idx >= 0) d.pending.splice(idx, 1);
        } else if (f.from && !S.users.has(d.peer)) {
          S.dmNames[d.peer] = String(f.from);
        }
        d.messages.push(f);
        renderDm(d, nearBottom(mainBox()) || dmIsMine(f));
        return;
      }
      case 'mention': return onMention(f);
      case 'error': return onErrorFrame(null, f);
      default: return undefined;
    }
  }

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
      const name = mine ? S.me.username : String(m.from ?? nameOf(d.peer));
      const content = h('div', { class: 'content' });
      renderRichText(content, String(m.content ?? m.message ?? ''));
      const dataset = { day, index: String(i) };
      if (m.id !== undefined && m.id !== null) dataset.id = String(m.id);
      nodes.push(h('div', { class: `message dm${mine ? ' mine' : ''}`, dataset },
        avatar(name),
        h('div', { class: 'msg-body' },
          h('div', { class: 'msg-head' },
            h('span', { class: 'author', text: name }),
            h('time', { class: 'time', text: fmtTime(m.timestamp), title: fmtFull(m.timestamp) })),
          content)));
    });
    for (const p of d.pending) {
      nodes.push(renderPendingEl(p));
    }
    box.replaceChildren(...nodes);
    if (toBottom) box.scrollTop = box.scrollHeight;
  }

  function sendDmPending(d, p) {
    if (d.conn && d.conn.send({ message: p.content })) {
      p.sent = true;
      p.sentAt = Date.now();
      // Should the hub not echo our copy, stop showing it as pending after a while.
      setTimeout(() => {
        const idx = d.pending.indexOf(p);
        if (idx >= 0 && S.dm === d) {
          d.pending.splice(idx, 1);
          d.messages.push({ from: S.me.username, to: d.peer, content: p.content, timestamp: new Date(p.ts).toISOString() });
          renderDm(d, nearBottom(mainBox()));
        }
      }, 4000);
    }
  }

  function sendDm(text) {
    const d = S.dm;
    if (!d) return;
    const p = { client_id: randomId(), content: text, ts: Date.now(), sent: false, failed: false };
    d.pending.push(p);
    mainBox().append(renderPendingEl(p));
    mainBox().scrollTop = mainBox().scrollHeight;
    sendDmPending(d, p);
  }

  function notifyDm(f) {
    const fromId = dmFromId(f);
    const sub = fromId !== null ? fromId : (subForName(f.from) || String(f.from));
    if (!sub || sub === S.me.sub) return;
    if (S.view && S.view.kind === 'dm' && S.view.peer === sub) return;
    addDmPeer(sub, String(f.from || sub));
    S.dmUnread.set(sub, (S.dmUnread.get(sub) || 0) + 1);
    renderDmList();
    renderPresence();
    updateTitle();
    toast(String(f.content ?? ''), { kind: 'dm', title: `Message from ${f.from || sub}`, onClick: () => openDm(sub) });
  }

  // A /dm connection receives every direct message sent to us, so one to our own
  // id works as an inbox for notifications while another view is open.
  function startInbox() {
    const conn = new Conn({
      url: () => wsUrl(`/dm/${enc(S.me.sub)}`),
      onOpen: () => { S.inboxOk = true; },
      onFrame: (f) => {
        if (S.inbox !== conn) return;
        if (f.type === 'history') { conn.healthy(); return; }
        if (f.type === 'direct_message') {
          if (dmIsMine(f)) return;
          notifyDm(f);
        } else if (f.type === 'mention') onMention(f);
      },
      onClose: (ev, opened, fails) => {
        if (S.inbox !== conn) return 'stop';
        S.inboxOk = false;
        if (ev.code === 4003 || fails >= 3) return 'stop';
        return undefined;
      },
    });
    S.inbox = conn;
    conn.start();
  }

  // ---------------------------------------------------------------------------
  // Popovers: emoji picker, user menu
  // ---------------------------------------------------------------------------

  let pickerCallback = null;
  function openEmojiPicker(anchor, onPick) {
    closePopovers();
    const p = $('#emoji-picker');
    pickerCallback = onPick;
    p.replaceChildren(...EMOJIS.map((emoji) => h('button', {
      type: 'button', class: 'emoji-choice', dataset: { emoji }, title: emoji, text: emoji,
      on: {
        click: (e) => {
          e.stopPropagation();
          const cb = pickerCallback;
          closePopovers();
          if (cb) cb(emoji);
        },
      },
    })));
    placePopover(p, anchor);
  }

  function placePopover(p, anchor) {
    p.hidden = false;
    const a = anchor.getBoundingClientRect();
    const w = p.offsetWidth;
    const hgt = p.offsetHeight;
    let left = Math.min(window.innerWidth - w - 8, Math.max(8, a.right - w));
    let top = a.top - hgt - 6;
    if (top < 8) top = a.bottom + 6;
    p.style.left = `${left}px`;
    p.style.top = `${top}px`;
  }

  function openUserMenu(anchor, sub, name) {
    closePopovers();
    const menu = $('#user-menu');
    const items = [h('div', { class: 'menu-head' }, avatar(name, 'avatar-sm'),
      h('div', {}, h('div', { class: 'menu-name', text: name }), h('div', { class: 'menu-sub', text: sub || '' })))];
    if (sub && sub !== S.me.sub) {
      items.push(h('button', { type: 'button', class: 'menu-item menu-dm', text: 'Send direct message', on: { click: () => { closePopovers(); openDm(sub); } } }));
    }
    const room = S.view && S.view.kind === 'room' ? S.view.id : null;
    if (room && sub && sub !== S.me.sub && isMod(room)) {
      items.push(h('div', { class: 'menu-sep' }));
      const act = (action, label, extra) => h('button', {
        type: 'button', class: `menu-item menu-${action}${action === 'ban' || action === 'kick' ? ' danger' : ''}`,
        dataset: { action }, text: label,
        on: { click: () => { closePopovers(); moderate(action, sub, extra); } },
      });
      // Offer what fits what we saw happen in this room: no "Ban" for the banned, "Unban" only for them.
      const r = roomState(room);
      const banned = r.banned.has(sub);
      const muted = r.muted.has(sub);
      items.push(act('kick', 'Kick'));
      if (!muted && !banned) items.push(act('mute', 'Mute', 600));
      if (!banned) items.push(act('ban', 'Ban'));
      if (banned || muted) items.push(act('unban', 'Unban'));
    }
    if (items.length === 1 && sub === S.me.sub) items.push(h('div', { class: 'menu-note', text: 'That is you.' }));
    menu.replaceChildren(...items);
    placePopover(menu, anchor);
    const r = menu.getBoundingClientRect();
    const a = anchor.getBoundingClientRect();
    menu.style.left = `${Math.min(window.innerWidth - r.width - 8, Math.max(8, a.left))}px`;
    menu.style.top = `${a.bottom + r.height + 8 < window.innerHeight ? a.bottom + 4 : Math.max(8, a.top - r.height - 4)}px`;
  }

  function moderate(action, sub, duration) {
    if (!S.chat) return;
    const frame = { type: action, user: sub };
    if (duration) frame.duration_s = duration;
    S.chat.send(frame);
  }

  function closePopovers() {
    $('#emoji-picker').hidden = true;
    $('#user-menu').hidden = true;
    pickerCallback = null;
  }

  // ---------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------

  function wire() {
    $('#guest-form').addEventListener('submit', guestLogin);
    $('#token-form').addEventListener('submit', tokenLogin);
    $('#token-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); tokenLogin(e); }
    });
    $('#sign-out').addEventListener('click', signOut);
    // Small screens: the sidebar slides over the page and goes away once something is picked.
    $('#menu-toggle').addEventListener('click', (e) => {
      e.stopPropagation();
      $('#app').classList.toggle('show-sidebar');
    });
    $('.sidebar').addEventListener('click', (e) => {
      if (e.target.closest('.nav-btn')) $('#app').classList.remove('show-sidebar');
    });
    $('.main').addEventListener('click', () => $('#app').classList.remove('show-sidebar'));
    $('#status-select').addEventListener('change', setMyStatus);

    $('#room-join-form').addEventListener('submit', joinRoomFromInput);
    $('#create-room').addEventListener('click', openDialog);
    $('#create-room-form').addEventListener('submit', createRoom);
    $('#new-room-cancel').addEventListener('click', closeDialog);
    $('#room-info').addEventListener('click', openRoomDialog);
    $('#room-form').addEventListener('submit', saveRoomDialog);
    $('#room-dialog-close').addEventListener('click', () => $('#room-dialog').close());
    $('#room-delete').addEventListener('click', deleteRoom);
    $('#room-add-member-btn').addEventListener('click', () => {
      const v = $('#room-add-member').value.split(',').map((x) => x.trim()).filter(Boolean);
      if (v.length && roomDialogId) changeMembers(roomDialogId, v, []);
      $('#room-add-member').value = '';
    });
    $('#room-add-member').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); $('#room-add-member-btn').click(); }
    });

    const composer = $('#composer');
    $('#composer-form').addEventListener('submit', submitComposer);
    composer.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submitComposer(e);
      // Up in an empty composer edits my last message, as in most chat apps.
      if (e.key === 'ArrowUp' && !composer.value && S.view && S.view.kind === 'room') {
        const r = currentRoom();
        const mine = sortedMain(r).filter((m) => m.type === 'message' && !m.deleted && isMine(m)).pop();
        if (mine) {
          e.preventDefault();
          startEdit(r, mine.id);
        }
      }
    });
    composer.addEventListener('input', onComposerInput);
    $('#file-input').addEventListener('change', onFileChosen);
    // Files dropped on the conversation or pasted into the composer go the same way.
    const main = $('.main');
    main.addEventListener('dragover', (e) => {
      if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes('Files')) return;
      if (!S.view || S.view.kind !== 'room') return;
      e.preventDefault();
      main.classList.add('dropping');
    });
    main.addEventListener('dragleave', (e) => {
      if (!main.contains(e.relatedTarget)) main.classList.remove('dropping');
    });
    main.addEventListener('drop', (e) => {
      main.classList.remove('dropping');
      const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
      if (!files.length) return;
      e.preventDefault();
      uploadFiles(files);
    });
    composer.addEventListener('paste', (e) => {
      const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
      if (!files.length || !S.view || S.view.kind !== 'room') return;
      e.preventDefault();
      uploadFiles(files);
    });

    const tcomp = $('#thread-composer');
    $('#thread-form').addEventListener('submit', submitThread);
    tcomp.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) submitThread(e);
    });
    tcomp.addEventListener('input', () => autoGrow(tcomp));
    $('#thread-close').addEventListener('click', closeThread);

    $('#search-form').addEventListener('submit', (e) => { e.preventDefault(); runSearch(); });
    $('#search-input').addEventListener('keydown', (e) => {
      if (e.key === 'Enter') { e.preventDefault(); runSearch(); }
      if (e.key === 'Escape') { e.target.value = ''; $('#search-close').click(); }
    });
    $('#search-close').addEventListener('click', () => {
      $('#search-panel').hidden = true;
      if ($('#thread-panel').hidden) $('#app').classList.remove('with-panel');
    });

    $('#messages').addEventListener('scroll', () => {
      const box = $('#messages');
      if (box.scrollTop < 60 && S.view && S.view.kind === 'room') loadOlder();
      if (nearBottom(box)) $('#jump-latest').hidden = true;
    }, { passive: true });
    $('#jump-latest').addEventListener('click', () => {
      const box = $('#messages');
      box.scrollTop = box.scrollHeight;
      $('#jump-latest').hidden = true;
    });

    document.addEventListener('click', (e) => {
      if (e.target.closest('.popover, .act-react, .reaction-add, .author, .user-more')) return;
      closePopovers();
    });
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      const popoverOpen = !$('#emoji-picker').hidden || !$('#user-menu').hidden;
      closePopovers();
      if (popoverOpen || e.target.closest('input, textarea, dialog')) return;
      if (!$('#thread-panel').hidden) closeThread();
      else if (!$('#search-panel').hidden) $('#search-close').click();
    });
    document.addEventListener('visibilitychange', () => {
      const r = currentRoom();
      if (r && document.visibilityState === 'visible') scheduleRead(r);
    });
    window.addEventListener('focus', () => {
      const r = currentRoom();
      if (r) scheduleRead(r);
    });
    window.addEventListener('resize', closePopovers);
    // Expire typing indicators.
    setInterval(() => {
      const r = currentRoom();
      if (r && r.typing.size) renderTyping(r);
    }, 1000);
  }

  function boot() {
    wire();
    const token = load(STORAGE.token, null);
    if (token && setToken(token)) return;
    $('#signin-screen').hidden = false;
    $('#guest-name').focus();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', boot);
  else boot();
})();
