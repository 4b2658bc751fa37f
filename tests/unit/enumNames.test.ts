import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createFileRegistry, fromBinary, type DescMessage } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import * as common from '../../gen/codegen/v1/common.js';
import { ENUM_FIELDS, enumNames } from '../../src/client/enumNames.js';

// The CLI's --json writes enums by name through ENUM_FIELDS, keyed by field name: checked here
// against the protos themselves (the descriptor set gen/ is built with).
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(new URL('../../../gen/codegen.binpb', import.meta.url))));
const messages = [...registry].filter((type): type is DescMessage => type.kind === 'message');

test('every enum field of the API is written by name, with its own enum', () => {
  const enumFields = messages.flatMap((m) =>
    m.fields
      .filter((f) => f.fieldKind === 'enum' || (f.fieldKind === 'list' && f.listKind === 'enum') || (f.fieldKind === 'map' && f.mapKind === 'enum'))
      .map((f) => ({ where: `${m.typeName}.${f.name}`, key: f.jsonName, name: f.enum!.name })),
  );
  assert.ok(enumFields.length >= 7, 'the protos have enum fields');
  for (const field of enumFields)
    assert.equal(ENUM_FIELDS[field.key], (common as Record<string, unknown>)[field.name], `${field.where} (${field.name}) is in ENUM_FIELDS`);
});

test('a field of the same name that is no enum is never a number, so it is left alone', () => {
  for (const m of messages) {
    for (const f of m.fields) {
      if (!Object.hasOwn(ENUM_FIELDS, f.jsonName) || f.fieldKind === 'enum') continue;
      assert.ok(f.fieldKind === 'scalar' && (f.scalar === 9 /* string */ || f.scalar === 8) /* bool */, `${m.typeName}.${f.name} would be taken for an enum`);
    }
  }
});

test('the replacer names enums wherever they are nested, and leaves everything else', () => {
  const value = {
    sessions: [{ state: 2, activeTasks: 2 }],
    result: { status: 3, exitCode: 137 },
    log: { level: 4 },
    cancel: { state: 'canceled' },
    unknown: { status: 99 },
  };
  assert.deepEqual(JSON.parse(JSON.stringify(value, enumNames)), {
    sessions: [{ state: 'SESSION_STATE_READY', activeTasks: 2 }],
    result: { status: 'STATUS_TIMEOUT', exitCode: 137 },
    log: { level: 'LOG_LEVEL_ERROR' },
    cancel: { state: 'canceled' },
    unknown: { status: 99 },
  });
});
