/* The agent event stream: one WebSocket that resumes after the last event seen
 * (`?after=N`), so events missed while it was down are replayed, once. It comes back by
 * itself with a growing wait, and says how it is in the top bar. */

import { $ } from './dom.js';
import { api, sessionEnded, ApiError, REASONS } from './api.js';
import { session, store, load } from './state.js';
import { eventsUrl, isNew, retryDelay, HEALTHY_MS } from './resume.js';

/** The seq of the last event seen: where the next socket resumes. */
export let lastSeq = 0;

let ws = null;
let timer = null;
let tries = 0; // failed attempts since the socket last was healthy
let openedAt = 0;
let saveTimer = null;
let handlers = { frame() {}, reopened() {} };
const acks = new Map(); // client_id → settle(ack), for writes sent on the socket
/** Longest write frame sent on the socket (in UTF-16 units, so at most 15 KB of UTF-8 under
 *  the server's 16 KiB frame limit); longer texts go by HTTP. */
const MAX_WRITE = 5000;
/** How long a write on the socket waits for its ack before it counts as lost. */
const ACK_WITHIN_MS = 5000;

function seqKey() {
  return 'livechat.seq:' + session.me.email;
}

/** Where to resume: the seq this tab last saw (kept per agent across reloads), if any. */
export function restoreSeq() {
  const seq = Number(load(seqKey()));
  lastSeq = seq > 0 ? seq : 0;
}

/** The list answers say where the stream starts, until the first socket is up. */
export function setLastSeq(seq) {
  lastSeq = seq;
}

/** Whether a socket is open or opening (it then is ahead of the list answers). */
export function streaming() {
  return !!ws;
}

/** Opens the stream: `frame(f)` gets every new event, `reopened()` runs when a socket
 *  opens again after a failure (time to catch up on what the replay cannot say). */
export function startStream(on) {
  handlers = on;
  connect();
}

function setConn(state, text) {
  $('conn').setAttribute('data-state', state);
  $('conn-text').textContent = text;
}

function connect() {
  if (session.stopped) return;
  setConn('connecting', 'Connecting…');
  const url = eventsUrl(location.protocol, location.host, lastSeq);
  let socket;
  try {
    // `WebSocket` is looked up now, not at import: the browser tests wrap it to watch
    // (and to cut) the console's sockets.
    socket = new WebSocket(url);
  } catch (e) {
    retry(false);
    return;
  }
  ws = socket;
  let opened = false;
  socket.onopen = () => {
    if (ws !== socket) return;
    opened = true;
    openedAt = Date.now();
    setConn('live', 'Live');
    if (tries > 0) handlers.reopened();
  };
  socket.onmessage = (m) => {
    if (ws !== socket) return;
    let frame;
    try {
      frame = JSON.parse(m.data);
    } catch (e) {
      return;
    }
    if (frame.type === 'ack') {
      const settle = acks.get(frame.client_id);
      if (settle) settle(frame);
      return;
    }
    if (frame.type === 'error' && frame.error && frame.error.code === 'session_ended') {
      // Signed out elsewhere, a new password, or removed from the roster: back to sign-in.
      ws = null;
      socket.onclose = null;
      sessionEnded('You were signed out: ' + (frame.error.message || 'the session ended') + '.');
      return;
    }
    onFrame(frame);
  };
  socket.onclose = () => {
    lostAcks();
    if (ws !== socket) return;
    ws = null;
    retry(opened);
  };
}

function retry(opened) {
  if (session.stopped) return;
  if (opened && Date.now() - openedAt > HEALTHY_MS) tries = 0;
  tries += 1;
  // A socket that never opens may mean the session ended: ask (a 401 signs out).
  if (!opened) api('GET', '/me').catch(() => { /* a 401 is handled by api() */ });
  const delay = retryDelay(tries, Math.random());
  setConn('offline', 'Offline, retrying in ' + Math.ceil(delay / 1000) + ' s');
  timer = setTimeout(connect, delay);
}

function onFrame(frame) {
  if (!isNew(frame, lastSeq)) return;
  if (typeof frame.seq === 'number') {
    lastSeq = frame.seq;
    // Remembered at most once a second: a reload resumes where this tab was.
    if (!saveTimer) {
      saveTimer = setTimeout(() => {
        saveTimer = null;
        if (session.me) store(seqKey(), String(lastSeq));
      }, 1000);
    }
  }
  handlers.frame(frame);
}

/** Tells the visitor of `conversationId` that the agent is typing. */
export function sendTyping(conversationId) {
  // The socket's own constant: the tests' stand-in `WebSocket` has no static ones.
  if (!ws || ws.readyState !== ws.OPEN) return false;
  ws.send(JSON.stringify({ type: 'typing', conversation_id: conversationId }));
  return true;
}

/** Sends a frame on the socket (a call's signalling); false when it is not open. */
export function sendFrame(frame) {
  if (!ws || ws.readyState !== ws.OPEN) return false;
  ws.send(JSON.stringify(frame));
  return true;
}

/** Writes a message or note on the socket (`frame` is the HTTP body with `type` and
 *  `conversation_id`): a promise of the HTTP endpoint's answer, sent after the commit, or
 *  null when the socket is not open or the frame is too long for it. A refusal rejects
 *  with the endpoint's error; a socket lost before the ack rejects with code `network`, and
 *  the same `client_id` may then go by HTTP: the server stores the write once. */
export function writeFrame(frame) {
  const text = JSON.stringify(frame);
  if (!ws || ws.readyState !== ws.OPEN || text.length > MAX_WRITE) return null;
  const socket = ws;
  return new Promise((resolve, reject) => {
    const settle = (ack) => {
      clearTimeout(late);
      acks.delete(frame.client_id);
      if (!ack) reject(new ApiError(0, 'network', REASONS.network));
      else if (ack.error) reject(new ApiError(ack.status, ack.error.code, ack.error.message));
      else resolve(ack);
    };
    const late = setTimeout(settle, ACK_WITHIN_MS, null);
    acks.set(frame.client_id, settle);
    socket.send(text);
  });
}

function lostAcks() {
  for (const settle of [...acks.values()]) settle(null);
}

/** Closes the stream for good (sign-out); the next agent starts from scratch. */
export function stopStream() {
  clearTimeout(timer);
  lostAcks();
  if (ws) {
    const socket = ws;
    ws = null;
    try {
      socket.close();
    } catch (e) {
      // closing anyway
    }
  }
  tries = 0;
  lastSeq = 0;
}
