// HTTP calls to the hub with the token, and the URLs that carry it.
// File links carry no token: the hub reads it from the `cbx_files` cookie,
// sent only to /files on this site (the token stays out of URLs, logs and
// Referer headers).

import { sessionExpired } from './session.js';
import { state } from './state.js';

export const enc = encodeURIComponent;

export function wsUrl(path, extra = '') {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.host}${path}?token=${enc(state.token)}${extra}`;
}

export function fileUrl(id) {
  const secure = location.protocol === 'https:' ? '; Secure' : '';
  document.cookie = `cbx_files=${enc(state.token || '')}; Path=/files; SameSite=Strict${secure}`;
  return `/files/${enc(id)}`;
}

export async function api(method, path, body, opts = {}) {
  const headers = { Authorization: `Bearer ${state.token}` };
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

export function errText(r) {
  if (!r) return 'unknown error';
  const d = r.data;
  if (d && typeof d === 'object') return d.detail || d.error || d.message || `HTTP ${r.status}`;
  if (typeof d === 'string' && d.trim()) return d.trim().slice(0, 200);
  return r.status ? `HTTP ${r.status}` : (r.error || 'network error');
}
