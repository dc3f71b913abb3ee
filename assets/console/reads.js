/* Read state: the open conversation is marked read on the server up to its newest message
 * while this tab is visible (`POST /conversations/{id}/read`), and the counts follow what
 * any of the agent's tabs marked (`conversation.read` on the stream). A hidden tab marks
 * nothing: what arrives meanwhile stays unread until the agent looks. */

import { api } from './api.js';
import { session } from './state.js';
import { setUnread } from './lists.js';
import { conv, openId } from './conversation.js';

let sent = new Map(); // conversation id → the seq this tab last marked

function newestSeq(c) {
  let seq = 0;
  for (const m of c.messages || []) if (typeof m.seq === 'number' && m.seq > seq) seq = m.seq;
  return seq;
}

/** Marks the open conversation read up to its newest message, if this tab is seen. */
export function markOpenRead() {
  if (!conv || conv.id !== openId || session.stopped) return;
  if (document.visibilityState === 'hidden') return;
  const id = openId;
  const seq = newestSeq(conv);
  if (!seq || (sent.get(id) || 0) >= seq) {
    if (conv.unread > 0) setUnread(id, 0);
    return;
  }
  sent.set(id, seq);
  api('POST', '/conversations/' + encodeURIComponent(id) + '/read', { seq })
    .then((answer) => setUnread(id, answer.unread))
    .catch(() => {
      sent.delete(id); // tried again with the next message or when the tab is seen
    });
}

/** `conversation.read`: one of my tabs (maybe this one) marked a conversation. */
export function onRead(f) {
  const data = f.data || {};
  if (f.conversation_id && typeof data.unread === 'number') setUnread(f.conversation_id, data.unread);
}

export function resetReads() {
  sent = new Map();
}
