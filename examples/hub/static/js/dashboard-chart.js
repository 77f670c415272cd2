// Small SVG charts for the dashboard, drawn by hand (no library, no
// network): a line over a time series and horizontal bars. Every chart is
// an <svg role="img"> whose aria-label says what it shows in words; the
// page also prints the current value beside it. Names and numbers reach
// the SVG through textContent only.

const SVG = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function text(x, y, content, attrs = {}) {
  const node = el('text', { x, y, ...attrs });
  node.textContent = content;
  return node;
}

/** A round number at or above `v` (1, 2 or 5 times a power of ten). */
export function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** `1234.5` as "1.2k", `0.25` as "0.25": short labels for axes and values. */
export function short(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e9) return `${(v / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  if (Number.isInteger(v)) return String(v);
  return a >= 10 ? v.toFixed(0) : v.toFixed(a >= 1 ? 1 : 2);
}

/**
 * Draws `values` (oldest first; `null` for a gap) into `host` as a line
 * with its area, y from 0 to a round maximum. `label` is the chart's text
 * alternative; `seconds` the span the series covers.
 */
export function lineChart(host, values, { label, seconds }) {
  const w = 320;
  const h = 120;
  const pad = { l: 36, r: 8, t: 8, b: 18 };
  const known = values.filter((v) => v !== null && v !== undefined);
  const top = niceCeil(Math.max(0, ...known));
  const svg = el('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': label, class: 'line-chart' });
  const x = (i) => pad.l + (values.length <= 1 ? 0 : (i * (w - pad.l - pad.r)) / (values.length - 1));
  const y = (v) => pad.t + (h - pad.t - pad.b) * (1 - v / top);
  // Grid: 0, half and the top, labelled.
  for (const v of [0, top / 2, top]) {
    svg.append(el('line', { x1: pad.l, x2: w - pad.r, y1: y(v), y2: y(v), class: 'grid' }));
    svg.append(text(pad.l - 4, y(v) + 4, short(v), { 'text-anchor': 'end', class: 'axis' }));
  }
  svg.append(text(pad.l, h - 4, `${Math.round(seconds)} s ago`, { class: 'axis' }));
  svg.append(text(w - pad.r, h - 4, 'now', { 'text-anchor': 'end', class: 'axis' }));
  // One path per run of known points, so a gap (no answer) shows as one.
  let run = [];
  const flush = () => {
    if (run.length === 0) return;
    const pts = run.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`);
    if (run.length > 1) {
      const area = `M${x(run[0][0]).toFixed(1)},${y(0)} L${pts.join(' L')} L${x(run[run.length - 1][0]).toFixed(1)},${y(0)} Z`;
      svg.append(el('path', { d: area, class: 'area' }));
      svg.append(el('polyline', { points: pts.join(' '), class: 'line' }));
    }
    const [li, lv] = run[run.length - 1];
    svg.append(el('circle', { cx: x(li), cy: y(lv), r: 2.5, class: 'dot' }));
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || v === undefined) flush();
    else run.push([i, v]);
  });
  flush();
  host.replaceChildren(svg);
}

/**
 * Draws `rows` (`[{name, value}]`, largest first) into `host` as
 * horizontal bars with the name and the value written beside each.
 */
export function barChart(host, rows, { label }) {
  const w = 320;
  const row = 22;
  const h = Math.max(1, rows.length) * row + 4;
  const nameW = 110;
  const top = niceCeil(Math.max(0, ...rows.map((r) => r.value)));
  const svg = el('svg', { viewBox: `0 0 ${w} ${h}`, role: 'img', 'aria-label': label, class: 'bar-chart' });
  rows.forEach((r, i) => {
    const y0 = 2 + i * row;
    const name = r.name.length > 16 ? `${r.name.slice(0, 15)}…` : r.name;
    svg.append(text(nameW - 6, y0 + 15, name, { 'text-anchor': 'end', class: 'axis name' }));
    const bw = Math.max(1, ((w - nameW - 48) * r.value) / top);
    svg.append(el('rect', { x: nameW, y: y0 + 3, width: bw.toFixed(1), height: row - 6, rx: 3, class: 'bar' }));
    svg.append(text(nameW + bw + 4, y0 + 15, short(r.value), { class: 'axis value' }));
  });
  host.replaceChildren(svg);
}
