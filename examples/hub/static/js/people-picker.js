// The people picker: members are added by picking a known user (from
// GET /users?q= and the People list), never by typing an id that may not
// exist. An ARIA combobox: type to filter, arrows to move, Enter to pick,
// Esc to close.

import { api, enc } from './api.js';
import { labelOf, shortId } from './identity.js';
import { state } from './state.js';
import { h } from './ui/dom.js';

let pickers = 0;

/** Known users matching `q`: the hub's directory and whoever presence shows. */
async function findPeople(q) {
  const low = q.trim().toLowerCase();
  const found = new Map();
  for (const u of state.users.values()) {
    if (u.guessed) continue;
    if (String(u.username).toLowerCase().includes(low) || String(u.id).toLowerCase().includes(low)) {
      found.set(String(u.id), String(u.username));
    }
  }
  const res = await api('GET', `/users?q=${enc(q.trim())}`);
  if (res.ok && res.data && Array.isArray(res.data.users)) {
    for (const u of res.data.users) {
      if (u && u.id !== undefined) found.set(String(u.id), String(u.username ?? u.id));
    }
  }
  return Array.from(found, ([id, username]) => ({ id, username }))
    .sort((a, b) => a.username.localeCompare(b.username))
    .slice(0, 12);
}

/**
 * Turns `input` into a people picker. opts: onPick({id, username}),
 * exclude() -> Set of ids not to offer, status(text) to say what happened.
 * Returns {pickTyped()}: picks what was typed if it names exactly one user.
 */
export function peoplePicker(input, opts) {
  pickers += 1;
  const listId = `people-list-${pickers}`;
  const list = h('ul', { id: listId, class: 'people-list', role: 'listbox', 'aria-label': 'People' });
  list.hidden = true;
  input.after(list);
  input.setAttribute('role', 'combobox');
  input.setAttribute('aria-autocomplete', 'list');
  input.setAttribute('aria-expanded', 'false');
  input.setAttribute('aria-controls', listId);
  let options = [];
  let active = -1;
  let asked = 0;

  const close = () => {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  };
  const highlight = (i) => {
    active = i;
    list.querySelectorAll('[role="option"]').forEach((n, j) => n.setAttribute('aria-selected', j === i ? 'true' : 'false'));
    if (i >= 0) input.setAttribute('aria-activedescendant', `${listId}-${i}`);
    else input.removeAttribute('aria-activedescendant');
  };
  const pick = (person) => {
    close();
    input.value = '';
    opts.onPick(person);
    input.focus();
  };
  const show = (people) => {
    const excluded = opts.exclude ? opts.exclude() : new Set();
    options = people.filter((p) => !excluded.has(p.id));
    list.replaceChildren(...options.map((p, i) => h('li', {
      id: `${listId}-${i}`, role: 'option', class: 'person-option', 'aria-selected': 'false',
      dataset: { sub: p.id },
      on: { mousedown: (e) => { e.preventDefault(); pick(p); } },
    }, h('span', { class: 'person-name', text: p.username }),
    h('span', { class: 'person-id', text: shortId(p.id) }))));
    if (!options.length) {
      list.append(h('li', { class: 'person-none', role: 'presentation', text: `Nobody called “${input.value.trim()}” is known to this hub.` }));
    }
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    highlight(options.length ? 0 : -1);
  };
  const refresh = async () => {
    const q = input.value;
    if (!q.trim()) { close(); return; }
    const mine = ++asked;
    const people = await findPeople(q);
    if (mine === asked && input.value === q) show(people);
  };
  let timer = null;
  input.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 150);
  });
  input.addEventListener('keydown', (e) => {
    if (e.key === 'ArrowDown' && options.length) {
      e.preventDefault();
      if (list.hidden) show(options);
      highlight((active + 1) % options.length);
    } else if (e.key === 'ArrowUp' && options.length) {
      e.preventDefault();
      highlight((active - 1 + options.length) % options.length);
    } else if (e.key === 'Enter') {
      e.preventDefault();
      if (!list.hidden && active >= 0 && options[active]) pick(options[active]);
      else pickTyped();
    } else if (e.key === 'Escape' && !list.hidden) {
      e.preventDefault();
      e.stopPropagation();
      close();
    }
  });
  input.addEventListener('blur', () => setTimeout(close, 150));

  /** What was typed names exactly one known user (by id or name): pick them. */
  async function pickTyped() {
    const q = input.value.trim();
    if (!q) return false;
    const people = await findPeople(q);
    const low = q.toLowerCase();
    const exact = people.filter((p) => p.id.toLowerCase() === low || p.username.toLowerCase() === low);
    if (exact.length === 1) {
      pick(exact[0]);
      return true;
    }
    if (opts.status) {
      opts.status(exact.length > 1
        ? `More than one person is called “${q}”: pick one from the list.`
        : `Nobody called “${q}” is known to this hub: pick someone from the list.`);
    }
    show(people);
    return false;
  }
  return { pickTyped, close };
}

/** Chips of picked people, each with a remove button. */
export function renderChips(ul, people, onRemove) {
  ul.replaceChildren(...people.map((p) => h('li', { class: 'chip', dataset: { sub: p.id } },
    h('span', { text: labelOf(p.id, p.username), title: p.id }),
    h('button', {
      type: 'button', class: 'chip-x', 'aria-label': `Remove ${labelOf(p.id, p.username)}`, text: '✕',
      on: { click: () => onRemove(p) },
    }))));
}
