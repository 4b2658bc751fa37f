import type { Language } from './language.js';

/** A language the worker knows how to offer, and how to find its toolchain on this host. */
export interface LanguageOffer {
  name: string;
  /** The language on this host; throws (any error, its message the reason) when the host lacks its toolchain. */
  resolve(): Promise<Language>;
}

export class LanguageUnavailableError extends Error {
  override name = 'LanguageUnavailableError';
}

/**
 * The languages a worker offers, in `offers` order (the first is the default): those `wanted`
 * names (WORKER_LANGUAGES; each must be there), or else the first offer (python, the reference's
 * default; it must be there) and every other whose toolchain the host has. `skipped` says why
 * the others are not offered.
 */
export async function resolveLanguages(
  offers: readonly LanguageOffer[],
  wanted: readonly string[] | undefined,
): Promise<{ languages: Language[]; skipped: Record<string, string> }> {
  const required = new Set(wanted ?? offers.slice(0, 1).map((o) => o.name));
  const tried = offers.filter((o) => wanted === undefined || required.has(o.name));
  for (const name of required)
    if (!offers.some((o) => o.name === name)) throw new LanguageUnavailableError(`WORKER_LANGUAGES: this worker has no ${name} support`);
  const results = await Promise.allSettled(tried.map((o) => o.resolve()));
  const languages: Language[] = [];
  const skipped: Record<string, string> = {};
  results.forEach((result, i) => {
    const offer = tried[i]!; // one result per offer tried
    if (result.status === 'fulfilled') {
      languages.push(result.value);
      return;
    }
    const reason = result.reason instanceof Error ? result.reason.message : String(result.reason);
    if (required.has(offer.name)) throw new LanguageUnavailableError(reason, { cause: result.reason });
    skipped[offer.name] = reason;
  });
  return { languages, skipped };
}
