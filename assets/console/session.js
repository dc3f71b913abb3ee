/* Signing in and out, starting the console for an agent and stopping it, and what comes
 * with the agent: the roster, the canned responses, the "Accept chats" switch. The session
 * itself is the server's cookie; a tab keeps only the CSRF token. */

import { resetCall } from './call.js';
import { $, h, add, clear, toast, announce } from './dom.js';
import { api, reason, onSessionEnded } from './api.js';
import { session, resetSession, store, load } from './state.js';
import { TITLE } from './sections.js';
import { refresh, resetLists, tick } from './lists.js';
import { closeConv } from './conversation.js';
import { resetReports } from './reports.js';
import { clearTyping } from './composer.js';
import { restoreSeq, startStream, stopStream } from './stream.js';
import { renderSound, resetSound, unlockAudio } from './sound.js';
import { onFrame, onReconnect } from './events.js';
import { resetAlerts } from './notifications.js';
import { resetVisitors, startVisitors } from './visitors.js';
import { resetReads } from './reads.js';
import { openLinked } from './links.js';

let ticker = null;

/** Shows the console of the agent whose session this browser has (the cookie: signed in
 * in another tab, or this tab reloaded), else the sign-in form. A tab that never signed in
 * learns the session's CSRF token from `/me`, so a link opened in a new tab (a team-chat
 * alert's, say) goes straight to the conversation. */
export async function resume() {
  const had = load('livechat.csrf');
  // A 401 here means "not signed in" for a fresh tab, "session ended" for one that was.
  onSessionEnded((message) => {
    store('livechat.csrf', null);
    showSignIn(had ? message : '');
  });
  let data;
  try {
    data = await api('GET', '/me');
  } catch (err) {
    if (err.status !== 401) showSignIn(reason(err));
    return;
  } finally {
    onSessionEnded(signedOut);
  }
  session.csrf = data.csrf_token || had;
  store('livechat.csrf', session.csrf);
  start(data.agent);
}

function showSignIn(message) {
  $('console-view').hidden = true;
  $('signin-view').hidden = false;
  $('signin-error').textContent = message || '';
  document.title = TITLE;
  $('signin-email').focus();
}

export async function onSignIn(ev) {
  ev.preventDefault();
  unlockAudio();
  const email = $('signin-email').value.trim();
  const password = $('signin-password').value;
  if (!email || !password) {
    $('signin-error').textContent = 'Enter your email and password.';
    return;
  }
  $('signin-submit').disabled = true;
  $('signin-error').textContent = '';
  try {
    const data = await api('POST', '/auth/login', { email, password });
    $('signin-password').value = '';
    // The bearer `token` is not kept: the cookie carries the session.
    session.csrf = data.csrf_token;
    store('livechat.csrf', session.csrf);
    start(data.agent);
  } catch (err) {
    let text = reason(err);
    if (err.code === 'invalid_credentials') text = 'Wrong email or password.';
    if (err.code === 'too_many_attempts') {
      const minutes = Math.ceil((Number(err.retryAfter) || 60) / 60);
      text = 'Too many attempts. Try again in ' + minutes + ' min.';
    }
    $('signin-error').textContent = text;
  }
  $('signin-submit').disabled = false;
}

export async function onSignOut() {
  try {
    await api('POST', '/auth/logout');
  } catch (e) {
    // signed out here either way
  }
  signedOut('');
}

/** Ends the console in this tab (after sign-out, or when the server says 401). */
function signedOut(message) {
  if (session.stopped && !$('signin-view').hidden) return;
  session.stopped = true;
  clearInterval(ticker);
  stopStream();
  resetLists();
  closeConv();
  resetReports();
  clearTyping();
  resetSound();
  resetCall();
  resetAlerts();
  resetVisitors();
  resetReads();
  store('livechat.csrf', null);
  resetSession();
  showSignIn(message);
}

function start(agent) {
  session.me = agent;
  session.stopped = false;
  session.startedAt = Date.now();
  restoreSeq();
  $('signin-view').hidden = true;
  $('console-view').hidden = false;
  const me = $('me');
  clear(me);
  add(me, [h('span', { class: 'me-name' }, agent.name), ' ', h('span', { class: 'me-email' }, agent.email)]);
  if (agent.role === 'admin') add(me, [' ', h('span', { class: 'chip' }, 'admin')]);
  $('sec-others').hidden = agent.role !== 'admin';
  renderSound();
  closeConv();
  loadAgents();
  loadResponses();
  refresh().then(() => {
    if (session.stopped) return;
    startStream({ frame: onFrame, reopened: onReconnect });
    startVisitors();
    openLinked();
  });
  ticker = setInterval(tick, 1000);
}

/** The roster (for names, presence and Transfer); it also says whether I accept chats. */
export async function loadAgents() {
  try {
    const data = await api('GET', '/agents');
    session.agents = data.agents || [];
    const mine = session.agents.find((a) => a.email === session.me.email);
    if (mine) setAccepting(mine.accepting);
    if (mine) setVideo(mine.video !== false);
  } catch (e) {
    // the next call that fails says so
  }
}

export async function loadResponses() {
  try {
    const data = await api('GET', '/responses');
    session.responses = data.responses || [];
  } catch (e) {
    session.responses = null; // no canned responses on this server
  }
}

export function setAccepting(on) {
  const box = $('accepting');
  box.checked = !!on;
  box.setAttribute('aria-checked', String(!!on));
}

export function setVideo(on) {
  const box = $('video-calls');
  box.checked = !!on;
  box.setAttribute('aria-checked', String(!!on));
}

/** "Video calls": off, video requests do not ring me (text requests still do). */
export async function onVideoChange() {
  const want = $('video-calls').checked;
  try {
    const data = await api('PUT', '/me/availability', { video: want });
    setVideo(data.video);
    announce(data.video ? 'Video requests ring you.' : 'Video requests do not ring you.');
  } catch (err) {
    setVideo(!want);
    toast('Could not change "Video calls": ' + reason(err));
  }
}

export async function onAcceptingChange() {
  const want = $('accepting').checked;
  setAccepting(want);
  try {
    const data = await api('PUT', '/me/availability', { accepting: want });
    setAccepting(data.accepting);
    announce(data.accepting ? 'You accept chats.' : 'You do not accept chats.');
  } catch (err) {
    setAccepting(!want);
    toast('Could not change "Accept chats": ' + reason(err));
  }
}
