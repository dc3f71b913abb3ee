/* What the agent is told about, decided without the page: the list views (All, Unread,
 * Done), the count on the favicon, which events deserve a browser notification and what
 * it says, the per-kind switches, and the `#/conversations/{id}` deep link. Pure: no
 * DOM, no clock, no storage (notifications.js does the browser side). */

import { includes, visitorName } from './format.js';

/** The views of the lists, in the order of their tabs. */
export const VIEWS = ['all', 'unread', 'done'];

/** The kinds of browser notification, each switchable by the agent. */
export const KINDS = ['request', 'transfer', 'message'];

/** Whether a conversation listed in `section` is shown in `view`. Unread: what is open or
 *  waiting with visitor messages the agent has not read; Done: resolved and ended. */
export function inView(conv, section, view) {
  switch (view) {
    case 'unread':
      return section !== 'resolved' && section !== 'bot' && conv.unread > 0;
    case 'done':
      return section === 'resolved';
    default:
      return true;
  }
}

/** A view from what was stored (anything else: `all`). */
export function parseView(text) {
  return VIEWS.includes(text) ? text : 'all';
}

/** The count on the favicon and in the title: requests ringing for `me`, and my chats
 *  with unread visitor messages. */
export function badgeCount(convs, me) {
  let n = 0;
  for (const conv of convs) {
    const rings = conv.status === 'new' && includes(conv.ringing, me) && !includes(conv.muted, me);
    const mine = conv.assignee === me && (conv.status === 'assigned' || conv.status === 'chatting');
    if (rings || (mine && conv.unread > 0)) n += 1;
  }
  return n;
}

/** The text on the favicon badge ("" for none, "9+" above nine). */
export function badgeText(n) {
  if (!n || n < 0) return '';
  return n > 9 ? '9+' : String(n);
}

/** The agent's switches from what was stored: every kind on unless switched off. */
export function parsePrefs(text) {
  let stored = {};
  try {
    stored = JSON.parse(text || '{}') || {};
  } catch (e) {
    stored = {};
  }
  const prefs = {};
  for (const kind of KINDS) prefs[kind] = stored[kind] !== false;
  return prefs;
}

/** The conversation id of a deep link `#/conversations/{id}`, or null. */
export function parseHash(hash) {
  const m = /^#\/conversations\/([A-Za-z0-9_-]{1,100})$/.exec(hash || '');
  return m ? m[1] : null;
}

export function hashOf(id) {
  return '#/conversations/' + id;
}

/** What an event of the stream tells `me` about (a kind of KINDS), or null: a request
 *  transferred or assigned to me by someone else, or a visitor's message in my chat.
 *  `conv` is the conversation as listed (may be undefined). New requests are found by the
 *  lists, which know what newly rings. */
export function kindOf(frame, conv, me) {
  const data = frame.data || {};
  switch (frame.type) {
    case 'conversation.transferred':
      return data.agent === me && data.by !== me ? 'transfer' : null;
    case 'conversation.assigned':
      return data.agent === me && data.by !== me && !data.takeover ? 'transfer' : null;
    case 'message.created':
      return data.author === 'visitor' && conv && conv.assignee === me &&
        (conv.status === 'assigned' || conv.status === 'chatting')
        ? 'message'
        : null;
    default:
      return null;
  }
}

/** The title and body of a notification of `kind` about `conv` (the frame's text for a
 *  message). Shown by the browser as plain text. */
export function notificationText(kind, conv, text) {
  const who = visitorName(conv);
  switch (kind) {
    case 'request':
      return { title: 'New request: ' + who, body: (conv && conv.last_message) || (conv && conv.bot) || '' };
    case 'transfer':
      return { title: 'Chat for you: ' + who, body: 'It was transferred or assigned to you.' };
    default:
      return { title: who + ' wrote', body: String(text || '').slice(0, 200) };
  }
}
