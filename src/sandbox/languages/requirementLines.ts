/** pkg.install's `requirements` text as lines: blank lines and `#` comments (whole-line or after a space) dropped. */
export function requirementLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((line) => line.replace(/(^|\s)#.*$/, '').trim())
    .filter((line) => line !== '');
}
