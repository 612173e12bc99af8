/**
 * Setup's apt-source step (scripts/setup-apt-sources.sh), the real script run by bash on
 * sample apt layouts in temporary directories: it must find the Debian mirror this machine
 * uses for bookworm, whatever the layout (deb822 only, as on a new machine; a legacy
 * sources.list only; both), and add bullseye (for postgresql-13) from it, pinned low. With
 * no mirror at all it must stop, say which files apt read and what to add, and write nothing.
 *
 * Needs only apt-get (it asks `apt-get indextargets` what apt would fetch); nothing is
 * downloaded and nothing under /etc/apt is read for sources or written.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

const script = resolve(__dirname, "../../scripts/setup-apt-sources.sh");
const hasAptGet = spawnSync("apt-get", ["--version"], { stdio: "ignore" }).status === 0;

/** The shape of a new machine's /etc/apt/sources.list.d/debian.sources (Debian 12 cloud images). */
const REAL_DEBIAN_SOURCES = `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# http://snapshot.debian.org/archive/debian-security/20250520T000000Z
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
`;

/** The machine's own file when it has one (the real shape), else the copy above. */
function debianSources(): string {
  const real = "/etc/apt/sources.list.d/debian.sources";
  if (existsSync(real)) {
    const text = readFileSync(real, "utf8");
    if (/^URIs:/m.test(text)) return text;
  }
  return REAL_DEBIAN_SOURCES;
}

const LEGACY_LIST = `# deb http://snapshot.debian.org/archive/debian/20250520T000000Z bookworm main
deb http://mirror.example.org/debian/ bookworm main contrib
deb http://security.debian.org/debian-security bookworm-security main
deb http://mirror.example.org/debian/ bookworm-updates main
`;

