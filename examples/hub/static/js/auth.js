// The sign-in screen: guest login, a pasted token, and checking a token's
// claims.

import { startSession } from './session.js';
import { state } from './state.js';
import { save, STORAGE } from './storage.js';
import { $ } from './ui/dom.js';

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
  signinError('');
  startSession();
  return true;
}

/** The sign-in screen's forms. */
export function wireSignIn() {
  $('#guest-form').addEventListener('submit', guestLogin);
  $('#token-form').addEventListener('submit', tokenLogin);
  $('#token-input').addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); tokenLogin(e); }
  });
}
