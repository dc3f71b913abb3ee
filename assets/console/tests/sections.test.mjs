import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  TITLE, forTeams, groupBySection, listQueries, mergeLists, newRinging, rowKey, rowMeta, sectionOf,
  since, titleFor,
} from '../sections.js';

const ME = 'me@acme.example';

test('each status is listed where an agent looks for it', () => {
  assert.equal(sectionOf({ status: 'new' }, ME), 'new');
  assert.equal(sectionOf({ status: 'new', muted: [ME] }, ME), 'awaiting');
  assert.equal(sectionOf({ status: 'new', muted: ['other@x'] }, ME), 'new');
  assert.equal(sectionOf({ status: 'chatting', assignee: ME }, ME), 'mine');
  assert.equal(sectionOf({ status: 'assigned', assignee: 'other@x' }, ME), 'others');
  assert.equal(sectionOf({ status: 'collecting' }, ME), 'bot');
  for (const status of ['resolved', 'ended', 'closed']) {
    assert.equal(sectionOf({ status }, ME), 'resolved', status);
  }
});

test('a request waiting for another team is listed with the others\' chats, read-only', () => {
  const billing = { status: 'new', bot: 'support', team: 'billing' };
  // An agent of team desk: not theirs to take.
  assert.equal(forTeams(billing, ['desk']), false);
  assert.equal(sectionOf(billing, ME, ['desk']), 'others');
  assert.equal(rowMeta(billing, 'others', (e) => e), 'support · waiting for team billing');
  // Their own team's, one routed to no team, and anything for an admin (no teams given).
  assert.equal(sectionOf(billing, ME, ['desk', 'billing']), 'new');
  assert.equal(sectionOf({ status: 'new', team: null }, ME, ['desk']), 'new');
  assert.equal(forTeams(billing, null), true);
  assert.equal(sectionOf(billing, ME, null), 'new');
  // Once taken, it is listed as any chat of someone else's.
  assert.equal(sectionOf({ ...billing, status: 'chatting', assignee: 'x@y' }, ME, ['desk']), 'others');
});

test('grouping keeps the server\'s order within each section', () => {
  const convs = [
    { id: 'a', status: 'new' },
    { id: 'b', status: 'chatting', assignee: ME },
    { id: 'c', status: 'new', muted: [ME] },
    { id: 'd', status: 'new' },
    { id: 'e', status: 'bot' },
  ];
  const groups = groupBySection(convs, ME);
  const ids = (name) => groups[name].map((c) => c.id);
  assert.deepEqual(ids('new'), ['a', 'd']);
  assert.deepEqual(ids('awaiting'), ['c']);
  assert.deepEqual(ids('mine'), ['b']);
  assert.deepEqual(ids('bot'), ['e']);
  assert.deepEqual(ids('others'), []);
  assert.deepEqual(ids('resolved'), []);
});

test('a row counts from the request, else from what came before it', () => {
  const at = (t) => Date.parse(t);
  const opened = '2026-01-01T10:00:00Z';
  const requested = '2026-01-01T10:05:00.999999Z';
  assert.deepEqual(since({ status: 'new', opened_at: opened, requested_at: requested }),
    [at('2026-01-01T10:05:00.999Z'), 'wait']);
  assert.deepEqual(since({ status: 'chatting', opened_at: opened, assigned_at: '2026-01-01T10:06:00Z' }),
    [at('2026-01-01T10:06:00Z'), 'wait']);
  assert.deepEqual(since({ status: 'bot', opened_at: opened }), [at(opened), 'wait']);
  assert.deepEqual(since({ status: 'ended', opened_at: opened, ended_at: '2026-01-01T11:00:00Z' }),
    [at('2026-01-01T11:00:00Z'), 'ago']);
});

