/* livechat agent console: the entry point, loaded by `templates/pages/console.html` as
 * `<script type="module">`. Plain JavaScript modules, no build step, no dependency.
 *
 * Commands go over HTTP (api.js), events arrive over one WebSocket (stream.js, events.js).
 * Every string from the server goes into the page as text (dom.js), never as HTML: a
 * visitor's `<img onerror=…>` stays text.
 *
 * The modules import each other's functions freely (lists.js and conversation.js call each
 * other); that is safe because at import time a module only sets up its own variables, and
 * only this one calls anything. The pure modules (format, sections, canned, figures,
 * resume) touch no DOM, import only each other, and are unit-tested in `tests/` with
 * `node --test`: logic that can live there, should.
 *
 * Nothing is put on `window`: the browser tests in `tests/console.rs` watch the page from
 * outside (they wrap `window.WebSocket`, which stream.js looks up at each connect). */

import { $ } from './dom.js';
import { onSignIn, onSignOut, onAcceptingChange, onVideoChange, resume } from './session.js';
import { toggleSound, unlockAudio } from './sound.js';
import { search, setView } from './lists.js';
import { allowAlerts, onAlertSwitch, toggleAlerts } from './notifications.js';
import { markOpenRead } from './reads.js';
import { openLinked } from './links.js';
import { conv, openId, closeConv } from './conversation.js';
import { hideForms, onResolve, onTransfer } from './actions.js';
import { detailsOpen, renderDetails, toggleDetails } from './details.js';
import {
  closePicker, onComposerInput, onComposerKey, onSend, renderNoteMode,
} from './composer.js';
import { closeReports, loadReports, toggleReports } from './reports.js';
import { setupAttachments } from './attachments.js';
import { onVisitorNoticeSwitch } from './visitors.js';

function on(id, type, handler) {
  $(id).addEventListener(type, handler);
}

function wire() {
  on('signin-form', 'submit', onSignIn);
  on('signout', 'click', onSignOut);
  on('accepting', 'change', onAcceptingChange);
  on('video-calls', 'change', onVideoChange);
  on('sound', 'click', toggleSound);
  on('banner-close', 'click', () => { $('banner').hidden = true; });
  on('alerts', 'click', toggleAlerts);
  on('alerts-allow', 'click', allowAlerts);
  for (const kind of ['request', 'transfer', 'message']) on('alerts-' + kind, 'change', onAlertSwitch);
  on('alerts-visitor', 'change', onVisitorNoticeSwitch);
  for (const view of ['all', 'unread', 'done']) on('view-' + view, 'click', () => setView(view));
  window.addEventListener('hashchange', openLinked);
  // Back in view: what arrived while the tab was hidden is read now.
  document.addEventListener('visibilitychange', markOpenRead);

  let searchTimer = null;
  on('search', 'input', () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => search($('search').value.trim()), 250);
  });
  on('search-form', 'submit', (ev) => {
    ev.preventDefault();
    clearTimeout(searchTimer);
    search($('search').value.trim());
  });

  on('back', 'click', () => {
    const id = openId;
    closeConv();
    history.replaceState(null, '', location.pathname + location.search);
    const row = id && document.querySelector('.row[data-id="' + CSS.escape(id) + '"]');
    if (row) row.focus();
  });
  on('reports', 'click', toggleReports);
  on('reports-back', 'click', closeReports);
  on('reports-period', 'change', loadReports);
  on('reports-bot', 'change', loadReports);
  on('reports-form', 'submit', (ev) => {
    ev.preventDefault();
    loadReports();
  });
  on('details-toggle', 'click', toggleDetails);
  on('resolve-form', 'submit', onResolve);
  on('resolve-cancel', 'click', hideForms);
  on('transfer-form', 'submit', onTransfer);
  on('transfer-cancel', 'click', hideForms);
  on('composer', 'submit', onSend);
  on('composer-text', 'input', onComposerInput);
  on('composer-text', 'keydown', onComposerKey);
  on('composer-text', 'blur', () => setTimeout(closePicker, 150));
  on('note-mode', 'change', renderNoteMode);
  setupAttachments();

  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || $('conv-pane').hidden) return;
    hideForms();
    if (detailsOpen()) toggleDetails();
  });
  // Browsers let a page make sound only after a gesture: any click or key unlocks it.
  document.addEventListener('pointerdown', unlockAudio);
  document.addEventListener('keydown', unlockAudio);
  window.addEventListener('resize', () => {
    if (conv) renderDetails(conv);
  });
}

// A module runs after the document is parsed, like a deferred script.
wire();
resume();
