/* Deep links: `/console#/conversations/{id}` (what webhooks and mails link to) opens that
 * conversation once the agent is signed in, with its Accept button while it waits; a hash
 * changed by hand opens the new one. */

import { parseHash } from './alerts.js';
import { session } from './state.js';
import { openId, openConv } from './conversation.js';

/** Opens the conversation the address names, if any and not open yet. */
export function openLinked() {
  const id = parseHash(location.hash);
  if (id && !session.stopped && session.me && id !== openId) openConv(id);
}
