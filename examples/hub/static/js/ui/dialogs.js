// Modal dialogs (<dialog>), with a fallback for browsers without showModal().

export function showDialog(d) {
  if (typeof d.showModal === 'function') d.showModal();
  else d.setAttribute('open', '');
}

export function hideDialog(d) {
  if (typeof d.close === 'function' && d.open) d.close();
  else d.removeAttribute('open');
}
