import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  KINDS, VIEWS, badgeCount, badgeText, hashOf, inView, kindOf, notificationText, parseHash,
  parsePrefs, parseView,
} from '../alerts.js';

const ME = 'me@acme.example';

test('the Unread view keeps open and waiting chats with unread messages, Done the finished', () => {
  const unread = { unread: 2 };
  const read = { unread: 0 };
  assert.deepEqual(VIEWS, ['all', 'unread', 'done']);
  assert.equal(inView(read, 'resolved', 'all'), true);
  assert.equal(inView(unread, 'mine', 'unread'), true);
  assert.equal(inView(unread, 'new', 'unread'), true);
  assert.equal(inView(read, 'mine', 'unread'), false);
  assert.equal(inView(unread, 'bot', 'unread'), false);
  assert.equal(inView(unread, 'resolved', 'unread'), false);
  assert.equal(inView(unread, 'resolved', 'done'), true);
  assert.equal(inView(unread, 'mine', 'done'), false);
  assert.equal(parseView('done'), 'done');
  assert.equal(parseView('<b>'), 'all');
  assert.equal(parseView(null), 'all');
});

test('the badge counts what rings for me and my chats with unread messages', () => {
  const convs = [
    { status: 'new', ringing: [ME] },
    { status: 'new', ringing: [ME], muted: [ME] },
    { status: 'new', ringing: ['other@x'] },
    { status: 'chatting', assignee: ME, unread: 3 },
    { status: 'chatting', assignee: ME, unread: 0 },
    { status: 'chatting', assignee: 'other@x', unread: 1 },
    { status: 'resolved', assignee: ME, unread: 1 },
  ];
  assert.equal(badgeCount(convs, ME), 2);
  assert.equal(badgeText(0), '');
  assert.equal(badgeText(3), '3');
  assert.equal(badgeText(12), '9+');
});

test('every kind of notification is on unless the agent switched it off', () => {
  assert.deepEqual(KINDS, ['request', 'transfer', 'message']);
  assert.deepEqual(parsePrefs(null), { request: true, transfer: true, message: true });
  assert.deepEqual(parsePrefs('{"message":false}'), { request: true, transfer: true, message: false });
  assert.deepEqual(parsePrefs('not json'), { request: true, transfer: true, message: true });
});

test('a deep link names one conversation, and nothing else passes for one', () => {
  assert.equal(parseHash('#/conversations/c_01HZX'), 'c_01HZX');
  assert.equal(parseHash(hashOf('c_abc-1')), 'c_abc-1');
  assert.equal(parseHash('#/conversations/'), null);
  assert.equal(parseHash('#/conversations/a/b'), null);
  assert.equal(parseHash('#/conversations/<img>'), null);
  assert.equal(parseHash(''), null);
  assert.equal(parseHash(undefined), null);
});

test('what an event tells me about: chats handed to me, and visitors writing in mine', () => {
  const mine = { status: 'chatting', assignee: ME };
  const theirs = { status: 'chatting', assignee: 'other@x' };
  const ev = (type, data) => ({ type, data });
  assert.equal(kindOf(ev('conversation.transferred', { agent: ME, by: 'boss@x' }), theirs, ME), 'transfer');
  assert.equal(kindOf(ev('conversation.transferred', { agent: ME, by: ME }), mine, ME), null);
  assert.equal(kindOf(ev('conversation.transferred', { team: 'desk', by: 'boss@x' }), theirs, ME), null);
  assert.equal(kindOf(ev('conversation.assigned', { agent: ME, by: 'boss@x' }), theirs, ME), 'transfer');
  assert.equal(kindOf(ev('conversation.assigned', { agent: ME, by: ME }), mine, ME), null);
  assert.equal(kindOf(ev('message.created', { author: 'visitor', text: 'hi' }), mine, ME), 'message');
  assert.equal(kindOf(ev('message.created', { author: 'visitor', text: 'hi' }), theirs, ME), null);
  assert.equal(kindOf(ev('message.created', { author: 'agent', text: 'hi' }), mine, ME), null);
  assert.equal(kindOf(ev('message.created', { author: 'visitor' }), undefined, ME), null);
  assert.equal(kindOf(ev('livechat.ringing', { agents: [ME] }), undefined, ME), null);
});

test('a notification says who and what, as plain text', () => {
  const conv = { bot: 'support', visitor: { name: 'Ana <b>' }, last_message: 'refund?' };
  assert.deepEqual(notificationText('request', conv), { title: 'New request: Ana <b>', body: 'refund?' });
  assert.equal(notificationText('transfer', conv).title, 'Chat for you: Ana <b>');
  assert.deepEqual(notificationText('message', conv, 'x'.repeat(300)).body.length, 200);
});
