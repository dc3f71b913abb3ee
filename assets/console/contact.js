/* Contact fields in the details pane: the bot's `[[contact_field]]`s with the visitor's
 * values, editable by the agent (`PUT …/contact`). Values are the visitor's words: they go
 * into inputs as values and into the page as text nodes only. The form survives the pane's
 * redraws while the agent is editing, so a new message does not wipe what they typed. */

import { h } from './dom.js';
import { api, reason } from './api.js';

const INPUT_TYPES = { text: 'text', email: 'email', number: 'text', url: 'url', date: 'date' };

// The form of the open conversation while it holds unsaved edits.
let kept = null; // { id, el }

function input(f, id) {
  const value = f.value == null ? '' : f.value;
  if (f.type === 'select') {
    const el = h('select', { id, name: f.name },
      h('option', { value: '' }, '—'),
      (f.options || []).map((o) => h('option', { value: o }, o)));
    el.value = value;
    return el;
  }
  const el = h('input', {
    id, name: f.name, type: INPUT_TYPES[f.type] || 'text', autocomplete: 'off',
    inputmode: f.type === 'number' ? 'decimal' : null,
  });
  el.value = value;
  return el;
}

/** The Contact section of the details of conversation `d`, or null when its bot declares
 *  no contact fields. */
export function contactSection(d) {
  const fields = d.contact || [];
  if (!fields.length) return null;
  if (kept && kept.id === d.id) return kept.el;
  kept = null;
  const status = h('p', { class: 'contact-status', role: 'status' });
  // Each field's input and what it showed when last drawn or saved (a field's name may be
  // any word, `length` too: never looked up through `form.elements`). Only what the agent
  // changed is sent, so a stored value the input cannot show (a select's option that is
  // gone) is not cleared by saving another field.
  const inputs = new Map();
  const rows = fields.map((f) => {
    const id = 'contact-' + f.name;
    const el = input(f, id);
    inputs.set(f.name, { el, shown: el.value });
    return h('div', { class: 'contact-row' },
      h('label', { for: id }, f.label || f.name), el);
  });
  const form = h('form', { class: 'contact-form', novalidate: true }, rows,
    h('button', { type: 'submit', class: 'btn' }, 'Save contact'), status);
  const section = h('section', { class: 'contact', 'aria-label': 'Contact' },
    h('h3', null, 'Contact'), form);
  form.addEventListener('input', () => {
    kept = { id: d.id, el: section };
    status.textContent = '';
  });
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const changed = {};
    for (const [name, { el, shown }] of inputs) {
      if (el.value !== shown) changed[name] = el.value;
    }
    if (!Object.keys(changed).length) {
      status.textContent = 'Nothing changed.';
      return;
    }
    try {
      const res = await api('PUT', '/conversations/' + encodeURIComponent(d.id) + '/contact',
        { fields: changed });
      d.contact = res.contact;
      for (const f of res.contact) {
        const one = inputs.get(f.name);
        if (!one) continue;
        one.el.value = f.value == null ? '' : f.value;
        one.shown = one.el.value;
      }
      fields.splice(0, fields.length, ...res.contact);
      // Kept (with the server's values) so that "Saved." outlives the redraw it causes.
      kept = { id: d.id, el: section };
      status.textContent = 'Saved.';
    } catch (err) {
      status.textContent = err.code === 'invalid_contact_field' ? err.message : reason(err);
    }
  });
  return section;
}
