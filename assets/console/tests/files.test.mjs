import { test } from 'node:test';
import assert from 'node:assert/strict';

import { fileSize } from '../format.js';

test('fileSize rounds to bytes, kilobytes or megabytes', () => {
  assert.equal(fileSize(0), '0 B');
  assert.equal(fileSize(999), '999 B');
  assert.equal(fileSize(1500), '2 KB');
  assert.equal(fileSize(10_000_000), '10.0 MB');
  assert.equal(fileSize(undefined), '0 B');
  assert.equal(fileSize('x'), '0 B');
});
