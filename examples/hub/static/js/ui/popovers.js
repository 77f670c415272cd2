// Popovers: the emoji picker, and placing any popover next to its anchor.

import { $, h } from './dom.js';

const EMOJIS = [['👍', 'thumbs up'], ['❤️', 'heart'], ['😂', 'laughing'], ['🎉', 'party'], ['😮', 'surprised'], ['😢', 'sad']];

let pickerCallback = null;
// Where focus goes back to when the picker closes.
let pickerOpener = null;

export function openEmojiPicker(anchor, onPick) {
  closePopovers();
  const p = $('#emoji-picker');
  pickerCallback = onPick;
  pickerOpener = anchor;
  p.setAttribute('role', 'group');
  p.setAttribute('aria-label', 'Pick a reaction');
  p.replaceChildren(...EMOJIS.map(([emoji, label]) => h('button', {
    type: 'button', class: 'emoji-choice', dataset: { emoji }, title: label, 'aria-label': label, text: emoji,
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
  // The picker takes focus; arrows move along it, Esc goes back.
  p.querySelector('button').focus();
}

function onPickerKey(e) {
  const buttons = Array.from($('#emoji-picker').querySelectorAll('button'));
  const i = buttons.indexOf(document.activeElement);
  if (i < 0) return;
  let next = null;
  if (e.key === 'ArrowRight' || e.key === 'ArrowDown') next = (i + 1) % buttons.length;
  else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') next = (i - 1 + buttons.length) % buttons.length;
  else if (e.key === 'Home') next = 0;
  else if (e.key === 'End') next = buttons.length - 1;
  if (next !== null) {
    e.preventDefault();
    buttons[next].focus();
  }
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
  const picker = $('#emoji-picker');
  if (!picker.dataset.wired) {
    picker.dataset.wired = '1';
    picker.addEventListener('keydown', onPickerKey);
  }
  const hadFocus = !picker.hidden && picker.contains(document.activeElement);
  picker.hidden = true;
  $('#user-menu').hidden = true;
  pickerCallback = null;
  if (hadFocus && pickerOpener && pickerOpener.isConnected) pickerOpener.focus();
  pickerOpener = null;
}
