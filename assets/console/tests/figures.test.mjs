import { test } from 'node:test';
import assert from 'node:assert/strict';

import { csvCell, periodQuery, reportCsv, totalRows } from '../figures.js';

const params = (query) => new URLSearchParams(query.slice(1));

test('"Today" starts at local midnight; longer periods go back whole days', () => {
  const now = new Date(2026, 6, 15, 14, 30).getTime();
  const today = params(periodQuery(1, now, ''));
  assert.equal(today.get('from'), new Date(2026, 6, 15).toISOString());
  assert.equal(today.get('to'), new Date(now).toISOString());
  assert.equal(today.get('bot'), null);
  const week = params(periodQuery(7, now, 'support'));
  assert.equal(Date.parse(week.get('to')) - Date.parse(week.get('from')), 7 * 86400000);
  assert.equal(week.get('bot'), 'support');
});

test('the totals table: counts, messages by author, ratings, durations', () => {
  const rows = Object.fromEntries(totalRows({
    conversations: 4, accepted: 2,
    messages: { visitor: 5, agent: 3, bot: 2, system: 1 },
    ratings: { good: 1 },
    time_to_accept_secs: { count: 2, median: 30, p90: 90 },
  }));
  assert.equal(rows['Conversations'], '4');
  assert.equal(rows['Accepted'], '2');
  assert.equal(rows['Missed (timed out or offline)'], '0');
  assert.equal(rows['Messages from the bot'], '3');
  assert.equal(rows['Rated good'], '1');
  assert.equal(rows['Rated bad'], '0');
  assert.equal(rows['Time to accept (median)'], '0:30 (90 %: 1:30)');
  assert.equal(rows['Time to resolve (median)'], '–');
});

test('CSV cells: quoted when needed, formulas defused', () => {
  assert.equal(csvCell('plain'), 'plain');
  assert.equal(csvCell('a,b'), '"a,b"');
  assert.equal(csvCell('say "hi"'), '"say ""hi"""');
  assert.equal(csvCell('=HYPERLINK("x")'), '"\'=HYPERLINK(""x"")"');
  assert.equal(csvCell('-3'), "'-3");
  assert.equal(csvCell('@sum'), "'@sum");
  assert.equal(csvCell(null), '');
  assert.equal(csvCell(0), '0');
});

test('CSV cells: a formula after a separator a spreadsheet may split on is defused', () => {
  assert.equal(csvCell("ok;=cmd|' /C calc'!A0"), `"'ok;=cmd|' /C calc'!A0"`);
  assert.equal(csvCell('ok\t+1'), `"'ok\t+1"`);
  assert.equal(csvCell('a,@SUM(1)'), `"'a,@SUM(1)"`);
  assert.equal(csvCell('yes; thanks'), '"yes; thanks"');
  assert.equal(csvCell('a - b'), 'a - b');
});

test('the report CSV: per bot in order, then all, then per agent', () => {
  const figures = { conversations: 1, live_chat_requests: 1, accepted: 1, resolved: 1 };
  const csv = reportCsv({
    from: '2026-01-01T00:00:00Z', to: '2026-01-08T00:00:00Z',
    bots: { support: figures, billing: {} },
    total: { ...figures, time_to_accept_secs: { count: 1, median: 12, p90: 12 } },
    agents: [{ agent: 'agent0@acme.example', accepted: 1, resolved: 1, ratings: { good: 1 } }],
  });
  const lines = csv.split('\r\n');
  assert.equal(lines[0], 'from,2026-01-01T00:00:00Z,to,2026-01-08T00:00:00Z');
  assert.ok(lines[1].startsWith('bot,conversations,live_chat_requests,accepted,missed,resolved,'));
  assert.ok(lines[2].startsWith('billing,0,0,0,0,0,'), lines[2]);
  assert.ok(lines[3].startsWith('support,1,1,1,0,1,'), lines[3]);
  assert.ok(lines[4].startsWith('all,1,1,1,0,1,'), lines[4]);
  assert.ok(lines[4].endsWith(',12,12,,'), lines[4]);
  assert.equal(lines[5], '');
  assert.equal(lines[6], 'agent,accepted,resolved,rated_good,rated_bad');
  assert.equal(lines[7], 'agent0@acme.example,1,1,1,0');
  assert.equal(lines[8], '');
  assert.equal(lines.length, 9);
});
