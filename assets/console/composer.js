/* The box to write in: a message to the visitor, or with Note on an internal note. Enter
 * sends, Shift+Enter breaks the line, `#` opens the canned responses. A failed send keeps
 * its client_id, so sending the same text again is stored once. */

import { $, h, clear, toast } from './dom.js';
import { api, reason } from './api.js';
import { session, now, isMe } from './state.js';
import { visitorName } from './format.js';
import { shortcutAt, matchResponses, fillResponse } from './canned.js';
import { openId, conv, appendMsg, loadOpen } from './conversation.js';
import { scheduleRefresh } from './lists.js';
import { sendTyping, writeFrame } from './stream.js';

const TYPING_EVERY = 2000; // ms between typing signals we send
const TYPING_SHOWN = 4000; // ms a "… is typing" stays without a new signal

let pending = null; // the last send: {text, conv, note, client_id}
let picker = null; // the open picker: {items, index, start, end}
let noteForced = false; // Note was switched on because only notes are possible
let lastTypingSent = 0;
let typingTimer = null;

/** Whether the agent may write to the visitor (not only notes). */
function canMessage() {
  return !!conv && isMe(conv.assignee) && (conv.status === 'assigned' || conv.status === 'chatting');
}

export function focusComposer() {
  $('composer-text').focus();
}

/** Empties the composer for another conversation. */
export function resetComposer() {
  $('composer-text').value = '';
  pending = null;
  closePicker();
  clearTyping();
}

export function renderComposer(d) {
  const note = $('note-mode');
  $('composer').hidden = d.status === 'closed';
  const can = canMessage();
  note.disabled = !can;
  if (!can) {
    note.checked = true;
    noteForced = true;
  } else if (noteForced) {
    note.checked = false;
    noteForced = false;
  }
  let hint = '';
  if (!can && d.status !== 'closed') {
    if (d.status === 'new') hint = 'Accept to write to the visitor. Notes stay internal.';
    else if (d.status === 'bot' || d.status === 'collecting') hint = 'Take over to write to the visitor.';
    else hint = 'Only internal notes here.';
  }
  $('composer-hint').textContent = hint;
  renderNoteMode();
}

export function renderNoteMode() {
  const on = $('note-mode').checked;
  $('composer').classList.toggle('note-on', on);
  $('composer-text').placeholder = on
    ? 'Internal note: only your team sees this'
    : 'Write to the visitor. Enter sends, Shift+Enter adds a line. # for canned responses';
  $('send').textContent = on ? 'Add note' : 'Send';
}

export async function onSend(ev) {
  if (ev) ev.preventDefault();
  const ta = $('composer-text');
  const text = ta.value;
  if (!text.trim() || !openId) return;
  const note = $('note-mode').checked || !canMessage();
  const id = openId;
  if (!pending || pending.text !== text || pending.conv !== id || pending.note !== note) {
    pending = { text, conv: id, note, client_id: randomId() };
  }
  const p = pending;
  $('send').disabled = true;
  try {
    const path = '/conversations/' + encodeURIComponent(id) + '/' + (note ? 'notes' : 'messages');
    const body = { client_id: p.client_id, text };
    // On the open socket when it can; by HTTP when not, or when the socket went before
    // its ack (the same client_id: stored once).
    let r;
    try {
      r = await (writeFrame({ type: note ? 'note' : 'message', conversation_id: id, ...body })
        || api('POST', path, body));
    } catch (err) {
      if (err.code !== 'network') throw err;
      r = await api('POST', path, body);
    }
    if (pending === p) pending = null;
    if (ta.value === text) {
      ta.value = '';
      grow();
    }
    if (openId === id && r && r.message_id) {
      appendMsg({
        id: r.message_id, seq: r.seq, kind: note ? 'note' : 'agent', agent: session.me.email,
        text: text.trim(), at: new Date(now()).toISOString(),
      });
    }
    scheduleRefresh();
  } catch (err) {
    if (err.status !== 401) {
      toast((note ? 'The note was not saved: ' : 'The message was not sent: ') + reason(err));
      if (openId === id) loadOpen(id, false);
    }
  }
  $('send').disabled = false;
  ta.focus();
}

