/* The lists on the left: New, Awaiting, Mine, Others, With the bot, Resolved, seen
 * through a view (All, Unread, Done). They are loaded again (debounced) whenever an event
 * says something changed, and rows that did not change stay the same elements, so a click
 * or the focus is never lost. The ringing of waiting requests (sound, title, a browser
 * notification for each new one) is decided here too. */

import { $, h, clear, toast, announce } from './dom.js';
import { api, reason } from './api.js';
import { session, now, isAdmin, nameOf, store, load } from './state.js';
import { ago, duration, visitorName } from './format.js';
import {
  SECTIONS, TITLE, groupBySection, listQueries, mergeLists, newRinging, rowKey, rowMeta,
  since, titleFor, ringsFor,
} from './sections.js';
import { lastSeq, setLastSeq, streaming } from './stream.js';
import { beep, lastBeepAt } from './sound.js';
import { openId, conv, openConv, refreshOpen } from './conversation.js';
import { VIEWS, badgeCount, inView, parseView } from './alerts.js';
import { notify, setBadge } from './notifications.js';

const RING_EVERY = 4000; // ms between rings while a request waits for me

/** The listed conversations by id, as the last refresh found them. */
export let convs = new Map();

let query = ''; // the search, if any
let waiting = null; // while searching: every waiting request (they ring all the same)
let ringing = new Set(); // the requests that ring for me
let view = parseView(load('livechat.view', 'local')); // all, unread or done
let flash = false;
let timer = null;
let running = false;
let again = false;
let lastRefresh = 0;

/** Refreshes the lists soon (`delay` ms), and at most every 400 ms in a burst of events. */
export function scheduleRefresh(delay) {
  if (session.stopped || timer) return;
  const wait = Math.max(delay == null ? 120 : delay, 400 - (Date.now() - lastRefresh));
  timer = setTimeout(() => {
    timer = null;
    refresh();
  }, wait);
}

/** Shows only the conversations whose messages or notes match `q` (empty: all). */
export function search(q) {
  query = q;
  return refresh();
}

export async function refresh() {
  if (session.stopped) return;
  if (running) {
    again = true;
    return;
  }
  running = true;
  lastRefresh = Date.now();
  try {
    const urls = listQueries(query, isAdmin());
    const answers = await Promise.all(urls.map((u) => api('GET', u)));
    if (session.stopped) return;
    const merged = mergeLists(answers, !!query, lastSeq, streaming());
    setLastSeq(merged.lastSeq);
    convs = merged.convs;
    waiting = merged.waiting;
    renderLists();
  } catch (err) {
    if (err.status !== 401) toast('Could not load the conversations: ' + reason(err));
  } finally {
    running = false;
    if (again) {
      again = false;
      scheduleRefresh();
    }
  }
}

/** Shows the lists through `name` (all, unread, done), remembered in this browser. */
export function setView(name) {
  view = parseView(name);
  store('livechat.view', view, 'local');
  if (session.me) renderLists();
  else renderTabs(null);
}

function renderTabs(all) {
  for (const name of VIEWS) {
    const tab = $('view-' + name);
    if (tab) tab.setAttribute('aria-selected', String(name === view));
  }
  let n = 0;
  if (all) {
    for (const name of SECTIONS) n += all[name].filter((c) => inView(c, name, 'unread')).length;
  }
  $('view-unread-count').textContent = n ? String(n) : '';
}

