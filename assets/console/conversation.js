/* The open conversation: loading it, its messages and notes in order, its status and
 * notice, and the live events that concern it. The buttons are actions.js's, the visitor
 * panel details.js's, the box to write in composer.js's. */

import { $, h, clear, announce } from './dom.js';
import { api, reason, REASONS } from './api.js';
import { session, now, isMe, nameOf } from './state.js';
import { clock, statusLabel, visitorName } from './format.js';
import { markRows } from './lists.js';
import { markOpenRead } from './reads.js';
import { hashOf } from './alerts.js';
import { renderActions, resetActions, hideForms } from './actions.js';
import { renderDetails } from './details.js';
import { renderComposer, resetComposer, clearTyping } from './composer.js';
import { leaveReports } from './reports.js';
import { attachmentsEl } from './attachments.js';

/** The id of the open conversation, and its details once loaded (else null). */
export let openId = null;
export let conv = null;

/** Why the last action did not work, or that someone else took the request. */
export let notice = '';

let shownIds = new Set(); // the messages and notes in the page
let shownKey = ''; // what the message list was last built from
let reloadTimer = null;

export function closeConv() {
  openId = null;
  conv = null;
  shownIds = new Set();
  notice = '';
  shownKey = '';
  resetActions();
  $('conv-pane').hidden = true;
  $('conv-empty').hidden = false;
  $('details').hidden = true;
  document.body.classList.remove('has-open');
  markRows();
}

export function openConv(id) {
  leaveReports();
  if (openId !== id) {
    // Nothing of the previous conversation stays clickable while this one loads.
    conv = null;
    shownKey = '';
    shownIds = new Set();
    notice = '';
    resetActions();
    clear($('messages'));
    $('conv-title').textContent = 'Loading…';
    $('conv-status').textContent = '';
    $('details').hidden = true;
    $('composer').hidden = true;
    hideForms();
    resetComposer();
  }
  openId = id;
  markRows();
  // The address says which conversation is open: a reload (or a copied link) opens it.
  if (location.hash !== hashOf(id)) history.replaceState(null, '', hashOf(id));
  document.body.classList.add('has-open');
  $('conv-empty').hidden = true;
  $('conv-pane').hidden = false;
  return loadOpen(id, true);
}

/** Loads the open conversation `id` again and shows it (`scrollDown`: to its end). */
export async function loadOpen(id, scrollDown) {
  let d;
  try {
    d = await api('GET', '/conversations/' + encodeURIComponent(id));
  } catch (err) {
    if (openId === id && err.status !== 401) setNotice(reason(err));
    return;
  }
  if (openId !== id || session.stopped) return;
  const was = conv && conv.id === id ? conv : null;
  conv = d;
  if (d.status === 'new' || isMe(d.assignee)) {
    if (notice === REASONS.already_taken) notice = '';
  } else if (was && was.status === 'new' && d.assignee) {
    notice = REASONS.already_taken;
  }
  renderConv(scrollDown);
  markOpenRead();
}

/** Loads the open conversation again soon (events come in bursts). */
export function refreshOpen() {
  if (!openId || reloadTimer) return;
  const id = openId;
  reloadTimer = setTimeout(() => {
    reloadTimer = null;
    loadOpen(id, false);
  }, 100);
}

/** An event of the open conversation. */
export function applyToOpen(f) {
  if (!conv) {
    refreshOpen(); // still loading: load again after
    return;
  }
  const data = f.data || {};
  if (f.type === 'message.created' || f.type === 'note.created') {
    appendMsg({
      id: data.message_id, seq: f.seq, at: f.at, text: data.text,
      kind: f.type === 'note.created' ? 'note' : data.author, agent: data.agent || null,
      attachments: data.attachments,
    });
    if (data.author === 'visitor') clearTyping();
    markOpenRead();
    return;
  }
  const taken = f.type === 'livechat.accepted' || f.type === 'conversation.assigned';
  if (taken && data.agent && !isMe(data.agent) && conv.status === 'new') {
    setNotice(REASONS.already_taken);
    announce('Taken by someone else.');
  }
  refreshOpen();
}

