/* Visitors online: who is on the site now (on the bots I serve), from `GET /visitors` and
 * the stream's `visitor.active` / `visitor.left` frames, with an Invite button that opens
 * the visitor's widget with my words. An optional notice of a new visitor (off unless the
 * agent turns it on, remembered in this browser like the notification switches). Page
 * addresses, titles and referrers are the visitor's: they go in as text only. */

import { $, h, add, clear, button, toast } from './dom.js';
import { api, reason } from './api.js';
import { session, store, load } from './state.js';
import { duration, ms, visitorName } from './format.js';

const REFRESH_MS = 30000;
const DEFAULT_INVITE = 'Hello! Can I help you with anything?';
const REFUSED = {
  visitor_chatting: 'This visitor has a conversation already.',
  visitor_unreachable: 'This visitor\'s chat widget is not connected now.',
  agent_offline: 'Your console is not connected: invite again once it is live.',
  not_found: 'This visitor has left.',
};

const online = new Map(); // visitor id → the server's view of them
let timer = null;
let inviting = null; // the visitor whose invite form is open

function noticeKey() {
  return 'livechat.notify-visitors:' + (session.me ? session.me.email : '');
}

function noticeOn() {
  return load(noticeKey(), 'local') === '1';
}

/** The "New visitors" switch of the notifications panel. */
export function onVisitorNoticeSwitch() {
  store(noticeKey(), $('alerts-visitor').checked ? '1' : null, 'local');
}

/** Starts the panel for the signed-in agent: the list now, again every 30 s. */
export function startVisitors() {
  $('alerts-visitor').checked = noticeOn();
  loadVisitors();
  clearInterval(timer);
  timer = setInterval(loadVisitors, REFRESH_MS);
}

export function resetVisitors() {
  clearInterval(timer);
  timer = null;
  online.clear();
  inviting = null;
  render();
}

export async function loadVisitors() {
  if (session.stopped) return;
  let r;
  try {
    r = await api('GET', '/visitors');
  } catch (e) {
    return; // the next round tries again
  }
  online.clear();
  for (const v of (r && r.visitors) || []) online.set(v.visitor_id, v);
  render();
}

/** A `visitor.active` or `visitor.left` frame. `live`: not a replay from before. */
export function onVisitorFrame(f, live) {
  const v = f.data || {};
  if (!v.visitor_id) return;
  if (f.type === 'visitor.left') {
    online.delete(v.visitor_id);
  } else {
    const fresh = !online.has(v.visitor_id);
    online.set(v.visitor_id, v);
    if (fresh && live) noticeNew(v);
  }
  render();
}

function noticeNew(v) {
  if (!noticeOn()) return;
  const text = 'New visitor on ' + (v.title || v.url || 'the site');
  if (document.visibilityState !== 'hidden') {
    toast(text);
    return;
  }
  const N = typeof window.Notification === 'function' ? window.Notification : null;
  if (!N || N.permission !== 'granted') return;
  try {
    const n = new N(visitorName({ visitor: { id: v.visitor_id } }), { body: text, tag: 'visitor:' + v.visitor_id, icon: '/favicon.svg' });
    n.onclick = () => {
      window.focus();
      n.close();
    };
  } catch (e) {
    // some browsers allow them only from a service worker
  }
}

function host(u) {
  try {
    return new URL(u).host;
  } catch (e) {
    return '';
  }
}

function facts(v) {
  const parts = [v.pages === 1 ? '1 page' : v.pages + ' pages'];
  const since = ms(v.first_seen_at);
  if (since) parts.push('on site ' + duration(Date.now() + (session.skew || 0) - since));
  if (v.language) parts.push(v.language);
  if (v.country) parts.push(v.country);
  if (v.referrer && host(v.referrer)) parts.push('from ' + host(v.referrer));
  return parts.join(' · ');
}

function row(v) {
  const li = h('li', { class: 'visitor-row', 'data-visitor': v.visitor_id });
  const name = h('span', { class: 'visitor-name' }, visitorName({ visitor: { id: v.visitor_id } }));
  const head = h('div', { class: 'visitor-head' }, name);
  if (v.chatting) add(head, [' ', h('span', { class: 'chip visitor-chatting' }, 'chatting')]);
  else if (v.invited_by) add(head, [' ', h('span', { class: 'chip visitor-invited' }, 'invited')]);
  add(li, head);
  add(li, h('div', { class: 'visitor-page', title: v.url || '' }, v.title || v.url || ''));
  add(li, h('div', { class: 'visitor-facts' }, facts(v)));
  if (!v.chatting) {
    add(li, button('Invite', 'quiet visitor-invite', () => {
      inviting = inviting === v.visitor_id ? null : v.visitor_id;
      render();
      const input = document.querySelector('.invite-form input');
      if (input) input.focus();
    }));
  }
  if (inviting === v.visitor_id && !v.chatting) add(li, inviteForm(v));
  return li;
}

function inviteForm(v) {
  const input = h('input', { type: 'text', maxlength: '1000', 'aria-label': 'Invitation' });
  input.value = DEFAULT_INVITE;
  const form = h('form', { class: 'invite-form' }, input, h('button', { type: 'submit', class: 'btn primary' }, 'Send'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    try {
      await api('POST', '/visitors/' + encodeURIComponent(v.visitor_id) + '/invite', { text });
      inviting = null;
      toast('Invitation sent. Their reply comes to you.');
      loadVisitors();
    } catch (e) {
      toast(REFUSED[e.code] || reason(e));
    }
  });
  return form;
}

function render() {
  const sec = $('sec-visitors');
  if (!sec) return;
  const list = sec.querySelector('.rows');
  // An open invite form keeps what the agent typed: the list redraws around it.
  const typing = inviting && list.querySelector('.invite-form input');
  const typed = typing ? typing.value : null;
  const focused = typing && document.activeElement === typing;
  clear(list);
  const shown = [...online.values()].sort((a, b) => (ms(b.last_seen_at) || 0) - (ms(a.last_seen_at) || 0));
  for (const v of shown) list.appendChild(row(v));
  if (typed !== null) {
    const input = list.querySelector('.invite-form input');
    if (input) input.value = typed;
    if (input && focused) input.focus();
  }
  sec.querySelector('.count').textContent = shown.length ? '(' + shown.length + ')' : '';
  sec.querySelector('.empty').hidden = shown.length > 0;
}
