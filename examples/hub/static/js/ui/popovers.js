// Popovers: the emoji picker, and placing any popover next to its anchor.

import { $, h } from './dom.js';

const EMOJIS = ['👍', '❤️', '😂', '🎉', '😮', '😢'];

let pickerCallback = null;

export function openEmojiPicker(anchor, onPick) {
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

export function placePopover(p, anchor) {
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

export function closePopovers() {
  $('#emoji-picker').hidden = true;
  $('#user-menu').hidden = true;
  pickerCallback = null;
}
