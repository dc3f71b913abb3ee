/* The lists on the left: which section a conversation belongs in, what rings, what the
 * lists ask the server, and what the title says. Pure: no DOM, no clock. */

import { ms, includes, statusLabel, visitorName } from './format.js';

/** The sections, top to bottom; each is `#sec-{name}` in the page. */
export const SECTIONS = ['new', 'awaiting', 'mine', 'others', 'bot', 'resolved'];

export const TITLE = 'livechat console';

/** Whether an agent in `teams` (null or undefined: an admin, who may do anything) may
 *  take `conv` while it waits: it is routed to one of their teams, or to no team (then any
 *  team serving its bot rings). A request routed elsewhere they may only read. */
export function forTeams(conv, teams) {
  return !teams || !conv.team || includes(teams, conv.team);
}

/** Where `conv` is listed for the agent `me` (an email) in `teams` (see `forTeams`): a
 *  waiting request routed to another team is listed with the others' chats. */
export function sectionOf(conv, me, teams) {
  switch (conv.status) {
    case 'new':
      if (!forTeams(conv, teams)) return 'others';
      return includes(conv.muted, me) ? 'awaiting' : 'new';
    case 'assigned':
    case 'chatting':
      return conv.assignee === me ? 'mine' : 'others';
    case 'bot':
    case 'collecting':
      return 'bot';
    default:
      return 'resolved';
  }
}

/** A waiting request that rings for `me`: offered to them and not muted by them. */
export function ringsFor(conv, me) {
  return conv.status === 'new' && includes(conv.ringing, me) && !includes(conv.muted, me);
}

/** When a row's counter starts (ms), and whether it counts up (`wait`) or says `ago`. */
export function since(conv) {
  switch (conv.status) {
    case 'new':
      return [ms(conv.requested_at) || ms(conv.opened_at), 'wait'];
    case 'assigned':
    case 'chatting':
      return [ms(conv.requested_at) || ms(conv.assigned_at) || ms(conv.opened_at), 'wait'];
    case 'bot':
    case 'collecting':
      return [ms(conv.opened_at), 'wait'];
    default:
      return [
        ms(conv.resolved_at) || ms(conv.ended_at) || ms(conv.closed_at) || ms(conv.opened_at),
        'ago',
      ];
  }
}

/** The conversations by section, each in the order given (the server's order). */
export function groupBySection(convs, me, teams) {
  const groups = Object.fromEntries(SECTIONS.map((name) => [name, []]));
  for (const conv of convs) groups[sectionOf(conv, me, teams)].push(conv);
  return groups;
}

/** Everything a row shows: rows with the same key are kept as they are in the page. */
export function rowKey(conv, section, me) {
  return JSON.stringify([
    conv.id, section, visitorName(conv), conv.bot, conv.status, conv.assignee,
    conv.last_message, since(conv)[0], ringsFor(conv, me), conv.unread || 0,
  ]);
}

/** The small line under a row's name: the bot, then who has it and in what state. */
export function rowMeta(conv, section, nameOf) {
  const meta = [conv.bot];
  if (section === 'others' && conv.assignee) meta.push(nameOf(conv.assignee));
  if (section === 'others' && conv.status === 'new') meta.push('waiting for team ' + conv.team);
  if (
    section === 'resolved' || section === 'bot' ||
    conv.status === 'chatting' || conv.status === 'assigned'
  ) {
    meta.push(statusLabel(conv.status));
  }
  if (section === 'awaiting') meta.push('muted');
  return meta.join(' · ');
}

/** The list calls of one refresh. Agents see their own chats, admins everyone's; a search
 *  looks at everyone's and at closed ones too, and then asks once more for every waiting
 *  request (they ring whether they match or not): that one is last. */
export function listQueries(q, admin) {
  const search = q ? '&q=' + encodeURIComponent(q) : '';
  const queries = [
    'status=new&limit=100',
    'status=assigned,chatting&limit=100' + (admin || q ? '' : '&assignee=me'),
    'status=bot,collecting&limit=30',
    'status=resolved,ended' + (q ? ',closed' : '') + '&limit=30',
  ].map((qs) => '/conversations?' + qs + search);
  if (q) queries.push('/conversations?status=new&limit=100');
  return queries;
}

/** The answers of `listQueries`, merged: the conversations by id (first answer first),
 *  the waiting requests when searching, and where the event stream should start. The
 *  server's `last_seq` counts only before the first socket (`streaming` false); a smaller
 *  one than we had means a new database. */
export function mergeLists(answers, searching, lastSeq, streaming) {
  const lists = answers.slice();
  const waiting = searching ? lists.pop().conversations || [] : null;
  const convs = new Map();
  let seq = lastSeq;
  for (const answer of lists) {
    for (const conv of answer.conversations || []) convs.set(conv.id, conv);
    if (!streaming && typeof answer.last_seq === 'number' && (!seq || seq > answer.last_seq)) {
      seq = answer.last_seq;
    }
  }
  return { convs, waiting, lastSeq: seq };
}

/** The requests ringing for `me` now, and the first that did not ring before (or null). */
export function newRinging(waiting, me, before) {
  const ringing = waiting.filter((conv) => ringsFor(conv, me));
  const fresh = ringing.find((conv) => !before.has(conv.id)) || null;
  return { ids: new Set(ringing.map((conv) => conv.id)), fresh };
}

/** The window title while `n` requests ring: it flashes between the count and the name. */
export function titleFor(n, flash) {
  if (n > 0 && flash) return '(' + n + ') New request' + (n > 1 ? 's' : '');
  return TITLE;
}
