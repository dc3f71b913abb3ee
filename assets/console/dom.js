/* Building the page. Text from the server, and above all what visitors typed, goes in as
 * text nodes: `h` and `add` never parse a string as HTML. */

export function $(id) {
  return document.getElementById(id);
}

/** An element with attributes (`class`, `on…` listeners, the rest as attributes; null and
 *  false leave one out) and children: elements, or strings that become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  add(el, children);
  return el;
}

/** Appends `kid` (an element, text, or an array of them) to `el`. */
export function add(el, kid) {
  if (kid == null || kid === false) return;
  if (Array.isArray(kid)) {
    for (const k of kid) add(el, k);
    return;
  }
  el.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
}

export function button(label, cls, onclick) {
  return h('button', { type: 'button', class: 'btn ' + (cls || ''), onclick }, label);
}

let toastTimer = null;

/** A message at the top for 7 seconds (an empty one hides it). */
export function toast(text) {
  const el = $('toast');
  el.textContent = text;
  el.hidden = !text;
  clearTimeout(toastTimer);
  if (text) toastTimer = setTimeout(() => { el.hidden = true; }, 7000);
}

/** Says `text` to screen readers. */
export function announce(text) {
  $('announce').textContent = text;
}

/** The row buttons of a conversation in the lists. */
export function rowsOf(id) {
  return document.querySelectorAll('.row[data-id="' + CSS.escape(id) + '"]');
}