function randomId() {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return 'console-' + [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

function grow() {
  const ta = $('composer-text');
  ta.style.height = 'auto';
  ta.style.height = Math.min(ta.scrollHeight + 2, 200) + 'px';
}

export function onComposerInput() {
  grow();
  updatePicker();
  // Typing signals only for what the visitor will see, at most one per 2 s.
  if ($('note-mode').checked || !canMessage() || !$('composer-text').value.trim()) return;
  if (Date.now() - lastTypingSent < TYPING_EVERY) return;
  if (sendTyping(openId)) lastTypingSent = Date.now();
}

export function onComposerKey(ev) {
  if (picker && picker.items.length) {
    const n = picker.items.length;
    if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      picker.index = (picker.index + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      renderPicker();
      return;
    }
    if (ev.key === 'Enter' || ev.key === 'Tab') {
      ev.preventDefault();
      choose(picker.index);
      return;
    }
    if (ev.key === 'Escape') {
      ev.preventDefault();
      closePicker();
      return;
    }
  }
  const plain = !ev.shiftKey && !ev.isComposing && !ev.altKey && !ev.ctrlKey && !ev.metaKey;
  if (ev.key === 'Enter' && plain) {
    ev.preventDefault();
    onSend();
  }
}

/** A `typing` event: who is typing in the open conversation (not our own echo). */
export function onTyping(f) {
  if (f.conversation_id !== openId) return;
  const data = f.data || {};
  if (data.from === 'agent' && data.name === session.me.name) return;
  const who = data.from === 'visitor' ? visitorName(conv) : data.name || 'An agent';
  $('typing').textContent = who + ' is typing…';
  clearTimeout(typingTimer);
  typingTimer = setTimeout(clearTyping, TYPING_SHOWN);
}

export function clearTyping() {
  clearTimeout(typingTimer);
  $('typing').textContent = '';
}

// ---- The `#` picker of canned responses ----

function updatePicker() {
  const ta = $('composer-text');
  if (!session.responses || !session.responses.length || !conv) {
    closePicker();
    return;
  }
  const at = shortcutAt(ta.value.slice(0, ta.selectionStart));
  if (!at) {
    closePicker();
    return;
  }
  const items = matchResponses(session.responses, at.word, conv.bot);
  picker = { items, index: 0, start: at.start, end: ta.selectionStart };
  renderPicker();
}

function renderPicker() {
  const ul = $('picker');
  const ta = $('composer-text');
  clear(ul);
  if (!picker || !picker.items.length) {
    ul.hidden = true;
    ta.setAttribute('aria-expanded', 'false');
    ta.removeAttribute('aria-activedescendant');
    return;
  }
  picker.items.forEach((r, i) => {
    ul.appendChild(h('li', {
      id: 'pick-' + i, role: 'option', class: 'pick', 'aria-selected': String(i === picker.index),
      onmousedown: (e) => {
        e.preventDefault();
        choose(i);
      },
    },
    h('span', { class: 'pick-key' }, '#' + r.shortcut),
    h('span', { class: 'pick-text' }, fillResponse(r.text, session.me, conv))));
  });
  ul.hidden = false;
  ta.setAttribute('aria-expanded', 'true');
  ta.setAttribute('aria-activedescendant', 'pick-' + picker.index);
}

export function closePicker() {
  picker = null;
  renderPicker();
}

function choose(i) {
  const ta = $('composer-text');
  if (!picker || !picker.items[i]) return;
  const text = fillResponse(picker.items[i].text, session.me, conv);
  ta.value = ta.value.slice(0, picker.start) + text + ta.value.slice(picker.end);
  const caret = picker.start + text.length;
  ta.setSelectionRange(caret, caret);
  closePicker();
  grow();
  ta.focus();
}
