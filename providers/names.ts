/** Pure name helpers shared by every layer (no imports). */

/** A name part safe in volume names, file names and ids: at most 80 characters of `[A-Za-z0-9_.:-]`. */
export function sanitize(s: string): string {
  return s.replace(/[^A-Za-z0-9_.:-]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 80) || "x";
}
