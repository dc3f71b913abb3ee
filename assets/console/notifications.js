/* Browser notifications and the favicon badge. The agent turns notifications on from the
 * console's own panel (its explanation first, then the browser's question, from that
 * click); each kind can be switched off and is remembered in this browser, per agent.
 * They are shown only while the tab is hidden: a visible console rings and flashes.
 * A click on one focuses the tab and opens the conversation. `Notification` is looked up
 * at each use, not at import: the browser tests watch it from outside. */

import { $ } from './dom.js';
import { session, store, load } from './state.js';
import { KINDS, badgeText, kindOf, notificationText, parsePrefs } from './alerts.js';
import { openConv } from './conversation.js';

const SAME_WITHIN_MS = 3000; // one notification for a transfer's two events
let shown = new Map(); // tag → when last shown

function prefsKey() {
  return 'livechat.notify:' + (session.me ? session.me.email : '');
}

function prefs() {
  return parsePrefs(load(prefsKey(), 'local'));
}

function api() {
  return typeof window.Notification === 'function' ? window.Notification : null;
}

/** Shows a notification of `kind` about `conv` (a listed summary, or `{id}`), if the agent
 *  wants that kind, allowed notifications, and does not see this tab. */
export function notify(kind, conv, text) {
  const N = api();
  if (!N || N.permission !== 'granted' || !session.me || session.stopped) return;
  if (document.visibilityState !== 'hidden' || !prefs()[kind]) return;
  const tag = kind + ':' + conv.id;
  const at = Date.now();
  if (at - (shown.get(tag) || 0) < SAME_WITHIN_MS) return;
  shown.set(tag, at);
  const { title, body } = notificationText(kind, conv, text);
  let n;
  try {
    n = new N(title, { body, tag, icon: '/favicon.svg' });
  } catch (e) {
    return; // some browsers allow them only from a service worker
  }
  n.onclick = () => {
    window.focus();
    openConv(conv.id);
    n.close();
  };
}

/** What an event of the stream may notify: a chat handed to me, a message in mine. */
export function notifyFrame(f, conv) {
  if (!session.me) return;
  const kind = kindOf(f, conv, session.me.email);
  if (kind) notify(kind, conv || { id: f.conversation_id }, (f.data || {}).text);
}

/** The count on the favicon (0: the plain icon). */
export function setBadge(n) {
  const link = document.querySelector('link[rel="icon"]');
  if (!link) return;
  const text = badgeText(n);
  if (link.getAttribute('data-count') === text) return;
  link.setAttribute('data-count', text);
  if (!text) {
    link.href = '/favicon.svg';
    return;
  }
  // `text` is digits (or "9+"), never anything from a visitor.
  const svg = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">' +
    '<rect x="2" y="4" width="24" height="20" rx="5" fill="#1f5fbf"/>' +
    '<circle cx="22" cy="10" r="10" fill="#c5221f"/>' +
    '<text x="22" y="14.5" font-family="sans-serif" font-size="' + (text.length > 1 ? 11 : 13) +
    '" font-weight="700" text-anchor="middle" fill="#fff">' + text + '</text></svg>';
  link.href = 'data:image/svg+xml,' + encodeURIComponent(svg);
}

/** The panel's state: what the browser allows, and the agent's switches. */
export function renderAlerts() {
  const N = api();
  const state = $('alerts-state');
  const allow = $('alerts-allow');
  if (!N) {
    state.textContent = 'This browser cannot show notifications.';
    allow.hidden = true;
  } else if (N.permission === 'granted') {
    state.textContent = 'Notifications are on for this browser.';
    allow.hidden = true;
  } else if (N.permission === 'denied') {
    state.textContent = 'Notifications are blocked: allow them in the browser\'s site settings.';
    allow.hidden = true;
  } else {
    state.textContent = 'Notifications are not allowed yet.';
    allow.hidden = false;
  }
  const p = prefs();
  for (const kind of KINDS) $('alerts-' + kind).checked = p[kind];
}

export function toggleAlerts() {
  const panel = $('alerts-panel');
  panel.hidden = !panel.hidden;
  $('alerts').setAttribute('aria-expanded', String(!panel.hidden));
  if (!panel.hidden) renderAlerts();
}

/** The "Allow" button: the browser's own question, from the agent's click. */
export async function allowAlerts() {
  const N = api();
  if (!N) return;
  try {
    await N.requestPermission();
  } catch (e) {
    // an old browser's callback form: the state below says how it went
  }
  renderAlerts();
}

export function onAlertSwitch() {
  const p = {};
  for (const kind of KINDS) p[kind] = $('alerts-' + kind).checked;
  store(prefsKey(), JSON.stringify(p), 'local');
}

export function resetAlerts() {
  shown = new Map();
  $('alerts-panel').hidden = true;
  setBadge(0);
}
