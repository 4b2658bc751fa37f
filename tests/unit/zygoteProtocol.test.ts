import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineSplitter, MAX_ZYGOTE_LINE, parseZygoteEvent, ZygoteProtocolError } from '../../src/sandbox/warm/zygoteProtocol.js';

test('the zygote events the worker expects parse to themselves', () => {
  assert.deepEqual(parseZygoteEvent('{"ev":"ready"}'), { ev: 'ready' });
  assert.deepEqual(parseZygoteEvent('{"ev":"forked","id":3,"pid":17}'), { ev: 'forked', id: 3, pid: 17 });
  assert.deepEqual(parseZygoteEvent('{"ev":"refused","id":4}'), { ev: 'refused', id: 4 });
  assert.deepEqual(parseZygoteEvent('{"ev":"ahead","pid":18}'), { ev: 'ahead', pid: 18 });
  assert.deepEqual(parseZygoteEvent('{"ev":"went","id":3}'), { ev: 'went', id: 3 });
  assert.deepEqual(parseZygoteEvent('{"ev":"exit","id":3,"code":0,"signal":null,"connected":true}'), {
    ev: 'exit',
    id: 3,
    code: 0,
    signal: null,
    connected: true,
  });
  assert.deepEqual(parseZygoteEvent('{"ev":"exit","id":3,"code":null,"signal":9,"connected":false}'), {
    ev: 'exit',
    id: 3,
    code: null,
    signal: 9,
    connected: false,
  });
});

test('anything else from the zygote is a protocol error, never a crash', () => {
  const bad = [
    'not json',
    '',
    '[]',
    'null',
    '42',
    '"ready"',
    '{}',
    '{"ev":"forked"}',
    '{"ev":"forked","id":"1","pid":2}',
    '{"ev":"forked","id":1,"pid":-1}',
    '{"ev":"forked","id":1,"pid":1.5}',
    '{"ev":"forked","id":0,"pid":2}',
    '{"ev":"refused"}',
    '{"ev":"ahead"}',
    '{"ev":"ahead","pid":0}',
    '{"ev":"ahead","pid":"7"}',
    '{"ev":"refused","id":-1}',
    '{"ev":"went"}',
    '{"ev":"went","id":-3}',
    '{"ev":"exit","id":"1"}',
    '{"ev":"exit","id":1,"code":0,"signal":9,"connected":true}',
    '{"ev":"exit","id":1,"code":null,"signal":null,"connected":true}',
    '{"ev":"exit","id":1,"code":300,"signal":null,"connected":true}',
    '{"ev":"exit","id":1,"code":0,"signal":null,"connected":"yes"}',
    '{"ev":"boom"}',
    '{"ev":{"toString":1}}',
    '{"__proto__":{"ev":"ready"}}',
  ];
  for (const line of bad) assert.throws(() => parseZygoteEvent(line), ZygoteProtocolError, line);
});

test('lines are split across chunks, and an overlong line is refused before it is buffered further', () => {
  const splitter = new LineSplitter();
  assert.deepEqual(splitter.push('{"ev":'), []);
  assert.deepEqual(splitter.push('"ready"}\n{"ev"'), ['{"ev":"ready"}']);
  assert.deepEqual(splitter.push(':"ready"}\n'), ['{"ev":"ready"}']);
  assert.throws(() => new LineSplitter().push('x'.repeat(MAX_ZYGOTE_LINE + 1)), ZygoteProtocolError);
  assert.throws(() => new LineSplitter().push(`${'x'.repeat(MAX_ZYGOTE_LINE + 1)}\n`), ZygoteProtocolError);
  const chunked = new LineSplitter();
  assert.throws(() => {
    for (let i = 0; i < 100; i++) chunked.push('x'.repeat(100));
  }, ZygoteProtocolError);
});
