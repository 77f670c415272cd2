// Times and days as the messages show them.

export function fmtTime(ts) {
  const d = ts ? new Date(ts) : null;
  if (!d || isNaN(d)) return '';
  return d.toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' });
}

export function fmtFull(ts) {
  const d = ts ? new Date(ts) : null;
  if (!d || isNaN(d)) return '';
  return d.toLocaleString();
}

export function dayKey(ts) {
  const d = ts ? new Date(ts) : null;
  if (!d || isNaN(d)) return '';
  return `${d.getFullYear()}-${d.getMonth()}-${d.getDate()}`;
}

export function fmtDay(ts) {
  const d = new Date(ts);
  const today = new Date();
  const yesterday = new Date(Date.now() - 864e5);
  if (dayKey(d) === dayKey(today)) return 'Today';
  if (dayKey(d) === dayKey(yesterday)) return 'Yesterday';
  return d.toLocaleDateString([], { weekday: 'long', month: 'long', day: 'numeric' });
}
