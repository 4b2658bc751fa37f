/** The tightest of several limits where 0 (or undefined) means "none"; undefined when none is set. */
export function smallestPositive(...values: (number | undefined)[]): number | undefined {
  const positive = values.filter((v): v is number => v !== undefined && v > 0);
  return positive.length > 0 ? Math.min(...positive) : undefined;
}
