/* The Reports pane: a period's figures in all and per agent (`GET /stats`), the CSV of
 * those figures, and a link to every conversation of the period as CSV. It takes the place
 * of the open conversation. */

import { $, h, add, clear } from './dom.js';
import { API, api, reason } from './api.js';
import { now, nameOf } from './state.js';
import { periodQuery, reportCsv, totalRows } from './figures.js';
import { openId, closeConv } from './conversation.js';

let asked = null; // the query of the last load: older answers are dropped

export function toggleReports() {
  if ($('reports-pane').hidden) openReports();
  else closeReports();
}

function openReports() {
  if (openId) closeConv();
  $('conv-empty').hidden = true;
  $('reports-pane').hidden = false;
  $('reports').setAttribute('aria-expanded', 'true');
  document.body.classList.add('has-open');
  loadReports();
}

export function closeReports() {
  if ($('reports-pane').hidden) return;
  leaveReports();
  if (!openId) {
    $('conv-empty').hidden = false;
    document.body.classList.remove('has-open');
  }
}

/** Hides the pane for a conversation that opens in its place. */
export function leaveReports() {
  $('reports-pane').hidden = true;
  $('reports').setAttribute('aria-expanded', 'false');
}

export async function loadReports() {
  const days = Number($('reports-period').value) || 7;
  const query = periodQuery(days, now(), $('reports-bot').value);
  // Every conversation of the period, one row each (a GET with the console's cookie).
  $('reports-export').href = API + '/conversations.csv' + query;
  $('reports-export').hidden = false;
  asked = query;
  $('reports-status').textContent = 'Loading…';
  let data;
  try {
    data = await api('GET', '/stats' + query);
  } catch (err) {
    if (asked === query) $('reports-status').textContent = reason(err);
    return;
  }
  if (asked !== query) return;
  $('reports-status').textContent = '';
  renderReports(data);
}

/** A row of column headings. */
function headRow(labels) {
  return h('tr', null, labels.map((label) => h('th', { scope: 'col' }, label)));
}

/** A row: its heading, then its figures. */
function bodyRow([label, ...figures]) {
  return h('tr', null, h('th', { scope: 'row' }, label), figures.map((f) => h('td', null, f)));
}

function renderReports(data) {
  const select = $('reports-bot');
  for (const id of Object.keys(data.bots || {})) {
    if (!select.querySelector('option[value="' + CSS.escape(id) + '"]')) {
      add(select, h('option', { value: id }, id));
    }
  }
  const body = $('reports-body');
  clear(body);
  add(body, h('table', { class: 'report', 'aria-label': 'Totals' },
    h('tbody', null, totalRows(data.total || {}).map(bodyRow))));
  const agents = data.agents || [];
  if (agents.length) {
    add(body, h('h3', null, 'By agent'));
    add(body, h('table', { class: 'report', 'aria-label': 'By agent' },
      h('thead', null, headRow(['Agent', 'Accepted', 'Resolved', 'Rated good', 'Rated bad'])),
      h('tbody', null, agents.map((a) => {
        const r = a.ratings || {};
        return bodyRow([
          nameOf(a.agent), String(a.accepted || 0), String(a.resolved || 0),
          String(r.good || 0), String(r.bad || 0),
        ]);
      }))));
  }
  const link = $('reports-csv');
  link.href = 'data:text/csv;charset=utf-8,' + encodeURIComponent(reportCsv(data));
  link.hidden = false;
}

export function resetReports() {
  closeReports();
  clear($('reports-body'));
  asked = null;
}
