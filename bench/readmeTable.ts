/** Where the README shows the latest `make bench` results: everything between these lines is bench/results.md. */
export const README_MARKERS = { start: '<!-- make bench writes this table from bench/results.md -->', end: '<!-- end of the make bench table -->' };

/** The README with the block between the markers replaced by `results` (bench/results.md's text). */
export function withBenchResults(readme: string, results: string): string {
  const start = readme.indexOf(README_MARKERS.start);
  const end = readme.indexOf(README_MARKERS.end);
  if (start < 0 || end < start) throw new Error(`README.md lacks the bench markers (${README_MARKERS.start} … ${README_MARKERS.end})`);
  return `${readme.slice(0, start + README_MARKERS.start.length)}\n${results.trim()}\n${readme.slice(end)}`;
}
