import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  ago, agentName, clock, duration, medianText, ms, ratingText, safeUrl, statusLabel,
  valueText, visitorName,
} from '../format.js';

test('ms reads the server\'s nanosecond timestamps', () => {
  assert.equal(ms('2026-03-01T10:00:00.123456789Z'), Date.UTC(2026, 2, 1, 10, 0, 0, 123));
  assert.equal(ms('2026-03-01T10:00:00Z'), Date.UTC(2026, 2, 1, 10));
  assert.equal(ms('2026-03-01T12:00:00.5+02:00'), Date.UTC(2026, 2, 1, 10, 0, 0, 500));
  assert.equal(ms(null), null);
  assert.equal(ms(''), null);
  assert.equal(ms('yesterday-ish'), null);
});

test('duration counts minutes and seconds, then hours, then days', () => {
  assert.equal(duration(0), '0:00');
  assert.equal(duration(9_999), '0:09');
  assert.equal(duration(61_000), '1:01');
  assert.equal(duration(59 * 60_000 + 59_000), '59:59');
  assert.equal(duration(3_600_000), '1:00:00');
  assert.equal(duration(2 * 3_600_000 + 5 * 60_000 + 7_000), '2:05:07');
  assert.equal(duration(86_400_000 + 3 * 3_600_000 + 59 * 60_000), '1d 3h');
  // A clock a little ahead of the server's never shows a negative wait.
  assert.equal(duration(-5_000), '0:00');
});

test('ago says the largest whole unit', () => {
  assert.equal(ago(59_999), 'just now');
  assert.equal(ago(60_000), '1 min ago');
  assert.equal(ago(3_599_000), '59 min ago');
  assert.equal(ago(2 * 3_600_000 + 1), '2 h ago');
  assert.equal(ago(3 * 86_400_000), '3 d ago');
});

test('clock shows the time of day, and the date only on another day', () => {
  const morning = new Date(2026, 4, 12, 9, 7, 30); // local time
  const evening = new Date(2026, 4, 12, 21, 45).getTime();
  assert.equal(clock(morning.toISOString(), evening), '09:07');
  const nextDay = new Date(2026, 4, 13, 8, 0).getTime();
  assert.equal(clock(morning.toISOString(), nextDay), morning.toLocaleDateString() + ' 09:07');
  assert.equal(clock(undefined, evening), '');
});

test('medianText shows a median with its 90th percentile, or a dash', () => {
  assert.equal(medianText({ count: 3, median: 42, p90: 125 }), '0:42 (90 %: 2:05)');
  assert.equal(medianText({ count: 0, median: 0, p90: 0 }), '–');
  assert.equal(medianText(undefined), '–');
});

test('names: the visitor\'s or "Visitor", an agent\'s or "You" or the address', () => {
  assert.equal(visitorName({ visitor: { name: 'Ada' } }), 'Ada');
  assert.equal(visitorName({ visitor: {} }), 'Visitor');
  assert.equal(visitorName({ visitor: { id: 'v_0193ab4f2a' } }), 'Visitor 4F2A');
  assert.equal(visitorName({ visitor: { id: 'v_0193ab4f2a', name: 'Ada' } }), 'Ada');
  assert.equal(visitorName(null), 'Visitor');
  const me = { email: 'me@x', name: 'Me' };
  const agents = [{ email: 'bo@x', name: 'Bo' }, me];
  assert.equal(agentName('me@x', me, agents), 'You');
  assert.equal(agentName('bo@x', me, agents), 'Bo');
  assert.equal(agentName('gone@x', me, agents), 'gone@x');
  assert.equal(agentName(null, me, agents), '');
});

test('safeUrl lets only http and https links through', () => {
  assert.equal(safeUrl('https://acme.example/pricing'), 'https://acme.example/pricing');
  assert.equal(safeUrl('HTTP://acme.example/'), 'HTTP://acme.example/');
  assert.equal(safeUrl('javascript:alert(1)//https://x'), null);
  assert.equal(safeUrl(' javascript:alert(1)'), null);
  assert.equal(safeUrl('data:text/html,<b>'), null);
  assert.equal(safeUrl(undefined), null);
});

test('statuses, values and ratings as words', () => {
  assert.equal(statusLabel('collecting'), 'Bot: asking details');
  assert.equal(statusLabel('someday'), 'someday');
  assert.equal(valueText('plain'), 'plain');
  assert.equal(valueText({ plan: 'pro', seats: 3 }), '{"plan":"pro","seats":3}');
  assert.equal(valueText(7), '7');
  assert.equal(ratingText({ rating: 'good', comment: 'Fixed fast' }), 'Good: Fixed fast');
  assert.equal(ratingText({ rating: 'bad' }), 'Bad');
  assert.equal(ratingText(null), null);
});
