/**
 * quoteArg/quoteArgv: the one function that turns argv into a string for a remote POSIX
 * shell. Every string must reach the command as exactly one argument, byte for byte, and
 * nothing in it may ever run. Checked here through real local shells (dash as `sh`, and
 * bash, root's login shell); test/integration/ssh-host.test.ts repeats it over SSH.
 */
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { quoteArg, quoteArgv } from "../../providers/host/quote";

const run = promisify(execFile);

/** Files a failed quoting would create; none may exist after a test. */
const MARK = `/tmp/pwned-${process.pid}-${Date.now()}`;

const TEN_KB_MIX = "x'\"$`\\;|&*?~ \n\t日(){}<>#!%".repeat(500).slice(0, 10 * 1024);
const TEN_KB_QUOTES = "'".repeat(10 * 1024);

const HOSTILE: Record<string, string> = {
  // If quoting ever broke, GNU rm would still refuse `rm -rf /` (--preserve-root).
  "command separator": "tank/x; rm -rf /",
  "command substitution": `$(touch ${MARK}-subst)`,
  backticks: "`touch " + MARK + "-backtick`",
  "single quote breakout": `x'; touch ${MARK}-single; echo '`,
  "double quote breakout": `x"; touch ${MARK}-double; echo "`,
  "newline then command": `a\ntouch ${MARK}-newline`,
  "carriage return": "a\r\nb",
  pipe: `a | touch ${MARK}-pipe`,
  "and-list": `a && touch ${MARK}-and`,
  redirect: `a>${MARK}-redirect`,
  "here-string-ish": "<<EOF",
  background: `sleep 0 & touch ${MARK}-bg`,
  "dot-dot": "..",
  "path traversal": "../../etc/passwd",
  glob: "*",
  "glob path": "/*",
  "glob classes": "[a-z]?{a,b}",
  tilde: "~",
  "tilde user": "~root",
  "leading dash": "-rf",
  "double dash": "--help",
  "empty string": "",
  space: " ",
  tab: "\t",
  "several spaces": "a b  c",
  backslash: "\\",
  "backslash quote": "\\'",
  "lone single quote": "'",
  "lone double quote": '"',
  "quoted empty": "''",
  "the escape sequence itself": "'\\''",
  "variable": "$HOME",
  "IFS": "${IFS}",
  arithmetic: "$((1+1))",
  "history expansion": "!!",
  comment: "#not a comment",
  "printf format": "%s%n%d",
  unicode: "ünïcödé 日本語 🦄",
  "right-to-left override": "\u202egnp.exe",
  "terminal escape": "\x1b[31mred\x1b[0m",
  "non-breaking space": "a\u00a0b",
  "10 kB mixed": TEN_KB_MIX,
  "10 kB of single quotes": TEN_KB_QUOTES,
};

/** argv -> what `printf '%s\0'` prints for it in `shell`, split back into strings. */
async function echoBack(shell: "sh" | "bash", argv: string[]): Promise<string[]> {
  const { stdout } = await run(shell, ["-c", 'printf "%s\\0" ' + quoteArgv(argv)], {
    encoding: "buffer",
    maxBuffer: 16 * 1024 * 1024,
  });
  const parts = stdout.toString("utf8").split("\0");
  expect(parts.pop()).toBe(""); // every argument is NUL-terminated
  return parts;
}

function markerFiles(): string[] {
  const base = MARK.slice("/tmp/".length);
  return fs.readdirSync("/tmp").filter((f) => f.startsWith(base));
}

/** A small deterministic PRNG (mulberry32), so a failing fuzz case can be replayed. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe("quoteArg", () => {
  it("leaves plain words (dataset names, paths, options) unquoted", () => {
    for (const w of ["tank/data@snap-1", "/usr/lib/postgresql/15/bin/pg_ctl", "-H", "-o", "a=b", "name,used", "100%", "x+y:z"]) {
      expect(quoteArg(w)).toBe(w);
    }
  });

  it("single-quotes everything else, turning an embedded ' into '\\''", () => {
    expect(quoteArg("")).toBe("''");
    expect(quoteArg("a b")).toBe("'a b'");
    expect(quoteArg("it's")).toBe("'it'\\''s'");
    expect(quoteArg("$(id)")).toBe("'$(id)'");
    expect(quoteArg("~")).toBe("'~'");
    expect(quoteArg("*")).toBe("'*'");
  });

  it.each(Object.entries(HOSTILE))("quotes %s as one inert shell word", (_name, s) => {
    const q = quoteArg(s);
    if (q === s) {
      // Only strings made of characters no shell treats specially may stay bare.
      expect(s).toMatch(/^[A-Za-z0-9_@%+=:,./-]+$/);
    } else {
      // '...' where a single quote only ever appears as the '\'' sequence: nothing but
      // those escaped quotes is outside the quotes, and the pieces rebuild the string.
      expect(q.length).toBeGreaterThanOrEqual(2);
      expect(q.startsWith("'") && q.endsWith("'")).toBe(true);
      const pieces = q.slice(1, -1).split("'\\''");
      expect(pieces.some((p) => p.includes("'"))).toBe(false);
      expect(pieces.join("'")).toBe(s);
    }
  });

  it("rejects NUL bytes (argv cannot carry them) and non-strings", () => {
    expect(() => quoteArg("a\0b")).toThrow(/NUL/);
    expect(() => quoteArg("\0")).toThrow(/NUL/);
    expect(() => quoteArgv(["ok", "bad\0"])).toThrow(/NUL/);
    expect(() => quoteArg(42 as unknown as string)).toThrow(TypeError);
    expect(() => quoteArg(undefined as unknown as string)).toThrow(TypeError);
  });

  it("rejects an empty command", () => {
    expect(() => quoteArgv([])).toThrow(/empty command/);
  });
});

describe("quoteArgv through a real shell", () => {
  for (const shell of ["sh", "bash"] as const) {
    it(`${shell}: every hostile string comes back as one identical argument, nothing runs`, async () => {
      const argv = Object.values(HOSTILE);
      expect(await echoBack(shell, argv)).toEqual(argv);
      expect(markerFiles()).toEqual([]);
    });

    it(`${shell}: each hostile string alone`, async () => {
      for (const [name, s] of Object.entries(HOSTILE)) {
        expect(await echoBack(shell, [s]), name).toEqual([s]);
      }
      expect(markerFiles()).toEqual([]);
    });
  }

  it("round-trips 400 random strings of shell metacharacters (seeded fuzz)", async () => {
    const alphabet = [..."'\"`$\\;|&*?~!#%^(){}[]<>=,.-_/ \t\nab09", "日", "ü", "🦄", "\u00a0", "\r"];
    const rnd = prng(20261124);
    const argv = Array.from({ length: 400 }, () =>
      Array.from({ length: Math.floor(rnd() * 24) }, () => alphabet[Math.floor(rnd() * alphabet.length)]).join(""),
    );
    expect(await echoBack("sh", argv)).toEqual(argv);
    expect(await echoBack("bash", argv)).toEqual(argv);
  });

  it("a leading '-' stays an argument of the command (option injection is the caller's job: use --)", async () => {
    // printf's first argument is our format, so "-n" reaches it as data.
    expect(await echoBack("sh", ["-n", "--", "-e"])).toEqual(["-n", "--", "-e"]);
  });

  it("created no marker file in /tmp", () => {
    expect(markerFiles()).toEqual([]);
  });
});
