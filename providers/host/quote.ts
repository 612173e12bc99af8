/**
 * The one function that turns argv into a string for a remote POSIX shell (SSH runs
 * every command through the login shell). Each argument becomes a single-quoted word;
 * an embedded single quote becomes `'\''`. NUL bytes cannot be passed in argv at all
 * and are rejected.
 */
export function quoteArg(arg: string): string {
  if (typeof arg !== "string") throw new TypeError(`argument must be a string, got ${typeof arg}`);
  if (arg.includes("\0")) throw new Error("argument contains a NUL byte");
  if (arg !== "" && /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return "'" + arg.replace(/'/g, "'\\''") + "'";
}

export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error("empty command");
  return argv.map(quoteArg).join(" ");
}
