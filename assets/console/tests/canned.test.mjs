import { test } from 'node:test';
import assert from 'node:assert/strict';

import { PICKER_SIZE, fillResponse, matchResponses, shortcutAt } from '../canned.js';

test('a # at the start or after a space opens the picker', () => {
  assert.deepEqual(shortcutAt('#hel'), { word: 'hel', start: 0 });
  assert.deepEqual(shortcutAt('Sure. #re'), { word: 're', start: 6 });
  assert.deepEqual(shortcutAt('line one\n#'), { word: '', start: 9 });
  assert.deepEqual(shortcutAt('#order.late-2'), { word: 'order.late-2', start: 0 });
});

test('a # inside a word, or a finished word, opens nothing', () => {
  assert.equal(shortcutAt('issue#4'), null);
  assert.equal(shortcutAt('#hello '), null);
  assert.equal(shortcutAt('no hash'), null);
  assert.equal(shortcutAt('#a/b'), null);
});

const RESPONSES = [
  { shortcut: 'thanks', text: 't' },
  { shortcut: 'refund', text: 'r', bots: ['support'] },
  { shortcut: 'hello', text: 'h' },
  { shortcut: 'Shell', text: 's' },
  { shortcut: 'help', text: 'p', bots: ['sales'] },
];

test('matches contain the word in any case; those starting with it come first', () => {
  const shortcuts = (word, bot) => matchResponses(RESPONSES, word, bot).map((r) => r.shortcut);
  assert.deepEqual(shortcuts('hel', 'support'), ['hello', 'Shell']);
  assert.deepEqual(shortcuts('HEL', 'sales'), ['hello', 'help', 'Shell']);
  assert.deepEqual(shortcuts('', 'support'), ['hello', 'refund', 'Shell', 'thanks']);
  assert.deepEqual(shortcuts('zzz', 'support'), []);
});

test('a response for other bots is not offered; the picker shows a few at most', () => {
  assert.ok(!matchResponses(RESPONSES, 'ref', 'sales').length);
  const many = Array.from({ length: 20 }, (_, i) => ({ shortcut: 'r' + (i + 10), text: '' }));
  const shown = matchResponses(many, 'r', 'any');
  assert.equal(shown.length, PICKER_SIZE);
  assert.equal(shown[0].shortcut, 'r10');
  assert.equal(many.length, 20, 'the list itself is left alone');
});

test('placeholders are filled as the server would, with defaults', () => {
  const agent = { name: 'Agent 0', email: 'agent0@acme.example' };
  const tpl = "Hi {{ visitor.name | default('there') }}, this is {{agent.name}}.";
  assert.equal(fillResponse(tpl, agent, { visitor: {} }), 'Hi there, this is Agent 0.');
  assert.equal(fillResponse(tpl, agent, { visitor: { name: 'Ada' } }), 'Hi Ada, this is Agent 0.');
  assert.equal(fillResponse('{{ visitor.email | default("no email") }}', agent, null), 'no email');
  assert.equal(fillResponse('[{{ bot.id }}] {{ agent.email }}', agent, { bot: 'support' }),
    '[support] agent0@acme.example');
  assert.equal(fillResponse('{{ unknown.thing }}!', agent, {}), '!');
  assert.equal(fillResponse('{{ not closed', agent, {}), '{{ not closed');
});
