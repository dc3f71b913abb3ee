/* Files in the chat. Receiving: pictures inline as the server's preview (a click opens the
 * original), audio and video with the browser's players, anything else a download card
 * with its name and size.
 * Sending: the Attach button, pasting or dropping files on the message box; each file is
 * uploaded with progress and a Cancel, then sent as a message of its own. File names are
 * what visitors chose: they go in as text only. */

import { $, h, toast } from './dom.js';
import { API, api, reason } from './api.js';
import { session, now, isMe } from './state.js';
import { openId, conv, appendMsg } from './conversation.js';
import { fileSize } from './format.js';

/** The files of a message, or null when it has none. */
export function attachmentsEl(list) {
  if (!Array.isArray(list) || !list.length) return null;
  return h('div', { class: 'msg-files' }, list.map(fileEl));
}

function fileEl(a) {
  const type = String(a.type || '');
  const url = String(a.url || '');
  if (type.startsWith('image/')) {
    // The server's preview when it made one (smaller, no metadata); a click opens the original.
    const shown = String(a.preview_url || url);
    return h('a', { class: 'file file-image', href: url, target: '_blank', rel: 'noopener' },
      h('img', { src: shown, alt: a.name, loading: 'lazy' }));
  }
  if (type.startsWith('audio/')) {
    return h('audio', { class: 'file file-audio', src: url, controls: true, preload: 'metadata', title: a.name });
  }
  if (type.startsWith('video/')) {
    return h('video', { class: 'file file-video', src: url, controls: true, preload: 'metadata', title: a.name });
  }
  return h('a', { class: 'file file-card', href: url, download: a.name || 'file' },
    h('span', { class: 'file-name' }, a.name || 'file'), ' ',
    h('span', { class: 'file-size' }, fileSize(a.size)));
}

let current = null; // the upload in progress: its XMLHttpRequest

/** Wires the Attach button, paste and drop on the message box. */
export function setupAttachments() {
  const input = $('attach-input');
  if (!input) return;
  $('attach').addEventListener('click', () => input.click());
  input.addEventListener('change', () => {
    sendFiles([...input.files]);
    input.value = '';
  });
  $('attach-cancel').addEventListener('click', () => {
    if (current) current.abort();
  });
  const box = $('composer-text');
  box.addEventListener('paste', (ev) => {
    const files = [...((ev.clipboardData && ev.clipboardData.files) || [])];
    if (files.length) {
      ev.preventDefault();
      sendFiles(files);
    }
  });
  box.addEventListener('dragover', (ev) => ev.preventDefault());
  box.addEventListener('drop', (ev) => {
    const files = [...((ev.dataTransfer && ev.dataTransfer.files) || [])];
    if (files.length) {
      ev.preventDefault();
      sendFiles(files);
    }
  });
}

/** Whether the agent may write to the visitor now. */
function canSend() {
  return !!conv && isMe(conv.assignee) && (conv.status === 'assigned' || conv.status === 'chatting');
}

async function sendFiles(files) {
  if (!files.length || !openId) return;
  if (!canSend()) {
    toast('Accept or take over the conversation to send files.');
    return;
  }
  const id = openId;
  for (const file of files) {
    try {
      const a = await upload(id, file);
      const r = await api('POST', '/conversations/' + encodeURIComponent(id) + '/messages', {
        client_id: 'console-file-' + a.id, attachments: [a.id],
      });
      if (openId === id && r && r.message_id) {
        appendMsg({
          id: r.message_id, seq: r.seq, kind: 'agent', agent: session.me.email, text: '',
          at: new Date(now()).toISOString(), attachments: [a],
        });
      }
    } catch (err) {
      if (err && err.code === 'aborted') toast('Upload cancelled.');
      else toast('The file was not sent: ' + (err && err.message ? reason(err) : 'upload failed'));
      return;
    }
  }
}

function showProgress(name, fraction) {
  const bar = $('upload-status');
  bar.hidden = fraction == null;
  $('attach-cancel').hidden = fraction == null;
  if (fraction != null) bar.textContent = name + ' ' + Math.round(fraction * 100) + ' %';
}

/** Uploads one file to the conversation; resolves with the attachment. */
function upload(convId, file) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    current = xhr;
    const path = API + '/conversations/' + encodeURIComponent(convId) + '/attachments?name='
      + encodeURIComponent(file.name || 'file');
    xhr.open('POST', path);
    if (session.csrf) xhr.setRequestHeader('X-CSRF-Token', session.csrf);
    xhr.upload.onprogress = (ev) => {
      if (ev.lengthComputable) showProgress(file.name, ev.loaded / ev.total);
    };
    const done = () => {
      current = null;
      showProgress('', null);
    };
    xhr.onload = () => {
      done();
      let data = null;
      try {
        data = JSON.parse(xhr.responseText);
      } catch (e) {
        data = null;
      }
      if (xhr.status === 201 && data) resolve(data);
      else {
        const e = (data && data.error) || {};
        reject(Object.assign(new Error(e.message || 'upload failed'), { code: e.code }));
      }
    };
    xhr.onerror = () => {
      done();
      reject(Object.assign(new Error('The server cannot be reached.'), { code: 'network' }));
    };
    xhr.onabort = () => {
      done();
      reject(Object.assign(new Error('cancelled'), { code: 'aborted' }));
    };
    showProgress(file.name, 0);
    xhr.send(file);
  });
}
