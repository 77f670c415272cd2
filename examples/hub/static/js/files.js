// Attachments: uploading (picker, drop, paste) and showing them in messages.

import { api, errText, fileUrl } from './api.js';
import { autoGrow } from './composer.js';
import { mainBox, nearBottom } from './message-list.js';
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
  if (!state.view || state.view.kind !== 'room') {
    toast('Attachments can be sent in rooms only.', { kind: 'error' });
    return;
  }
  const r = currentRoom();
  const ids = [];
  for (const file of files) {
    const note = toast(`Uploading ${file.name}…`, { timeout: 0 });
    const res = await api('POST', '/files', file, { raw: true, contentType: file.type || 'application/octet-stream' });
    note.remove();
    if (!res.ok || !res.data || !res.data.id) {
      toast(res.status === 413 ? `${file.name} is too large for this hub.` : `Upload failed: ${errText(res)}`, { kind: 'error' });
      continue;
    }
    const id = String(res.data.id);
    state.fileMeta.set(id, { type: file.type || 'application/octet-stream', name: file.name });
    ids.push(id);
  }
  if (!ids.length || currentRoom() !== r) return;
  const composer = $('#composer');
  const text = composer.value.trim() || files.map((f) => f.name).join(', ');
  composer.value = '';
  autoGrow(composer);
  stopTyping();
  queueRoomMessage(r, text, { attachments: ids });
}

export function renderAttachments(list) {
  const wrap = h('div', { class: 'attachments' });
  for (const a of list) {
    const id = typeof a === 'object' && a !== null ? String(a.id || '') : String(a);
    if (!id) continue;
    const meta = state.fileMeta.get(id) || {};
    const type = meta.type || (typeof a === 'object' && a !== null ? (a.content_type || a.mime || a.type || '') : '');
    const name = meta.name || (typeof a === 'object' && a !== null ? (a.name || a.filename || '') : '') || `file ${id.slice(0, 8)}`;
    const src = fileUrl(id);
    const fileLink = () => h('a', {
      class: 'attachment attachment-file', href: src, download: name, target: '_blank', rel: 'noopener',
      dataset: { file: id },
    }, h('span', { class: 'file-icon' }, icon('file', 22)),
    h('span', { class: 'file-name', text: name }),
    h('span', { class: 'file-dl', text: 'Download' }));
    if (!type || type.startsWith('image/')) {
      const link = h('a', { class: 'attachment attachment-img', href: src, target: '_blank', rel: 'noopener', dataset: { file: id } });
      const img = h('img', { class: 'attachment-image', src, alt: name, loading: 'lazy' });
      img.addEventListener('load', () => {
        const box = mainBox();
        if (nearBottom(box)) box.scrollTop = box.scrollHeight;
      });
      img.addEventListener('error', () => {
        if (!type) link.replaceWith(fileLink());
        else link.classList.add('broken');
      });
      link.append(img);
      wrap.append(link);
    } else {
      wrap.append(fileLink());
    }
  }
  return wrap;
}

/** The file picker, drops on the conversation and pastes into the composer. */
export function wireFiles() {
  $('#file-input').addEventListener('change', onFileChosen);
  // Files dropped on the conversation or pasted into the composer go the same way.
  const main = $('.main');
  main.addEventListener('dragover', (e) => {
    if (!e.dataTransfer || !Array.from(e.dataTransfer.types || []).includes('Files')) return;
    if (!state.view || state.view.kind !== 'room') return;
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
    if (!files.length || !state.view || state.view.kind !== 'room') return;
    e.preventDefault();
    uploadFiles(files);
  });
}