test('a row key changes with what the row shows, and only then', () => {
  const c = { id: 'c1', status: 'new', bot: 'support', ringing: [ME], last_message: 'hi' };
  const key = rowKey(c, 'new', ME);
  assert.equal(rowKey({ ...c, variables: { x: 1 } }, 'new', ME), key);
  assert.notEqual(rowKey({ ...c, last_message: 'hello?' }, 'new', ME), key);
  assert.notEqual(rowKey({ ...c, ringing: [] }, 'new', ME), key);
  assert.notEqual(rowKey({ ...c, unread: 1 }, 'new', ME), key);
  assert.notEqual(rowKey(c, 'awaiting', ME), key);
});

test('the meta line says who has it and in what state', () => {
  const name = (email) => (email === 'bo@x' ? 'Bo' : email);
  assert.equal(rowMeta({ bot: 'support', status: 'new' }, 'new', name), 'support');
  assert.equal(rowMeta({ bot: 'support', status: 'new' }, 'awaiting', name), 'support · muted');
  assert.equal(rowMeta({ bot: 'support', status: 'chatting', assignee: 'bo@x' }, 'others', name),
    'support · Bo · Chatting');
  assert.equal(rowMeta({ bot: 'sales', status: 'resolved' }, 'resolved', name), 'sales · Resolved');
});

test('list queries: my chats, everyone\'s for admins and searches, waiting ones last', () => {
  const agent = listQueries('', false);
  assert.equal(agent.length, 4);
  assert.ok(agent[1].endsWith('&assignee=me'), agent[1]);
  assert.ok(!agent[3].includes('closed'));
  assert.ok(!listQueries('', true)[1].includes('assignee'));
  const found = listQueries('café & co', false);
  assert.equal(found.length, 5);
  assert.ok(found.slice(0, 4).every((u) => u.endsWith('&q=caf%C3%A9%20%26%20co')), found);
  assert.ok(!found[1].includes('assignee'));
  assert.ok(found[3].includes('status=resolved,ended,closed'));
  assert.equal(found[4], '/conversations?status=new&limit=100');
});

test('merging list answers: by id, the waiting ones apart, and where to resume', () => {
  const answers = [
    { conversations: [{ id: 'a', status: 'new' }], last_seq: 40 },
    { conversations: [{ id: 'b', status: 'chatting' }], last_seq: 41 },
    { conversations: [{ id: 'w', status: 'new' }] },
  ];
  const searching = mergeLists(answers, true, 0, false);
  assert.deepEqual([...searching.convs.keys()], ['a', 'b']);
  assert.deepEqual(searching.waiting.map((c) => c.id), ['w']);
  assert.equal(searching.lastSeq, 40, 'no seq yet: the server\'s');
  assert.equal(answers.length, 3, 'the answers are left as they were');

  const all = mergeLists(answers, false, 0, false);
  assert.deepEqual([...all.convs.keys()], ['a', 'b', 'w']);
  assert.equal(all.waiting, null);
  assert.equal(mergeLists(answers, false, 30, false).lastSeq, 30, 'ours is older: keep it');
  assert.equal(mergeLists(answers, false, 900, false).lastSeq, 40, 'a new database');
  assert.equal(mergeLists(answers, false, 900, true).lastSeq, 900, 'the socket is ahead');
});

test('only requests that newly ring for me ring at once', () => {
  const waiting = [
    { id: 'old', status: 'new', ringing: [ME] },
    { id: 'muted', status: 'new', ringing: [ME], muted: [ME] },
    { id: 'theirs', status: 'new', ringing: ['other@x'] },
    { id: 'fresh', status: 'new', ringing: [ME, 'other@x'] },
  ];
  const first = newRinging(waiting, ME, new Set(['old']));
  assert.deepEqual([...first.ids], ['old', 'fresh']);
  assert.equal(first.fresh.id, 'fresh');
  const again = newRinging(waiting, ME, first.ids);
  assert.equal(again.fresh, null);
});

test('the title flashes the count of ringing requests', () => {
  assert.equal(titleFor(1, true), '(1) New request');
  assert.equal(titleFor(3, true), '(3) New requests');
  assert.equal(titleFor(3, false), TITLE);
  assert.equal(titleFor(0, true), TITLE);
});
