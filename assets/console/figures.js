/* The Reports pane's figures: the rows of the totals table, the query of a period, and
 * the CSV to download. Pure. */

import { medianText } from './format.js';

/** The plain counts of `/api/v1/stats`: the field and its label. */
export const FIGURES = [
  ['conversations', 'Conversations'],
  ['live_chat_requests', 'Live chat requests'],
  ['accepted', 'Accepted'],
  ['missed', 'Missed (timed out or offline)'],
  ['resolved', 'Resolved'],
  ['offline_forms', 'Offline messages in chats'],
];

const DAY = 86400000;

/** The query of the last `days` days up to `nowMs` (`?from=…&to=…[&bot=…]`). "Today"
 *  (1) starts at local midnight; longer periods go back whole days from now. */
export function periodQuery(days, nowMs, bot) {
  const to = new Date(nowMs);
  const from = days === 1
    ? new Date(to.getFullYear(), to.getMonth(), to.getDate())
    : new Date(nowMs - days * DAY);
  return '?from=' + encodeURIComponent(from.toISOString()) +
    '&to=' + encodeURIComponent(to.toISOString()) +
    (bot ? '&bot=' + encodeURIComponent(bot) : '');
}

/** The totals table: [label, figure as text]. */
export function totalRows(total) {
  const messages = total.messages || {};
  const ratings = total.ratings || {};
  const rows = FIGURES.map(([field, label]) => [label, String(total[field] || 0)]);
  rows.push(['Messages from visitors', String(messages.visitor || 0)]);
  rows.push(['Messages from agents', String(messages.agent || 0)]);
  rows.push(['Messages from the bot', String((messages.bot || 0) + (messages.system || 0))]);
  rows.push(['Rated good', String(ratings.good || 0)]);
  rows.push(['Rated bad', String(ratings.bad || 0)]);
  rows.push(['Time to accept (median)', medianText(total.time_to_accept_secs)]);
  rows.push(['Time to resolve (median)', medianText(total.time_to_resolve_secs)]);
  return rows;
}

/** One CSV cell. A cell a spreadsheet would run as a formula gets a quote in front: one
 *  that starts a formula, or any of whose `,`/`;`/tab-separated parts does (spreadsheets in
 *  many locales split on `;`); the same rule as the server's CSV (`engine::queries`). A
 *  cell holding a separator is quoted, so it stays one cell whatever the split. */
export function csvCell(v) {
  let s = v == null ? '' : String(v);
  if (/^[\t\r]|(^|[,;\t])[=+\-@]/.test(s)) s = "'" + s;
  return /[",;\t\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function csvLine(cells) {
  return cells.map(csvCell).join(',') + '\r\n';
}

const HEAD = ['bot'].concat(FIGURES.map(([field]) => field), [
  'messages_visitor', 'messages_agent', 'messages_bot', 'rated_good', 'rated_bad',
  'accept_median_secs', 'accept_p90_secs', 'resolve_median_secs', 'resolve_p90_secs',
]);

function figureCells(name, t) {
  const m = t.messages || {};
  const accept = t.time_to_accept_secs || {};
  const resolve = t.time_to_resolve_secs || {};
  const g = t.ratings || {};
  return [name].concat(FIGURES.map(([field]) => t[field] || 0), [
    m.visitor || 0, m.agent || 0, (m.bot || 0) + (m.system || 0), g.good || 0, g.bad || 0,
    accept.median, accept.p90, resolve.median, resolve.p90,
  ]);
}

/** The figures per bot (by id) and in all, then per agent, as CSV. */
export function reportCsv(data) {
  const bots = data.bots || {};
  let out = csvLine(['from', data.from, 'to', data.to]) + csvLine(HEAD);
  for (const id of Object.keys(bots).sort()) out += csvLine(figureCells(id, bots[id]));
  out += csvLine(figureCells('all', data.total || {}));
  out += csvLine([]) + csvLine(['agent', 'accepted', 'resolved', 'rated_good', 'rated_bad']);
  for (const a of data.agents || []) {
    const g = a.ratings || {};
    out += csvLine([a.agent, a.accepted || 0, a.resolved || 0, g.good || 0, g.bad || 0]);
  }
  return out;
}
