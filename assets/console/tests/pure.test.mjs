// The pure modules stay pure: what they say in code (comments aside) names no browser
// object, and they import only each other. Logic without the DOM belongs there.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const PURE = ['alerts.js', 'canned.js', 'figures.js', 'format.js', 'resume.js', 'sections.js'];
const BROWSER =
  /\b(document|window|localStorage|sessionStorage|location|navigator|fetch|WebSocket|setTimeout|setInterval)\b/;

function code(name) {
  const text = readFileSync(new URL('../' + name, import.meta.url), 'utf8');
  return text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/\/\/.*$/gm, '');
}

for (const name of PURE) {
  test(`${name} names no browser object and imports only pure modules`, () => {
    const body = code(name);
    assert.doesNotMatch(body, BROWSER);
    for (const [, spec] of body.matchAll(/from\s+'([^']+)'/g)) {
      assert.ok(PURE.includes(spec.replace('./', '')), `${name} imports ${spec}`);
    }
  });
}

test('the check sees a browser object when there is one', () => {
  assert.match("el = document.getElementById('x');", BROWSER);
  assert.doesNotMatch(code('format.js'), /\/\*/);
});
