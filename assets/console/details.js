/* The panel beside the open conversation: who the visitor is, where they came from, their
 * contact fields (contact.js), the conversation's facts, the flow's variables, offline form
 * answers and earlier chats. On a narrow window it opens with the Details button. */

import { $, h, clear } from './dom.js';
import { now, nameOf } from './state.js';
import { clock, ratingText, safeUrl, statusLabel, valueText } from './format.js';
import { conv, openConv } from './conversation.js';
import { privacySection } from './privacy.js';
import { contactSection } from './contact.js';

function expanded() {
  return $('details-toggle').getAttribute('aria-expanded') === 'true';
}

export function toggleDetails() {
  const open = !expanded();
  $('details-toggle').setAttribute('aria-expanded', String(open));
  if (conv) renderDetails(conv);
  const close = document.querySelector('.details-close');
  if (open && close) close.focus();
  else if (!open) $('details-toggle').focus();
}

// The visitor data part asks for the panel again when its confirmation opens or closes.
document.addEventListener('livechat:details', () => {
  if (conv) renderDetails(conv);
});

export function detailsOpen() {
  return expanded();
}

/** A definition list of the pairs whose value is not empty. */
function dl(pairs) {
  const list = h('dl', null);
  for (const [term, value] of pairs) {
    if (value == null || value === '') continue;
    list.appendChild(h('dt', null, term));
    list.appendChild(h('dd', null, value));
  }
  return list;
}

export function renderDetails(d) {
  const aside = $('details');
  const t = now();
  // A redraw takes the kept contact form out and puts it back; taking a focused input out
  // of the page blurs it, and the agent's next keys would go nowhere. Its focus and caret
  // come back with it.
  const active = aside.contains(document.activeElement) ? document.activeElement : null;
  const caret = active && typeof active.selectionStart === 'number'
    ? [active.selectionStart, active.selectionEnd] : null;
  clear(aside);
  const url = safeUrl(d.page_url);
  let page = d.page_url || null;
  if (url) page = h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, d.page_url);
  const visitor = d.visitor || {};
  aside.appendChild(h('button', {
    type: 'button', class: 'btn quiet details-close', onclick: toggleDetails,
  }, 'Close details'));
  aside.appendChild(h('h2', null, 'Visitor'));
  aside.appendChild(dl([
    ['Name', visitor.name || 'not given'], ['Email', visitor.email], ['Page', page],
    ['Country', d.country], ['Language', d.language],
  ]));
  const contact = contactSection(d);
  if (contact) aside.appendChild(contact);
  aside.appendChild(h('h3', null, 'Conversation'));
  aside.appendChild(dl([
    ['Bot', d.bot], ['Team', d.team], ['Status', statusLabel(d.status)],
    ['Agent', d.assignee ? nameOf(d.assignee) : null], ['Opened', clock(d.opened_at, t)],
    ['Requested', clock(d.requested_at, t)], ['Resolved', clock(d.resolved_at, t)],
    ['Closing note', d.resolve_note], ['Visitor rating', ratingText(d.rating)],
  ]));
  const vars = d.variables || {};
  const keys = Object.keys(vars).sort();
  if (keys.length) {
    aside.appendChild(h('h3', null, 'Variables'));
    aside.appendChild(dl(keys.map((k) => [k, valueText(vars[k])])));
  }
  if ((d.forms || []).length) {
    aside.appendChild(h('h3', null, 'Offline form answers'));
    for (const f of d.forms) {
      const values = f.values || {};
      aside.appendChild(h('p', { class: 'form-head' }, f.form + ' · ' + clock(f.at, t)));
      aside.appendChild(dl(Object.keys(values).map((k) => [k, valueText(values[k])])));
    }
  }
  if ((d.earlier_conversations || []).length) {
    aside.appendChild(h('h3', null, 'Earlier conversations'));
    aside.appendChild(h('ul', { class: 'earlier' }, d.earlier_conversations.map((e) =>
      h('li', null, h('button', { type: 'button', class: 'link', onclick: () => openConv(e.id) },
        clock(e.opened_at, t) + ' · ' + statusLabel(e.status))))));
  }
  const privacy = privacySection(d.visitor);
  if (privacy) aside.appendChild(privacy);
  const narrow = window.matchMedia('(max-width: 1100px)').matches;
  aside.hidden = narrow && !expanded();
  if (active && active !== document.activeElement && aside.contains(active)) {
    active.focus({ preventScroll: true });
    if (caret) active.setSelectionRange(caret[0], caret[1]);
  }
}