export function setNotice(text) {
  notice = text;
  const n = $('conv-notice');
  n.textContent = notice;
  n.hidden = !notice;
}

function renderConv(scrollDown) {
  // Whether to end at the newest message is decided before anything moves: the actions,
  // the notice, the details and the composer change the list's height after it is drawn.
  const ol = $('messages');
  const stick = scrollDown || nearBottom(ol);
  $('conv-title').textContent = visitorName(conv);
  const chip = $('conv-status');
  chip.textContent = statusLabel(conv.status);
  chip.className = 'chip status-' + conv.status;
  renderActions(conv);
  setNotice(notice);
  renderMessages(scrollDown);
  renderDetails(conv);
  renderComposer(conv);
  if (stick) toBottom(ol);
}

/** Shows the newest messages, now and once the browser has laid the pane out again. */
function toBottom(ol) {
  ol.scrollTop = ol.scrollHeight;
  requestAnimationFrame(() => { ol.scrollTop = ol.scrollHeight; });
}

function nearBottom(ol) {
  return ol.scrollHeight - ol.scrollTop - ol.clientHeight < 80;
}

function renderMessages(scrollDown) {
  const ol = $('messages');
  const stick = scrollDown || nearBottom(ol);
  const all = (conv.messages || []).concat(conv.notes || []);
  all.sort((a, b) => a.seq - b.seq);
  const closing = conv.status === 'resolved' ? conv.resolve_note : '';
  const key = [conv.id, visitorName(conv), closing, all.map((m) => m.id).join(',')].join('|');
  if (key === shownKey && !scrollDown) return;
  shownKey = key;
  clear(ol);
  shownIds = new Set();
  for (const m of all) {
    shownIds.add(m.id);
    ol.appendChild(messageEl(m));
  }
  if (closing) {
    ol.appendChild(h('li', { class: 'msg msg-note msg-closing' },
      h('div', { class: 'msg-meta' }, 'Internal note · closing note'),
      h('div', { class: 'msg-text' }, closing)));
  }
  if (stick) toBottom(ol);
}

/** Adds one message or note (from an event, or our own once sent), in seq order. */
export function appendMsg(m) {
  if (!m.id || shownIds.has(m.id)) return;
  shownIds.add(m.id);
  const ol = $('messages');
  const stick = nearBottom(ol);
  // In seq order: our own message's answer may come after a later event.
  let next = ol.querySelector('.msg-closing');
  if (typeof m.seq === 'number') {
    const later = [...ol.children].find((li) => Number(li.getAttribute('data-seq')) > m.seq);
    if (later) next = later;
  }
  ol.insertBefore(messageEl(m), next || null);
  if (conv) {
    if (m.kind === 'note') (conv.notes = conv.notes || []).push(m);
    else (conv.messages = conv.messages || []).push(m);
  }
  shownKey = '';
  if (stick || isMe(m.agent)) toBottom(ol);
}

function author(m) {
  switch (m.kind) {
    case 'visitor': return visitorName(conv);
    case 'bot': return 'Bot';
    case 'system': return 'System';
    case 'note': return 'Internal note · ' + nameOf(m.agent);
    default: return nameOf(m.agent) || 'Agent';
  }
}

function messageEl(m) {
  const mine = m.agent && isMe(m.agent);
  return h('li', {
    class: 'msg msg-' + m.kind + (mine ? ' msg-mine' : ''), 'data-id': m.id, 'data-seq': m.seq,
  },
  h('div', { class: 'msg-meta' }, h('span', { class: 'msg-who' }, author(m)), ' ',
    h('time', { datetime: m.at }, clock(m.at, now()))),
  m.text ? h('div', { class: 'msg-text' }, m.text) : null,
  attachmentsEl(m.attachments));
}
