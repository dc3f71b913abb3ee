/* Canned responses: `#word` before the caret opens the picker, which offers the responses
 * of this bot whose shortcut contains the word, and a chosen one is filled in. Pure. */

import { includes } from './format.js';

/** How many responses the picker offers at once. */
export const PICKER_SIZE = 8;

/** The `#word` that ends `before` (the text up to the caret), if any: the word (possibly
 *  empty) and where its `#` starts. A `#` inside a word (`issue#4`) opens nothing. */
export function shortcutAt(before) {
  const m = /(^|\s)#([\w.-]*)$/.exec(before);
  if (!m) return null;
  return { word: m[2], start: before.length - m[2].length - 1 };
}

/** The responses for `bot` whose shortcut contains `word` (any case): those that start
 *  with it first, then by shortcut; at most `PICKER_SIZE`. */
export function matchResponses(responses, word, bot) {
  const w = word.toLowerCase();
  const at = (r) => r.shortcut.toLowerCase().indexOf(w);
  return responses
    .filter((r) => (!r.bots || !r.bots.length || includes(r.bots, bot)) && at(r) >= 0)
    .sort((a, b) => (at(b) === 0) - (at(a) === 0) || a.shortcut.localeCompare(b.shortcut))
    .slice(0, PICKER_SIZE);
}

const PLACEHOLDER =
  /\{\{\s*([\w.]+)\s*(?:\|\s*default\(\s*(?:'([^']*)'|"([^"]*)")\s*\)\s*)?\}\}/g;

/** Fills `{{ agent.name }}`, `{{ visitor.name | default('there') }}`… as the server's
 *  templates would. An unknown or empty value gives its default, or nothing. */
export function fillResponse(template, agent, conv) {
  const visitor = (conv && conv.visitor) || {};
  const values = {
    'agent.name': agent && agent.name,
    'agent.email': agent && agent.email,
    'visitor.name': visitor.name,
    'visitor.email': visitor.email,
    'bot.name': conv && conv.bot,
    'bot.id': conv && conv.bot,
  };
  return String(template).replace(PLACEHOLDER, (all, key, single, double) => {
    const value = values[key];
    if (value) return value;
    return single != null ? single : double != null ? double : '';
  });
}
