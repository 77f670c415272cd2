// Avatars: initials on a color that follows from the name.

import { h } from './dom.js';

export function hashHue(s) {
  let x = 0;
  for (const ch of String(s)) x = (x * 31 + ch.codePointAt(0)) >>> 0;
  return x % 360;
}

export function initials(name) {
  // A label's "(…id)" suffix for namesakes is not part of the name.
  const s = String(name || '?').replace(/\s*\(…?[^()]*\)$/, '').trim() || '?';
  const parts = s.split(/[\s._-]+/).filter(Boolean);
  const first = Array.from(parts[0] || s)[0] || '?';
  const second = parts.length > 1 ? Array.from(parts[1])[0] : '';
  return (first + (second || '')).toUpperCase();
}

export function avatar(name, cls = '') {
  const a = h('span', { class: `avatar ${cls}`.trim(), text: initials(name), 'aria-hidden': 'true' });
  a.style.setProperty('--hue', hashHue(name));
  return a;
}
