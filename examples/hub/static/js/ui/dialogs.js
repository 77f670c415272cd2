// Modal dialogs (<dialog>), with a fallback for browsers without showModal().

export function showDialog(d) {
  if (typeof d.showModal === 'function') d.showModal();
  else d.setAttribute('open', '');
}

export function hideDialog(d) {
  if (typeof d.close === 'function' && d.open) d.close();
  else d.removeAttribute('open');
}

/**
 * Asks before an action that cannot be undone, in an accessible modal
 * (role alertdialog, focus on Cancel, Esc cancels, Tab stays inside).
 * opts: {title, text, confirm (button label), choices?: [[value, label]],
 * choiceLabel?, choice? (preselected)}. Resolves to false when cancelled,
 * true when confirmed, or the chosen value when there are choices.
 */
export function confirmDialog(opts) {
  const d = document.getElementById('confirm-dialog');
  const select = document.getElementById('confirm-select');
  document.getElementById('confirm-title').textContent = opts.title || 'Are you sure?';
  document.getElementById('confirm-text').textContent = opts.text || '';
  document.getElementById('confirm-ok').textContent = opts.confirm || 'Confirm';
  const choices = Array.isArray(opts.choices) ? opts.choices : [];
  document.getElementById('confirm-choice').hidden = !choices.length;
  document.getElementById('confirm-select-label').textContent = opts.choiceLabel || 'For how long';
  select.replaceChildren(...choices.map(([value, label]) => {
    const o = document.createElement('option');
    o.value = String(value);
    o.textContent = label;
    return o;
  }));
  if (opts.choice !== undefined) select.value = String(opts.choice);
  const opener = document.activeElement;
  return new Promise((resolve) => {
    d.returnValue = 'cancel';
    const done = () => {
      d.removeEventListener('close', done);
      const ok = d.returnValue === 'ok';
      if (opener && typeof opener.focus === 'function' && opener.isConnected) opener.focus();
      if (!ok) resolve(false);
      else resolve(choices.length ? select.value : true);
    };
    d.addEventListener('close', done);
    showDialog(d);
    // The safe choice has the focus: Enter or Space right away cancels.
    (choices.length ? select : document.getElementById('confirm-cancel')).focus();
  });
}
