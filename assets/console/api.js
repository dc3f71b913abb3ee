/* The HTTP API: JSON in and out, the CSRF header, the server's clock, and errors as
 * `ApiError` with the API's stable code. A 401 (or a CSRF token of an ended session) ends
 * the console's session through the handler app.js sets. */

import { session } from './state.js';
import { ms } from './format.js';

export const API = '/api/v1';

/** What the API's error codes mean for an agent. */
export const REASONS = {
  already_taken: 'Taken by someone else.',
  at_capacity: 'You are at your limit of open chats. Resolve one first.',
  not_available:
    'You cannot take this one: turn "Accept chats" on, or it is routed to someone else.',
  invalid_state: 'This cannot be done any more: the conversation has moved on.',
  not_allowed: 'You are not allowed to do that.',
  not_found: 'This conversation is gone or not yours to see.',
  unknown_agent: 'There is no such agent.',
  nobody_to_ring: 'Nobody in that team can take it now (online, accepting chats, with room).',
  network: 'The server cannot be reached. Check your connection.',
};

export class ApiError extends Error {
  constructor(status, code, message, retryAfter) {
    super(message);
    this.status = status; // 0: no answer
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** An error as a sentence for the agent. */
export function reason(err) {
  return REASONS[err.code] || err.message || 'Something went wrong.';
}

let ended = () => {};

/** Sets what happens when the server says the session is over (`message` says why). */
export function onSessionEnded(handler) {
  ended = handler;
}

/** Ends this tab's session: the console goes back to sign-in, saying `message`. */
export function sessionEnded(message) {
  ended(message);
}

/** Calls the API: resolves with the JSON answer (or null), rejects with an `ApiError`. */
export async function api(method, path, body) {
  const headers = {};
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (method !== 'GET' && session.csrf) headers['X-CSRF-Token'] = session.csrf;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  let text;
  try {
    res = await fetch(API + path, init);
    text = await res.text();
  } catch (e) {
    throw new ApiError(0, 'network', REASONS.network);
  }
  const date = ms(res.headers.get('Date'));
  if (date) {
    const skew = date - Date.now();
    session.skew = Math.abs(skew) > 2000 ? skew : 0;
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (e) {
    data = null;
  }
  const error = (data && data.error) || {};
  if (res.status === 401 && path !== '/auth/login') {
    sessionEnded('Your session has ended. Please sign in again.');
  } else if (res.status === 403 && error.code === 'csrf_failed') {
    // Another tab signed in since: this tab's token belongs to an ended session.
    sessionEnded('You signed in again elsewhere in this browser. Please sign in here too.');
  }
  if (!res.ok) {
    throw new ApiError(
      res.status,
      error.code || 'http_' + res.status,
      error.message || text || res.statusText,
      res.headers.get('Retry-After'),
    );
  }
  return data;
}

