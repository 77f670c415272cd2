// Attachments: uploading (picker, drop, paste) and showing them in messages.

import { api, enc, errText, fileUrl } from './api.js';
import { clearComposer } from './composer.js';
import { sendDm } from './dm.js';
import { keepFollowing } from './message-list.js';
import { queueRoomMessage } from './outbox.js';
import { currentRoom, state } from './state.js';
import { stopTyping } from './typing.js';
import { $, h } from './ui/dom.js';
import { icon } from './ui/icons.js';
import { toast } from './ui/toasts.js';

function onFileChosen() {
  const input = $('#file-input');
  const files = Array.from(input.files || []);
  input.value = '';
  uploadFiles(files);
}

/** Uploads files (picker, drop or paste) and sends one message that carries them. */
async function uploadFiles(files) {
  if (!files.length) return;
  if (!state.view) return;
  // A DM's files are readable by its two parties only.
  const dm = state.view.kind === 'dm' ? state.dm : null;
  const r = currentRoom();
  const scope = dm ? `&dm=${enc(dm.peer)}` : '';
  const ids = [];
  for (const file of files) {
    const note = toast(`Uploading ${file.name}…`, { timeout: 0 });
    const res = await api('POST', `/files?name=${enc(file.name)}${scope}`, file, { raw: true, contentType: file.type || 'application/octet-stream' });
    note.remove();
    if (!res.ok || !res.data || !res.data.id) {
      toast(res.status === 413 ? `${file.name} is too large for this hub.` : `Upload failed: ${errText(res)}`, { kind: 'error' });
      continue;
    }
    const id = String(res.data.id);
    state.fileMeta.set(id, {
      type: String(res.data.content_type || file.type || 'application/octet-stream'),
      name: String(res.data.name || file.name),
      size: Number(res.data.size ?? file.size),
    });
    ids.push(id);
  }
  if (!ids.length) return;
  const text = $('#composer').value.trim() || files.map((f) => f.name).join(', ');
  if (dm) {
    if (state.dm !== dm) return;
    clearComposer();
    sendDm(text, ids);
    return;
  }
  if (!r || currentRoom() !== r) return;
  clearComposer();
  stopTyping();
  queueRoomMessage(r, text, { attachments: ids });
}

/** "12.3 KB": a size as people read it. */
export function fmtSize(bytes) {
  const n = Number(bytes);
  if (!Number.isFinite(n) || n < 0) return '';
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** "PDF", "PNG image", "text": a content type as people read it. */
export function fmtType(type) {
  const t = String(type || '').split(';')[0].trim().toLowerCase();
  if (!t || t === 'application/octet-stream') return 'file';
  const [major, minor = ''] = t.split('/');
  const sub = minor.replace(/^(x-|vnd\.)/, '').split(/[.+]/)[0].toUpperCase();
  if (major === 'image') return `${sub} image`;
  if (major === 'text') return minor === 'plain' ? 'text' : `${sub} text`;
  if (major === 'audio' || major === 'video') return `${sub} ${major}`;
  return sub || major;
}

// What the hub says about files we did not upload: one request per file id.
const asked = new Map();

function describe(id) {
  if (!asked.has(id)) {
    asked.set(id, api('GET', `/files/${enc(id)}/meta`, undefined, { no401: true }).then((res) => {
      if (res.ok && res.data && typeof res.data === 'object') {
        const meta = {
          type: String(res.data.content_type || 'application/octet-stream'),
          name: res.data.name ? String(res.data.name) : '',
          size: Number(res.data.size),
        };
        state.fileMeta.set(id, meta);
        return meta;
      }
      asked.delete(id);
      return null;
    }));
  }
  return asked.get(id);
}

const INLINE = /^image\/(png|jpeg|gif|webp|avif|bmp)$/i;

function renderAttachment(id, meta) {
  const name = meta.name || `file ${id.slice(0, 8)}`;
  const src = fileUrl(id);
  const details = [fmtType(meta.type), fmtSize(meta.size)].filter(Boolean).join(' · ');
  if (INLINE.test(String(meta.type || '').split(';')[0].trim())) {
    const img = h('img', { class: 'attachment-image', src, alt: name, loading: 'lazy' });
    img.addEventListener('load', keepFollowing);
    return h('figure', { class: 'attachment attachment-img', dataset: { file: id } },
      h('a', { href: src, target: '_blank', rel: 'noopener', 'aria-label': `Open ${name}` }, img),
      h('figcaption', { class: 'file-caption' },
        h('a', { class: 'file-name', href: src, download: name, text: name }),
        h('span', { class: 'file-details', text: details })));
  }
  return h('a', {
    class: 'attachment attachment-file', href: src, download: name,
    dataset: { file: id }, 'aria-label': `Download ${name} (${details})`,
  }, h('span', { class: 'file-icon' }, icon('file', 22)),
  h('span', { class: 'file-text' },
    h('span', { class: 'file-name', text: name }),
    h('span', { class: 'file-details', text: details })),
  h('span', { class: 'file-dl', text: 'Download', 'aria-hidden': 'true' }));
}

export function renderAttachments(list) {
  const wrap = h('div', { class: 'attachments' });
  for (const a of list) {
    const id = typeof a === 'object' && a !== null ? String(a.id || '') : String(a);
    if (!id) continue;
    const known = state.fileMeta.get(id);
    if (known) {
      wrap.append(renderAttachment(id, known));
      continue;
    }
    // Not ours: a placeholder until the hub tells us its name, size and type.
    const slot = h('span', { class: 'attachment attachment-loading', dataset: { file: id }, text: 'Loading attachment…' });
    wrap.append(slot);
    describe(id).then((meta) => {
      if (slot.isConnected || slot.parentNode) {
        slot.replaceWith(renderAttachment(id, meta || { type: '', name: '', size: NaN }));
      }
    });
  }
  return wrap;
}

/** The file picker, drops on the conversation and pastes into the composer. */
export function wireFiles() {
  $('#file-input').addEventListener('change', onFileChosen);
  $('#attach').addEventListener('click', () => $('#file-input').click());
  // Files dropped on the conversation or pasted into the composer go the same way.
  const main = $('.main');
  main.addEventListener('dragover', (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes('Files')) return;
    if (!state.view) return;
    e.preventDefault();
    main.classList.add('dropping');
  });
  main.addEventListener('dragleave', (e) => {
    if (!main.contains(e.relatedTarget)) main.classList.remove('dropping');
  });
  main.addEventListener('drop', (e) => {
    main.classList.remove('dropping');
    const files = Array.from((e.dataTransfer && e.dataTransfer.files) || []);
    if (!files.length) return;
    e.preventDefault();
    uploadFiles(files);
  });
  $('#composer').addEventListener('paste', (e) => {
    const files = Array.from((e.clipboardData && e.clipboardData.files) || []);
    if (!files.length || !state.view) return;
    e.preventDefault();
    uploadFiles(files);
  });
}
