/* What each event of the stream changes: presence and config reloads here, the rest in
 * the lists (refreshed) and in the open conversation (applied at once). */

import { $, toast } from './dom.js';
import { session, isMe } from './state.js';
import { ms } from './format.js';
import { scheduleRefresh, convs } from './lists.js';
import { onRead } from './reads.js';
import { notifyFrame } from './notifications.js';
import { openId, applyToOpen, refreshOpen, closeConv } from './conversation.js';
import { onTyping } from './composer.js';
import { loadAgents, loadResponses, setAccepting, setVideo } from './session.js';
import { onCallFrame } from './call.js';
import { loadVisitors, onVisitorFrame } from './visitors.js';

/** Events older than this before the console started are history, not news to notify. */
const REPLAY_SLACK_MS = 5000;

export function onFrame(f) {
  const data = f.data || {};
  switch (f.type) {
    case 'typing':
      onTyping(f);
      return;
    case 'agent.presence':
      for (const a of session.agents) {
        if (a.email !== data.agent) continue;
        a.online = data.online;
        a.accepting = data.accepting;
        a.active_chats = data.active_chats;
        a.max_chats = data.max_chats;
      }
      if (isMe(data.agent)) setAccepting(data.accepting);
      if (isMe(data.agent)) setVideo(data.video !== false);
      return;
    case 'conversation.read':
      onRead(f);
      return;
    case 'visitor.active':
    case 'visitor.left':
      onVisitorFrame(f, (ms(f.at) || 0) >= session.startedAt + session.skew - REPLAY_SLACK_MS);
      return;
    case 'config.reloaded':
      $('banner-text').textContent = 'Config updated to revision ' + data.revision;
      $('banner').hidden = false;
      loadResponses();
      loadAgents();
      scheduleRefresh();
      return;
  }
  const id = f.conversation_id;
  if (!id) return;
  if (f.type === 'conversation.erased' || f.type === 'redacted') {
    // An admin erased the visitor (live), or the replay passes a tombstone of an erased
    // conversation: nothing to show, the lists drop it.
    if (f.type === 'conversation.erased' && id === openId) {
      closeConv();
      toast('That conversation was erased.');
    }
    scheduleRefresh();
    return;
  }
  const live = (ms(f.at) || 0) >= session.startedAt + session.skew - REPLAY_SLACK_MS;
  if (f.type === 'signal' || f.type.startsWith('video.')) onCallFrame(f, live);
  if (f.type === 'signal') return;
  if (live) notifyFrame(f, convs.get(id));
  if (id === openId) applyToOpen(f);
  scheduleRefresh();
}

/** The socket is back after a failure: the replay brings the events, a refresh the rest. */
export function onReconnect() {
  scheduleRefresh(0);
  refreshOpen();
  loadAgents();
  loadVisitors();
}
