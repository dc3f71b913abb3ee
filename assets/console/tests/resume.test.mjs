import { test } from 'node:test';
import assert from 'node:assert/strict';

import { eventsUrl, isNew, retryDelay } from '../resume.js';

test('the stream resumes after the last seq, over wss behind https', () => {
  assert.equal(eventsUrl('http:', '127.0.0.1:8080', 0),
    'ws://127.0.0.1:8080/api/v1/agent/events?after=0');
  assert.equal(eventsUrl('https:', 'chat.acme.example', 1234),
    'wss://chat.acme.example/api/v1/agent/events?after=1234');
});

test('replayed events are dropped; events without a seq always pass', () => {
  assert.equal(isNew({ seq: 10 }, 9), true);
  assert.equal(isNew({ seq: 10 }, 10), false);
  assert.equal(isNew({ seq: 3 }, 10), false);
  assert.equal(isNew({ type: 'typing' }, 10), true);
});

test('retries wait longer each time, up to 15 s, spread by a quarter', () => {
  assert.equal(retryDelay(1, 0.5), 500);
  assert.equal(retryDelay(2, 0.5), 1000);
  assert.equal(retryDelay(5, 0.5), 8000);
  assert.equal(retryDelay(6, 0.5), 15000);
  assert.equal(retryDelay(60, 0.5), 15000);
  assert.equal(retryDelay(1, 0), 375);
  assert.ok(retryDelay(6, 0.999999) < 15000 * 1.25);
});
