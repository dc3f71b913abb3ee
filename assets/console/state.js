/* What the whole console shares while an agent is signed in: who they are, the CSRF
 * token, the roster, the canned responses, the server's clock. Everything else belongs to
 * the module that changes it (the lists to lists.js, the socket to stream.js, the open
 * conversation to conversation.js…), which exports it read-only (`export let`) where others
 * need to read it. */

import { agentName } from './format.js';

function signedOut() {
  return {
    csrf: null, // the session's CSRF token: every call other than GET sends it
    me: null, // the agent: {email, name, role}
    agents: [], // the roster, with presence (`GET /agents`, then `agent.presence` events)
    responses: null, // the canned responses, or null when the server has none for us
    skew: 0, // the server's clock minus ours, when they differ by more than 2 s
    startedAt: Date.now(), // when this console started (older events are not "unread")
    stopped: true, // signed out: timers and answers that arrive late do nothing
  };
}

export const session = signedOut();

/** Forgets the signed-in agent (after sign-out, or when the session ends). */
export function resetSession() {
  Object.assign(session, signedOut());
}

/** The server's time, in ms. */
export function now() {
  return Date.now() + session.skew;
}

export function isMe(email) {
  return !!session.me && email === session.me.email;
}

export function isAdmin() {
  return !!session.me && session.me.role === 'admin';
}

/** An agent's name as the console shows it ("You" for the one signed in). */
export function nameOf(email) {
  return agentName(email, session.me, session.agents);
}

function storage(where) {
  return where === 'local' ? localStorage : sessionStorage;
}

/** Keeps `value` under `key` (null removes it), in this tab or for the browser (`local`). */
export function store(key, value, where) {
  try {
    if (value == null) storage(where).removeItem(key);
    else storage(where).setItem(key, value);
  } catch (e) {
    // storage may be off: the console works, it only forgets on reload
  }
}

export function load(key, where) {
  try {
    return storage(where).getItem(key);
  } catch (e) {
    return null;
  }
}
