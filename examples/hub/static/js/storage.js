// localStorage: the token, my status, and per user the rooms, DMs and last
// view.

export const STORAGE = {
  token: 'cbx.token',
  status: 'cbx.status',
  rooms: (sub) => `cbx.rooms.${sub}`,
  dms: (sub) => `cbx.dms.${sub}`,
  last: (sub) => `cbx.lastView.${sub}`,
  mentions: (sub) => `cbx.mentions.${sub}`,
  seen: (sub) => `cbx.seen.${sub}`,
  drafts: (sub) => `cbx.drafts.${sub}`,
  guests: 'cbx.guests',
  left: (sub) => `cbx.left.${sub}`,
};

export function save(key, value) {
  try {
    if (value === undefined) localStorage.removeItem(key);
    else localStorage.setItem(key, typeof value === 'string' ? value : JSON.stringify(value));
  } catch (_) { /* storage may be disabled */ }
}

export function load(key, fallback) {
  try {
    const v = localStorage.getItem(key);
    if (v === null) return fallback;
    return v;
  } catch (_) { return fallback; }
}

export function loadJson(key, fallback) {
  const v = load(key, null);
  if (v === null) return fallback;
  try { return JSON.parse(v); } catch (_) { return fallback; }
}