interface Layout {
  dir: string;
  list: string;
  parts: string;
  prefs: string;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function layout(files: { list?: string; parts?: Record<string, string> }): Layout {
  const dir = mkdtempSync(join(tmpdir(), "understudy-apt-"));
  dirs.push(dir);
  const l: Layout = { dir, list: join(dir, "sources.list"), parts: join(dir, "sources.list.d"), prefs: join(dir, "preferences.d") };
  mkdirSync(l.parts);
  if (files.list !== undefined) writeFileSync(l.list, files.list);
  for (const [name, text] of Object.entries(files.parts ?? {})) writeFileSync(join(l.parts, name), text);
  return l;
}

function run(l: Layout): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync("bash", [script], {
    encoding: "utf8",
    env: {
      ...process.env,
      UNDERSTUDY_APT_SOURCE_LIST: l.list,
      UNDERSTUDY_APT_SOURCE_PARTS: l.parts,
      UNDERSTUDY_APT_PREFERENCES_PARTS: l.prefs,
    },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const ours = (l: Layout) => join(l.parts, "understudy-bullseye.sources");
const pin = (l: Layout) => join(l.prefs, "understudy-bullseye.pref");
const read = (p: string) => readFileSync(p, "utf8");

function expectBullseyeFrom(l: Layout, mirror: RegExp) {
  const src = read(ours(l));
  const uris = src.split("\n").filter((line) => line.startsWith("URIs:"));
  expect(uris).toHaveLength(1);
  expect(uris[0]).toMatch(mirror);
  expect(src).toMatch(/^Types: deb$/m);
  expect(src).toMatch(/^Suites: bullseye$/m);
  expect(src).toMatch(/^Components: main$/m);
  expect(src).toMatch(/^Signed-By: \/usr\/share\/keyrings\/debian-archive-keyring\.gpg$/m);
  expectPin(l);
}

function expectPin(l: Layout) {
  const p = read(pin(l));
  expect(p).toMatch(/^Package: \*$/m);
  expect(p).toMatch(/^Pin: release n=bullseye$/m);
  expect(p).toMatch(/^Pin-Priority: 100$/m);
}

describe.skipIf(!hasAptGet)("setup's apt-source step on sample layouts (needs apt-get)", () => {
  it("deb822 only, the real shape (a snapshot URL in a comment): bullseye from the URIs: line", () => {
    const l = layout({ parts: { "debian.sources": debianSources() } });
    const r = run(l);
    expect(r.status, r.stderr).toBe(0);
    expectBullseyeFrom(l, /^URIs: http:\/\/deb\.debian\.org\/debian$/);
    expect(read(ours(l))).not.toMatch(/snapshot|security/);
    // Nothing else is written: no sources.list appears, no Default-Release anywhere.
    expect(existsSync(l.list)).toBe(false);
    expect(readdirSync(l.parts).sort()).toEqual(["debian.sources", "understudy-bullseye.sources"]);
    expect(readdirSync(l.prefs)).toEqual(["understudy-bullseye.pref"]);
  });

  it("legacy sources.list only (a commented deb line first): bullseye from the first real deb line's mirror", () => {
    const l = layout({ list: LEGACY_LIST });
    const r = run(l);
    expect(r.status, r.stderr).toBe(0);
    expectBullseyeFrom(l, /^URIs: http:\/\/mirror\.example\.org\/debian$/);
  });

  it("both kinds: bullseye from a bookworm mirror of one of them, never a comment or security", () => {
    const l = layout({ list: LEGACY_LIST, parts: { "debian.sources": debianSources() } });
    const r = run(l);
    expect(r.status, r.stderr).toBe(0);
    expectBullseyeFrom(l, /^URIs: http:\/\/(deb\.debian\.org|mirror\.example\.org)\/debian$/);
  });

  it("none (no files at all): exit 1, names the files read, shows the stanza to add, writes nothing", () => {
    const l = layout({});
    const r = run(l);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("no Debian bookworm mirror found");
    expect(r.stderr).toContain(l.list);
    expect(r.stderr).toContain(`${l.parts}/*.sources`);
    expect(r.stderr).toContain(`${l.parts}/*.list`);
    expect(r.stderr).toMatch(/^ {2}Types: deb$/m);
    expect(r.stderr).toMatch(/^ {2}URIs: http:\/\/deb\.debian\.org\/debian$/m);
    expect(r.stderr).toMatch(/^ {2}Suites: bookworm/m);
    expect(r.stderr).toMatch(/^ {2}Components: main$/m);
    expect(readdirSync(l.parts)).toEqual([]);
    expect(existsSync(l.prefs)).toBe(false);
    expect(existsSync(l.list)).toBe(false);
  });

  it("only a *.disabled file (apt ignores it): exit 1, the ignored file is named, nothing written", () => {
    const l = layout({ parts: { "debian.sources.disabled-by-farm": debianSources() } });
    const r = run(l);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain("no Debian bookworm mirror found");
    expect(r.stderr).toContain("debian.sources.disabled-by-farm");
    expect(readdirSync(l.parts)).toEqual(["debian.sources.disabled-by-farm"]);
    expect(existsSync(l.prefs)).toBe(false);
  });

  it("bullseye already present: its entry is left as it is, only the pin is added", () => {
    const existing = "deb http://mirror.example.org/debian bullseye main\n";
    const l = layout({ parts: { "debian.sources": debianSources(), "bullseye.list": existing } });
    const r = run(l);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("already configured");
    expect(existsSync(ours(l))).toBe(false);
    expect(read(join(l.parts, "bullseye.list"))).toBe(existing);
    expectPin(l);
  });

  it("a second run is idempotent: same files, same content, 'already configured'", () => {
    const l = layout({ parts: { "debian.sources": debianSources() } });
    expect(run(l).status).toBe(0);
    const before = { src: read(ours(l)), pin: read(pin(l)), parts: readdirSync(l.parts).sort(), prefs: readdirSync(l.prefs) };
    const r = run(l);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toContain("already configured");
    expect({ src: read(ours(l)), pin: read(pin(l)), parts: readdirSync(l.parts).sort(), prefs: readdirSync(l.prefs) }).toEqual(before);
  });
});
