// Toasts: short notices in the corner that stack up to five and go away.

import { $, $$, h } from './dom.js';

export function toast(body, opts = {}) {
  const kind = opts.kind || 'info';
  // The same notice again (say an error repeated for every typing frame) does not stack up.
  const key = `${kind}|${opts.title || ''}|${body}`;
  for (const old of $$('#toasts .toast')) {
    if (old.dataset.key === key && !old.classList.contains('leaving')) return old;
  }
  const close = h('button', { class: 'toast-close', type: 'button', 'aria-label': 'Dismiss', text: '✕' });
  const t = h('div', { class: `toast toast-${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('div', { class: 'toast-body' },
      opts.title ? h('div', { class: 'toast-title', text: opts.title }) : null,
      h('div', { class: 'toast-text', text: body })),
    close);
  t.dataset.key = key;
  const remove = () => {
    t.classList.add('leaving');
    setTimeout(() => t.remove(), 180);
  };
  close.addEventListener('click', (e) => { e.stopPropagation(); remove(); });
  // A click on the toast acts on it (opens the room or conversation) or dismisses it.
  if (opts.onClick) t.classList.add('clickable');
  t.addEventListener('click', () => {
    if (opts.onClick) opts.onClick();
    remove();
  });
  $('#toasts').append(t);
  while ($('#toasts').children.length > 5) $('#toasts').firstElementChild.remove();
  const timeout = opts.timeout === undefined ? (kind === 'info' ? 4000 : 6000) : opts.timeout;
  if (timeout) setTimeout(remove, timeout);
  return t;
}
