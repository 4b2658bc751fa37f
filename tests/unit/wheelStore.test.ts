import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WheelStore } from '../../src/sandbox/languages/python/wheelStore.js';

test('a wheel store key is a digest: bounded whatever the list, order-insensitive, per index', () => {
  const huge = [`alpha${' '.repeat(200_000)}>=0.1`, 'beta'];
  assert.match(WheelStore.key(huge, undefined), /^[0-9a-f]{64}$/);
  assert.equal(WheelStore.key(['a', 'b'], 'http://i/'), WheelStore.key(['b', 'a'], 'http://i/'));
  assert.notEqual(WheelStore.key(['a'], 'http://i/'), WheelStore.key(['a'], 'http://j/'));
  assert.notEqual(WheelStore.key(['a'], undefined), WheelStore.key(['A'], undefined));
});
