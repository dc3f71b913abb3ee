/* Turning what the server says into words and numbers for the page. Pure: no DOM, no
 * clock of its own (callers pass the time), so `node --test` checks all of it. */

/** How each conversation status reads in the console. */
export const STATUS = {
  bot: 'Bot',
  collecting: 'Bot: asking details',
  new: 'New',
  assigned: 'Assigned',
  chatting: 'Chatting',
  resolved: 'Resolved',
  ended: 'Ended',
  closed: 'Closed',
};

export function statusLabel(status) {
  return STATUS[status] || status;
}

/** RFC 3339 (the server writes nanoseconds) → ms since the epoch, or null. */
export function ms(t) {
  if (!t) return null;
  const n = Date.parse(String(t).replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(n) ? null : n;
}

export function pad(n) {
  return n < 10 ? '0' + n : String(n);
}

/** A waiting time: `m:ss`, `h:mm:ss`, or `Nd Nh` from a day on. Negative counts as 0. */
export function duration(d) {
  const s = Math.max(0, Math.floor(d / 1000));
  if (s >= 86400) return Math.floor(s / 86400) + 'd ' + Math.floor((s % 86400) / 3600) + 'h';
  const hours = Math.floor(s / 3600);
  const min = Math.floor((s % 3600) / 60);
  return (hours ? hours + ':' + pad(min) : String(min)) + ':' + pad(s % 60);
}

/** How long ago, in the largest whole unit. */
export function ago(d) {
  const s = Math.floor(d / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return Math.floor(s / 60) + ' min ago';
  if (s < 86400) return Math.floor(s / 3600) + ' h ago';
  return Math.floor(s / 86400) + ' d ago';
}

/** A time of day (`HH:MM`, local), with the date in front unless it is on `nowMs`'s day. */
export function clock(t, nowMs) {
  const n = ms(t);
  if (n == null) return '';
  const d = new Date(n);
  const sameDay = new Date(nowMs).toDateString() === d.toDateString();
  return (sameDay ? '' : d.toLocaleDateString() + ' ') + pad(d.getHours()) + ':' + pad(d.getMinutes());
}

/** A median and 90th percentile in seconds (`{count, median, p90}`), or a dash. */
export function medianText(t) {
  if (!t || !t.count) return '–';
  return duration(t.median * 1000) + ' (90 %: ' + duration(t.p90 * 1000) + ')';
}

export function visitorName(conv) {
  const v = conv && conv.visitor;
  if (v && v.name) return v.name;
  // Without a name, a short stable tag an agent can say out loud: "Visitor 4F2A".
  const tag = v && typeof v.id === 'string' ? v.id.replace(/[^0-9A-Za-z]/g, '').slice(-4) : '';
  return tag ? 'Visitor ' + tag.toUpperCase() : 'Visitor';
}

/** "You" for `me`, an agent's name from the roster, else the address itself. */
export function agentName(email, me, agents) {
  if (!email) return '';
  if (me && email === me.email) return 'You';
  const known = (agents || []).find((a) => a.email === email);
  return known ? known.name : email;
}

export function includes(list, x) {
  return Array.isArray(list) && list.indexOf(x) >= 0;
}

/** Only http(s) links: a visitor's page_url could say `javascript:`. */
export function safeUrl(u) {
  return /^https?:\/\//i.test(String(u || '')) ? String(u) : null;
}

/** A variable's or a form field's value as text. */
export function valueText(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** A visitor's rating as one line: `Good: comment`, `Bad`, or null for none. */
export function ratingText(rating) {
  if (!rating) return null;
  const word = rating.rating === 'good' ? 'Good' : 'Bad';
  return rating.comment ? word + ': ' + rating.comment : word;
}

/** A file's size for people: `1.2 MB`, `340 KB`, `12 B`. */
export function fileSize(n) {
  const bytes = Number(n) || 0;
  if (bytes >= 1e6) return (bytes / 1e6).toFixed(1) + ' MB';
  if (bytes >= 1e3) return Math.round(bytes / 1e3) + ' KB';
  return bytes + ' B';
}
