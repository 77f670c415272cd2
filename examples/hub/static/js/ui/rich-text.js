// Message text with @mentions, links and search highlights, built from text
// nodes only.

import { state } from '../state.js';
import { h } from './dom.js';

/** Text with @mentions and links, built from text nodes only. */
export function renderRichText(container, text) {
  const re = /(@[A-Za-z0-9_.-]+)|(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])/g;
  let last = 0;
  let mt;
  const mine = state.me ? [state.me.sub.toLowerCase(), String(state.me.username).toLowerCase()] : [];
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

export function highlight(container, text, words) {
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
