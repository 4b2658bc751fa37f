import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Language } from '../../src/sandbox/languages/language.js';
import { LanguageUnavailableError, resolveLanguages, type LanguageOffer } from '../../src/sandbox/languages/languages.js';

const offer = (name: string, missing?: string): LanguageOffer => ({
  name,
  resolve: () => (missing ? Promise.reject(new Error(missing)) : Promise.resolve({ name } as Language)),
});
const names = (languages: Language[]) => languages.map((l) => l.name);

test('unset WORKER_LANGUAGES: python (required) and every other language the host has, in offer order; the rest say why not', async () => {
  const { languages, skipped } = await resolveLanguages([offer('python'), offer('node'), offer('go', 'no go toolchain on PATH')], undefined);
  assert.deepEqual(names(languages), ['python', 'node']);
  assert.deepEqual(skipped, { go: 'no go toolchain on PATH' });
  await assert.rejects(resolveLanguages([offer('python', "cannot run the Python interpreter 'x'"), offer('node')], undefined), (err: Error) => {
    return err instanceof LanguageUnavailableError && err.message === "cannot run the Python interpreter 'x'";
  });
});

test('WORKER_LANGUAGES: exactly those, each required; one the host lacks (or the worker does not know) refuses the start', async () => {
  const offers = [offer('python', 'no python'), offer('node'), offer('go')];
  assert.deepEqual(names((await resolveLanguages(offers, ['go', 'node'])).languages), ['node', 'go'], 'offer order: the first is the default');
  await assert.rejects(resolveLanguages(offers, ['node', 'python']), /no python/);
  await assert.rejects(resolveLanguages(offers, ['ruby']), /WORKER_LANGUAGES: this worker has no ruby support/);
});
