/* A visitor's personal data, in the details panel, for admins only: export everything
 * stored about them as a JSON file, or erase them for good after a confirmation. Agents
 * never see these buttons (and the API refuses them with `403 not_allowed`). */

import { h, button, toast, announce } from './dom.js';
import { isAdmin } from './state.js';
import { api, reason } from './api.js';
import { closeConv } from './conversation.js';
import { scheduleRefresh } from './lists.js';

let confirming = null; // the visitor id whose erase waits for a confirmation

/** The "Visitor data" part of the details panel, or null for an agent or no visitor. */
export function privacySection(visitor) {
  if (!isAdmin() || !visitor || !visitor.id) return null;
  const id = visitor.id;
  const part = h('div', { class: 'privacy' }, h('h3', null, 'Visitor data'),
    h('p', { class: 'privacy-id' }, 'Visitor id: ', h('code', null, id)));
  if (confirming === id) {
    part.appendChild(h('p', { class: 'privacy-warning', role: 'alert' },
      'Erase ' + (visitor.name || visitor.email || 'this visitor') + ' and everything about '
      + 'them: every conversation, message, form and mail? This cannot be undone.'));
    part.appendChild(h('div', { class: 'privacy-actions' },
      button('Erase for good', 'primary privacy-erase-confirm', () => erase(id)),
      button('Cancel', 'quiet privacy-erase-cancel', () => ask(null))));
  } else {
    part.appendChild(h('div', { class: 'privacy-actions' },
      button('Export data', 'quiet privacy-export', () => exportData(id)),
      button('Erase visitor…', 'quiet privacy-erase', () => ask(id))));
  }
  return part;
}

function ask(id) {
  confirming = id;
  // The panel is drawn from the open conversation: draw it again with the new state.
  document.dispatchEvent(new CustomEvent('livechat:details'));
}

async function exportData(id) {
  try {
    const data = await api('GET', '/visitors/' + encodeURIComponent(id) + '/export');
    const blob = new Blob([JSON.stringify(data, null, 2)], { type: 'application/json' });
    const url = URL.createObjectURL(blob);
    const link = h('a', { href: url, download: 'visitor-' + id + '.json', hidden: true });
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    announce('Visitor data exported.');
  } catch (e) {
    toast(reason(e));
  }
}

async function erase(id) {
  try {
    await api('DELETE', '/visitors/' + encodeURIComponent(id));
    confirming = null;
    closeConv();
    toast('The visitor and everything about them were erased.');
    scheduleRefresh(0);
  } catch (e) {
    toast(reason(e));
  }
}
