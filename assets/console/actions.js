/* What an agent can do with the open conversation: the buttons above it (which depend on
 * its status and who has it) and the two small forms, Resolve with a closing note and
 * Transfer to an agent or a team. */

import { $, h, clear, button, announce } from './dom.js';
import { API, api, reason, REASONS } from './api.js';
import { session, isMe, isAdmin } from './state.js';
import { includes } from './format.js';
import { forTeams } from './sections.js';
import { openId, conv, loadOpen, notice, setNotice } from './conversation.js';
import { scheduleRefresh } from './lists.js';
import { focusComposer } from './composer.js';
import { loadAgents } from './session.js';
import { offerCall, inCall } from './call.js';

let shownKey = ''; // what the buttons were last built from

/** Forgets the buttons (another conversation opens). */
export function resetActions() {
  shownKey = '';
  clear($('conv-actions'));
}

export function renderActions(d) {
  const me = session.me.email;
  const mine = isMe(d.assignee);
  const admin = isAdmin();
  const muted = includes(d.muted, me);
  // A waiting request routed to another team is read-only here (the server refuses too).
  const ours = forTeams(d, admin ? null : session.me.teams);
  const key = [d.id, d.status, d.assignee, d.team, admin, muted, inCall(d.id)].join('|');
  if (key === shownKey) return; // the same buttons: keep them (a click may be under way)
  shownKey = key;
  const bar = $('conv-actions');
  clear(bar);
  const st = d.status;
  const open = st === 'assigned' || st === 'chatting';
  const waiting = st === 'new' && ours;
  if (waiting) {
    bar.appendChild(button('Accept', 'primary', accept));
    if (!muted) {
      bar.appendChild(button('Mute', '', () => command('mute', undefined, 'Muted: it waits under Awaiting.')));
    }
  }
  if (st === 'bot' || st === 'collecting') bar.appendChild(button('Take over', 'primary', takeOver));
  if (waiting || (open && (mine || admin))) bar.appendChild(button('Transfer', '', showTransfer));
  if (open && mine) {
    bar.appendChild(button('Give back', '', () => command('unassign', undefined, 'Given back: it rings for the others.')));
    if (!inCall(d.id)) bar.appendChild(button('Video call', '', () => offerCall(d.id)));
  }
  if (st === 'collecting' || waiting || (open && (mine || admin))) {
    bar.appendChild(button('Resolve', '', showResolve));
  }
  if (st === 'bot' || st === 'resolved' || st === 'ended') {
    bar.appendChild(button('Close', '', () => command('close', undefined, 'Closed and archived.')));
  }
  bar.appendChild(h('a', {
    class: 'btn',
    href: API + '/conversations/' + encodeURIComponent(d.id) + '/transcript.csv',
    download: 'transcript-' + d.id + '.csv',
  }, 'Download transcript'));
}

/** Posts `verb` for the open conversation; resolves with the answer, or null when it did
 *  not work (the notice then says why). `done` is announced to screen readers. */
async function command(verb, body, done) {
  const id = openId;
  try {
    const r = await api('POST', '/conversations/' + encodeURIComponent(id) + '/' + verb, body);
    if (done) announce(done);
    if (openId === id && notice !== REASONS.already_taken) setNotice('');
    scheduleRefresh(0);
    // What the action led to (the assigned notice after Accept, say) is at the end.
    if (openId === id) loadOpen(id, true);
    return r;
  } catch (err) {
    if (err.status === 401) return null;
    if (openId === id) {
      setNotice(reason(err));
      loadOpen(id, false);
    }
    scheduleRefresh(0);
    return null;
  }
}

async function accept() {
  const r = await command('accept', undefined, 'Accepted. You are chatting now.');
  if (!r) return;
  setNotice('');
  focusComposer();
}

async function takeOver() {
  if (await command('takeover', undefined, 'You took over from the bot.')) focusComposer();
}

export function hideForms() {
  $('resolve-form').hidden = true;
  $('transfer-form').hidden = true;
}

function showResolve() {
  hideForms();
  $('resolve-note').value = '';
  $('resolve-form').hidden = false;
  $('resolve-note').focus();
}

export async function onResolve(ev) {
  ev.preventDefault();
  const note = $('resolve-note').value.trim();
  if (await command('resolve', note ? { note } : undefined, 'Resolved.')) hideForms();
}

/** The Transfer form, its choices from a fresh roster: agents (with how busy they are),
 *  then the teams they are in. */
async function showTransfer() {
  hideForms();
  await loadAgents();
  if (!conv) return;
  const sel = $('transfer-target');
  clear(sel);
  const teams = new Set();
  const people = h('optgroup', { label: 'Agents' });
  for (const a of session.agents) {
    for (const t of a.teams || []) teams.add(t);
    if (a.email === conv.assignee) continue;
    const state = !a.online ? 'offline' : a.accepting ? 'available' : 'not accepting';
    people.appendChild(h('option', { value: 'agent:' + a.email },
      a.name + ' (' + state + ', ' + a.active_chats + '/' + a.max_chats + ')'));
  }
  const groups = h('optgroup', { label: 'Teams' });
  for (const t of [...teams].sort()) groups.appendChild(h('option', { value: 'team:' + t }, 'Team ' + t));
  sel.appendChild(people);
  sel.appendChild(groups);
  $('transfer-form').hidden = false;
  sel.focus();
}

export async function onTransfer(ev) {
  ev.preventDefault();
  const v = $('transfer-target').value;
  if (!v) return;
  const i = v.indexOf(':');
  const body = { [v.slice(0, i)]: v.slice(i + 1) }; // {agent: email} or {team: name}
  if (await command('transfer', body, 'Transferred.')) hideForms();
}
