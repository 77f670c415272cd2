// `@` autocomplete in the composers: typing @ and a few letters offers the
// people this client knows (the People list and the authors it has seen);
// arrows move, Enter or Tab inserts the mention, Esc closes. The mention
// inserted is the name when the hub can match it (letters, digits, _ . -),
// else the user id, which the hub matches too.

import { shortId } from './identity.js';
import { state } from './state.js';
import { h } from './ui/dom.js';

const MENTIONABLE = /^[A-Za-z0-9_.-]+$/;

function candidates(prefix) {
  const low = prefix.toLowerCase();
  const seen = new Map();
  for (const u of state.users.values()) if (!u.guessed) seen.set(String(u.id), String(u.username));
  for (const [sub, name] of Object.entries(state.knownNames)) if (!seen.has(sub)) seen.set(sub, String(name));
  if (state.me) seen.delete(state.me.sub);
  return Array.from(seen, ([id, username]) => ({ id, username }))
    .filter((p) => p.username.toLowerCase().startsWith(low) || p.id.toLowerCase().startsWith(low))
    .sort((a, b) => a.username.localeCompare(b.username))
    .slice(0, 8);
}

/** The `@word` right before the caret, or null. */
function mentionAtCaret(input) {
  const upto = input.value.slice(0, input.selectionStart);
  const mt = /(^|\s)@([A-Za-z0-9_.-]*)$/.exec(upto);
  return mt ? { start: upto.length - mt[2].length - 1, prefix: mt[2] } : null;
}

let lists = 0;

/** Adds @ autocomplete to a composer text area. */
export function mentionAutocomplete(input) {
  lists += 1;
  const listId = `mention-list-${lists}`;
  const list = h('ul', { id: listId, class: 'mention-list people-list', role: 'listbox', 'aria-label': 'Mention someone' });
  list.hidden = true;
  input.parentElement.append(list);
  // A text area cannot be a combobox: it is a textbox that suggests (aria-autocomplete)
  // and points at the suggestion in focus (aria-activedescendant).
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-controls', listId);
  let options = [];
  let active = 0;
  let at = null;

  const close = () => {
    list.hidden = true;
    options = [];
    input.removeAttribute('aria-activedescendant');
  };
  const highlight = (i) => {
    active = i;
    list.querySelectorAll('[role="option"]').forEach((n, j) => n.setAttribute('aria-selected', j === i ? 'true' : 'false'));
    input.setAttribute('aria-activedescendant', `${listId}-${i}`);
  };
  const insert = (p) => {
    const word = MENTIONABLE.test(p.username) ? p.username : p.id;
    const before = input.value.slice(0, at.start);
    const after = input.value.slice(input.selectionStart);
    input.value = `${before}@${word} ${after.replace(/^\s/, '')}`;
    const caret = before.length + word.length + 2;
    input.setSelectionRange(caret, caret);
    close();
    input.dispatchEvent(new Event('input', { bubbles: true }));
    input.focus();
  };
  const update = () => {
    at = mentionAtCaret(input);
    options = at ? candidates(at.prefix) : [];
    if (!options.length) { close(); return; }
    list.replaceChildren(...options.map((p, i) => h('li', {
      id: `${listId}-${i}`, role: 'option', class: 'person-option', 'aria-selected': 'false', dataset: { sub: p.id },
      on: { mousedown: (e) => { e.preventDefault(); insert(p); } },
    }, h('span', { class: 'person-name', text: p.username }),
    h('span', { class: 'person-id', text: shortId(p.id) }))));
    list.hidden = false;
    highlight(0);
  };
  input.addEventListener('input', update);
  input.addEventListener('blur', () => setTimeout(close, 150));
  // Capture: this runs before the composer's own Enter-to-send.
  input.addEventListener('keydown', (e) => {
    if (list.hidden || !options.length) return;
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      e.stopImmediatePropagation();
      highlight((active + (e.key === 'ArrowDown' ? 1 : options.length - 1)) % options.length);
    } else if ((e.key === 'Enter' && !e.shiftKey) || e.key === 'Tab') {
      e.preventDefault();
      e.stopImmediatePropagation();
      insert(options[active]);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopImmediatePropagation();
      close();
    }
  }, true);
}