function renderLists() {
  const me = session.me.email;
  const all = groupBySection(convs.values(), me, isAdmin() ? null : session.me.teams);
  const groups = {};
  for (const name of SECTIONS) groups[name] = all[name].filter((c) => inView(c, name, view));
  renderTabs(all);
  const focused = document.activeElement && document.activeElement.getAttribute('data-id');
  for (const name of SECTIONS) {
    const sec = $('sec-' + name);
    const ul = sec.querySelector('.rows');
    const old = new Map();
    for (const li of ul.children) old.set(li.getAttribute('data-key'), li);
    groups[name].forEach((c, i) => {
      const key = rowKey(c, name, me);
      const li = old.get(key) || row(c, name, key);
      old.delete(key);
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
    });
    for (const li of old.values()) li.remove();
    const n = groups[name].length;
    sec.querySelector('.count').textContent = n ? '(' + n + ')' : '';
    const empty = sec.querySelector('.empty');
    if (empty) empty.hidden = n > 0;
  }
  markRows();
  $('sec-awaiting').hidden = groups.awaiting.length === 0;
  $('sec-others').hidden = !isAdmin() && groups.others.length === 0;
  // Unread and Done show only the sections they are about.
  $('sec-new').hidden = view === 'done';
  $('sec-mine').hidden = view === 'done';
  $('sec-bot').hidden = view !== 'all';
  $('sec-resolved').hidden = view === 'unread';
  if (view !== 'all') $('sec-others').hidden = groups.others.length === 0;
  if (focused) {
    const back = document.querySelector('.row[data-id="' + CSS.escape(focused) + '"]');
    if (back) back.focus();
  }
  // A request that newly rings for me rings at once.
  const rings = newRinging(waiting || all.new, me, ringing);
  const before = ringing;
  ringing = rings.ids;
  if (rings.fresh) {
    announce('New request from ' + visitorName(rings.fresh) + ' (' + rings.fresh.bot + ').');
    beep();
  }
  for (const c of waiting || all.new) {
    if (ringing.has(c.id) && !before.has(c.id)) notify('request', c);
  }
  const pool = new Map(convs);
  for (const c of waiting || []) pool.set(c.id, c);
  setBadge(badgeCount(pool.values(), me));
  updateTimers();
  if (!ringing.size) document.title = TITLE;
  // The open conversation's row may have changed (taken, resolved…).
  if (openId && conv && convs.has(openId)) {
    const listed = convs.get(openId);
    if (listed.status !== conv.status || listed.assignee !== conv.assignee) refreshOpen();
  }
}

function row(c, section, key) {
  const [from, mode] = since(c);
  const ring = ringsFor(c, session.me.email);
  return h('li', { 'data-key': key },
    h('button', {
      type: 'button', class: 'row' + (ring ? ' ringing' : ''), 'data-id': c.id,
      onclick: () => openConv(c.id),
    },
    h('span', { class: 'row-top' },
      h('span', { class: 'row-name' }, visitorName(c)),
      (c.video || c.in_call) && h('span', { class: 'chip video' }, c.in_call ? 'On a call' : 'Video'),
      c.unread > 0 ? h('span', { class: 'row-unread', title: 'Unread messages' }, String(c.unread)) : null,
      h('span', {
        class: 'row-timer', 'data-since': from || '', 'data-mode': mode,
        title: mode === 'wait' ? 'Waiting time' : null,
      })),
    h('span', { class: 'row-meta' }, rowMeta(c, section, nameOf)),
    h('span', { class: 'row-last' }, c.last_message || '')));
}

/** The parts of the rows that change without a refresh: selected, unread. */
export function markRows() {
  for (const b of document.querySelectorAll('.row')) {
    const id = b.getAttribute('data-id');
    if (id === openId) b.setAttribute('aria-current', 'true');
    else b.removeAttribute('aria-current');
    const c = convs.get(id);
    b.classList.toggle('unread', !!c && c.unread > 0 && id !== openId);
  }
}

/** The caller's unread count of `id` as the server last said (after a read mark). */
export function setUnread(id, n) {
  const c = convs.get(id);
  if (!c || c.unread === n) return;
  c.unread = n;
  if (session.me) renderLists();
}

function updateTimers() {
  const t = now();
  for (const el of document.querySelectorAll('.row-timer')) {
    const from = Number(el.getAttribute('data-since'));
    if (!from) el.textContent = '';
    else el.textContent = el.getAttribute('data-mode') === 'ago' ? ago(t - from) : duration(t - from);
  }
}

/** Once a second: the counters, the flashing title, the ring. */
export function tick() {
  updateTimers();
  flash = !flash && ringing.size > 0;
  const title = titleFor(ringing.size, flash);
  if (document.title !== title) document.title = title;
  if (ringing.size && Date.now() - lastBeepAt() >= RING_EVERY) beep();
}

/** Empties the lists (sign-out). */
export function resetLists() {
  clearTimeout(timer);
  timer = null;
  for (const ul of document.querySelectorAll('.lists .rows')) clear(ul);
  convs = new Map();
  query = '';
  waiting = null;
  ringing = new Set();
  setBadge(0);
  running = false;
  again = false;
}
