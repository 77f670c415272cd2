// The sign-in screen: guest login, a pasted token, and checking a token's
// claims. A guest who signs out (and does not ask to be forgotten) keeps
// their token on this browser: signing in again under the same name, or
// with "Continue as", is the same user with the same rooms and messages,
// for as long as the token is valid.

import { api } from './api.js';
import { startSession } from './session.js';
import { state } from './state.js';
import { loadJson, save, STORAGE } from './storage.js';
import { $, h } from './ui/dom.js';

const isGuest = (sub) => String(sub).startsWith('guest-');

/** Saved guest identities still valid: [{sub, username, token, exp}]. */
function savedGuests() {
  const list = loadJson(STORAGE.guests, []);
  if (!Array.isArray(list)) return [];
  const now = Date.now();
  return list.filter((g) => g && typeof g.token === 'string' && typeof g.sub === 'string'
    && (typeof g.exp !== 'number' || g.exp * 1000 > now + 60000));
}

/** Keep a guest's token on this browser after sign-out. */
export function keepGuest(token, me) {
  if (!isGuest(me.sub)) return;
  let exp = null;
  try { exp = decodeJwt(token).exp; } catch (_) { return; }
  const list = savedGuests().filter((g) => g.sub !== me.sub);
  list.unshift({ sub: me.sub, username: me.username, token, exp });
  save(STORAGE.guests, list.slice(0, 5));
}

/**
 * A guest's identity is its token: renew it (POST /auth/refresh, same id,
 * later expiry) on every visit, and hourly while the page stays open once
 * less than `within` ms are left, so a guest who comes back before it runs
 * out stays the same user.
 */
export async function renewGuestToken(within = Infinity) {
  if (!state.me || !isGuest(state.me.sub) || !state.token) return;
  let exp;
  try { exp = decodeJwt(state.token).exp; } catch (_) { return; }
  if (typeof exp === 'number' && exp * 1000 - Date.now() > within) return;
  const sub = state.me.sub;
  const res = await api('POST', '/auth/refresh', undefined, { no401: true });
  if (!res.ok || !res.data || typeof res.data.token !== 'string' || !state.me || state.me.sub !== sub) return;
  try {
    if (String(decodeJwt(res.data.token).sub) !== sub) return;
  } catch (_) { return; }
  state.token = res.data.token;
  save(STORAGE.token, state.token);
}

/** "Forget me": the identity leaves this browser. */
export function forgetGuest(sub) {
  save(STORAGE.guests, savedGuests().filter((g) => g.sub !== sub));
}

/** The "Continue as" list on the sign-in screen. */
export function renderSavedGuests() {
  const list = savedGuests();
  save(STORAGE.guests, list);
  $('#saved-guests').hidden = !list.length;
  $('#saved-guest-list').replaceChildren(...list.map((g) => h('li', {},
    h('button', {
      type: 'button', class: 'btn btn-secondary btn-block saved-guest', dataset: { sub: g.sub },
      text: `Continue as ${g.username}`,
      on: { click: () => setToken(g.token) },
    }))));
}

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

export function signinError(text) {
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
  // The same name as an identity kept here: that identity, not a new user.
  const kept = savedGuests().find((g) => g.username.toLowerCase() === username.toLowerCase());
  if (kept && setToken(kept.token)) return;
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

export function setToken(token) {
  let claims;
  try {
    claims = decodeJwt(token);
  } catch (err) {
    signinError(`That does not look like a valid token: ${err.message}`);
    return false;
  }
  if (typeof claims.exp === 'number' && claims.exp * 1000 < Date.now() - 30000) {
    signinError('That token has expired.');
    save(STORAGE.token, undefined);
    return false;
  }
  state.token = token;
  state.me = {
    sub: String(claims.sub),
    username: String(claims.username || claims.sub),
    roles: Array.isArray(claims.roles) ? claims.roles : [],
  };
  state.isAdmin = state.me.roles.includes('admin');
  save(STORAGE.token, token);
  // Signed in: the identity is the current one now, not a saved one.
  forgetGuest(state.me.sub);
  signinError('');
  startSession();
  return true;
}

/** The sign-in screen's forms. */
export function wireSignIn() {
  renderSavedGuests();
  $('#guest-form').addEventListener('submit', guestLogin);
  $('#token-form').addEventListener('submit', tokenLogin);
  $('#token-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); tokenLogin(e); }
  });
}
