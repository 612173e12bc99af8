/**
 * SshHost against a real sshd on 127.0.0.1:2222 (started by scripts/setup-sshd.sh, which
 * `npm test` runs through scripts/setup.sh). Nothing here is skipped: without that sshd
 * every test fails and says how to start it.
 *
 * The SSH server is this machine, so what a command did "remotely" (files, processes) is
 * checked locally with node:fs and ps.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConnectionArgs, resolveConnection } from "../../providers/host/connection";
import { SshHost } from "../../providers/host/ssh";
import { HostCommandError } from "../../providers/host/types";

const SSH_DIR = path.join(os.homedir(), ".cache/understudy/ssh");
const KEY_FILE = path.join(SSH_DIR, "id_ed25519");
const HOST_KEY_FILE = path.join(SSH_DIR, "host_key.pub");
const PORT = 2222;
const DESCRIPTION = `root@127.0.0.1:${PORT}`;
const SETUP_HINT = "run `bash scripts/setup-sshd.sh` (or `npm test`, whose scripts/setup.sh runs it)";

let KEY = "";
/** A valid ed25519 key that sshd does not know. */
let WRONG_KEY = "";
const PASSWORD = "hunter2-not-a-real-password";

/** Files a failed quoting would create; none may exist after the tests. */
const MARK = `/tmp/pwned-ssh-${process.pid}-${Date.now()}`;
const HOSTILE: Record<string, string> = {
  "command separator": "tank/x; rm -rf /", // GNU rm refuses `rm -rf /` anyway (--preserve-root)
  "command substitution": `$(touch ${MARK}-subst)`,
  backticks: "`touch " + MARK + "-backtick`",
  "single quote breakout": `x'; touch ${MARK}-single; echo '`,
  "double quote breakout": `x"; touch ${MARK}-double; echo "`,
  "newline then command": `a\ntouch ${MARK}-newline`,
  pipe: `a | touch ${MARK}-pipe`,
  redirect: `a>${MARK}-redirect`,
  "dot-dot": "..",
  glob: "*",
  "glob path": "/*",
  tilde: "~",
  "leading dash": "-rf",
  "empty string": "",
  spaces: " a  b ",
  backslashes: "\\\\n\\",
  "lone single quote": "'",
  "lone double quote": '"',
  variable: "$HOME ${IFS} $((1+1))",
  "history expansion": "!!",
  comment: "#x",
  "printf format": "%s%n%d",
  unicode: "ünïcödé 日本語 🦄 \u202e",
  "terminal escape": "\x1b[31mred",
  "carriage return": "a\r\nb",
  "10 kB mixed": "x'\"$`\\;|&*?~ \n\t日(){}<>#!%".repeat(500).slice(0, 10 * 1024),
  "10 kB of single quotes": "'".repeat(10 * 1024),
};

function markerFiles(): string[] {
  const base = path.basename(MARK);
  return fs.readdirSync("/tmp").filter((f) => f.startsWith(base));
}

/** Every error message seen in this file; the last test checks that none holds a secret. */
const seenErrors: string[] = [];

/** Await a promise that must reject; return its error (and remember its message). */
async function failure(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (e) {
    seenErrors.push((e as Error).message);
    return e as Error;
  }
  throw new Error("expected a rejection, but the promise resolved");
}

function connection(extra: Partial<ConnectionArgs> = {}): ConnectionArgs {
  return { host: "127.0.0.1", port: PORT, privateKey: KEY, ...extra };
}

function sshHost(extra: Partial<ConnectionArgs> = {}): SshHost {
  return new SshHost(resolveConnection(connection(extra)));
}

/** Run `fn` with some environment variables set, then restore them. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (v: Record<string, string | undefined>) => {
    for (const [k, x] of Object.entries(v)) {
      if (x === undefined) delete process.env[k];
      else process.env[k] = x;
    }
  };
  apply(vars);
  try {
    return await fn();
  } finally {
    apply(saved);
  }
}

/** The first bytes a TCP server sends (an SSH server sends its banner first). */
function firstBytes(stream: NodeJS.ReadableStream & { destroy(): void }, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no data within " + timeoutMs + " ms")), timeoutMs);
    stream.once("data", (d: Buffer) => {
      clearTimeout(timer);
      stream.destroy();
      resolve(d.toString("latin1"));
    });
    stream.once("error", (e: Error) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

/** Local processes whose full command line is exactly `args`. */
function processesRunning(args: string): string[] {
  return execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" })
    .split("\n")
    .filter((l) => l.trim().replace(/^\d+\s+/, "") === args);
}

async function waitUntil(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

/** A TCP port on 127.0.0.1 that nothing listens on. */
async function freePort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((r) => srv.close(r));
  return port;
}

let host: SshHost;
let tmp: string;
let savedEnv: Record<string, string | undefined>;

beforeAll(async () => {
  // Run-time overrides in the caller's environment would change what these tests mean.
  savedEnv = {};
  for (const k of ["UNDERSTUDY_SSH_PRIVATE_KEY", "UNDERSTUDY_SSH_PRIVATE_KEY_FILE", "UNDERSTUDY_SSH_PASSWORD"]) {
    savedEnv[k] = process.env[k];
    delete process.env[k];
  }
  if (!fs.existsSync(KEY_FILE) || !fs.existsSync(HOST_KEY_FILE)) {
    throw new Error(`the SSH test key ${KEY_FILE} or ${HOST_KEY_FILE} is missing: ${SETUP_HINT}`);
  }
  KEY = fs.readFileSync(KEY_FILE, "utf8");
  try {
    const banner = await firstBytes(net.connect(PORT, "127.0.0.1"), 3000);
    if (!banner.startsWith("SSH-2.0")) throw new Error(`it answers ${JSON.stringify(banner.slice(0, 40))}, not an SSH banner`);
  } catch (e) {
    throw new Error(`the test sshd is not reachable on 127.0.0.1:${PORT} (${(e as Error).message}): ${SETUP_HINT}`, { cause: e });
  }
   
  const { utils } = require("ssh2") as typeof import("ssh2");
  WRONG_KEY = utils.generateKeyPairSync("ed25519").private;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-ssh-"));
  host = sshHost();
});

afterAll(async () => {
  await host?.close();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  for (const [k, v] of Object.entries(savedEnv ?? {})) if (v !== undefined) process.env[k] = v;
});

describe("SshHost: running commands", () => {
  it("runs argv and returns stdout, stderr, exit code and duration", async () => {
    expect(host.description).toBe(DESCRIPTION);
    const r = await host.run(["sh", "-c", "echo out; echo err >&2"]);
    expect(r).toMatchObject({ stdout: "out\n", stderr: "err\n", exitCode: 0 });
    expect(r.durationMs).toBeGreaterThanOrEqual(0);
  });

  it("rejects a non-zero exit with HostCommandError, unless the code is in okExitCodes", async () => {
    const e = await failure(host.run(["sh", "-c", "exit 3"]));
    expect(e).toBeInstanceOf(HostCommandError);
    expect((e as HostCommandError).exitCode).toBe(3);
    const r = await host.run(["sh", "-c", "exit 3"], { okExitCodes: [0, 3] });
    expect(r.exitCode).toBe(3);
  });

  it("a missing program is exit code 127 with the shell's message", async () => {
    const e = (await failure(host.run(["understudy-no-such-program"]))) as HostCommandError;
    expect(e.exitCode).toBe(127);
    expect(e.message).toMatch(/understudy-no-such-program/);
  });

  it("feeds `input` to stdin, then closes it (1 MiB, binary-safe text)", async () => {
    const input = "line ü 🦄 '\"$x\n".repeat(1) + "x".repeat(1024 * 1024);
    const r = await host.run(["sh", "-c", "cat | wc -c"], { input });
    expect(Number(r.stdout.trim())).toBe(Buffer.byteLength(input));
    expect((await host.run(["cat"], { input: "back\0again" })).stdout).toBe("back\0again");
    // Without input, stdin is at EOF at once (nothing hangs waiting for it).
    expect((await host.run(["cat"])).stdout).toBe("");
  });

  it("applies env and cwd; hostile values stay literal", async () => {
    const dir = path.join(tmp, "dir with 'quotes' \"dq\" $(id) `id` ; & * ~ 日");
    fs.mkdirSync(dir);
    const env: Record<string, string> = {};
    Object.values(HOSTILE).forEach((v, i) => (env[`U_${i}`] = v));
    // Print each U_<i> followed by NUL; the values themselves never pass through eval.
    const script = 'pwd; i=0; while [ "$i" -lt "$N" ]; do eval "v=\\${U_$i}"; printf "%s\\0" "$v"; i=$((i + 1)); done';
    const r = await host.run(["sh", "-c", script], { cwd: dir, env: { ...env, N: String(Object.keys(env).length) } });
    const [pwd, rest] = [r.stdout.slice(0, r.stdout.indexOf("\n")), r.stdout.slice(r.stdout.indexOf("\n") + 1)];
    expect(pwd).toBe(dir);
    expect(rest.split("\0").slice(0, -1)).toEqual(Object.values(HOSTILE));
    expect(markerFiles()).toEqual([]);
  });

  it("a missing cwd fails with the shell's message", async () => {
    const e = (await failure(host.run(["pwd"], { cwd: path.join(tmp, "nope") }))) as HostCommandError;
    expect(e.exitCode).not.toBe(0);
    expect(e.message).toMatch(/can't cd to .*nope|No such file/);
  });

  it("refuses an invalid environment variable name before running anything", async () => {
    await expect(host.run(["true"], { env: { "A;touch x": "1" } })).rejects.toThrow(/invalid environment variable name/);
  });
});

describe("SshHost: quoting over SSH", () => {
  it("every hostile string reaches the remote command unchanged (printf %s, one at a time)", async () => {
    for (const [name, s] of Object.entries(HOSTILE)) {
      expect((await host.run(["printf", "%s", s])).stdout, name).toBe(s);
    }
    expect(markerFiles()).toEqual([]);
  });

  it("all of them at once, as separate arguments", async () => {
    const argv = Object.values(HOSTILE);
    const r = await host.run(["printf", "%s\\0", ...argv]);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(argv);
    expect(markerFiles()).toEqual([]);
  });

  it("as arguments of runAs", async () => {
    const argv = Object.values(HOSTILE);
    const r = await host.runAs("postgres", ["printf", "%s\\0", ...argv]);
    expect(r.stdout.split("\0").slice(0, -1)).toEqual(argv);
    expect(markerFiles()).toEqual([]);
  });
});

describe("SshHost: errors", () => {
  it("say where, what, the exit code and the end of stderr", async () => {
    const script = 'echo "to stdout"; for i in $(seq 1 3000); do echo "noise line $i" >&2; done; echo "the real reason" >&2; exit 7';
    const e = (await failure(host.run(["sh", "-c", script]))) as HostCommandError;
    expect(e).toBeInstanceOf(HostCommandError);
    expect(e.host).toBe(DESCRIPTION);
    expect(e.exitCode).toBe(7);
    expect(e.message).toContain(`on ${DESCRIPTION}:`);
    expect(e.message).toContain("`sh -c echo"); // the command as given, not the remote wrapper
    expect(e.message).not.toContain("timeout -s");
    expect(e.message).toContain("exited with code 7");
    expect(e.message).toMatch(/the real reason$/);
    expect(e.message).not.toContain("noise line 1\n"); // only the tail
    expect(e.message.length).toBeLessThan(3000);
  });

  it("redact hides words the caller names", async () => {
    const e = await failure(host.run(["sh", "-c", 'echo "token is $1" >&2; exit 1', "sh", "s3cr3t-token"], { redact: ["s3cr3t-token"] }));
    expect(e.message).not.toContain("s3cr3t-token");
    expect(e.message).toContain("token is [secret]");
  });

  it("the connection's own password and private key are always redacted", async () => {
    const h = sshHost({ password: PASSWORD }); // the key logs in; the password is just carried
    try {
      const e = await failure(h.run(["sh", "-c", 'cat "$1" >&2; echo "pw=$2" >&2; exit 1', "sh", KEY_FILE, PASSWORD]));
      expect(e.message).toContain("pw=[secret]");
      expect(e.message).toContain("[secret]");
      expect(e.message).not.toContain(PASSWORD);
      expect(e.message).not.toContain("PRIVATE KEY");
    } finally {
      await h.close();
    }
  });
});

describe("SshHost: timeout", () => {
  it("kills the command (and its children) when the timeout expires", async () => {
    const sleeper = "sleep 41.25"; // a unique command line to look for
    const t0 = Date.now();
    const e = (await failure(host.run(["sh", "-c", `${sleeper}; echo finished`], { timeoutMs: 1000 }))) as HostCommandError;
    const elapsed = Date.now() - t0;
    expect(e.timedOut).toBe(true);
    expect(e.message).toMatch(/timed out after 1000 ms/);
    expect(e.stdout).not.toContain("finished");
    expect(elapsed).toBeGreaterThanOrEqual(1000);
    expect(elapsed).toBeLessThan(8000);
    expect(await waitUntil(() => processesRunning(sleeper).length === 0, 3000)).toBe(true);
    // The connection is still usable afterwards.
    expect((await host.run(["echo", "still here"])).stdout).toBe("still here\n");
  });

  it("also as another user (runuser)", async () => {
    const sleeper = "sleep 42.25";
    const e = (await failure(host.runAs("postgres", ["sh", "-c", `${sleeper}; echo finished`], { timeoutMs: 1000 }))) as HostCommandError;
    expect(e.timedOut).toBe(true);
    expect(await waitUntil(() => processesRunning(sleeper).length === 0, 5000)).toBe(true);
  });

  it("a command that finishes in time is not affected", async () => {
    const r = await host.run(["sh", "-c", "sleep 0.2; echo ok"], { timeoutMs: 5000 });
    expect(r.stdout).toBe("ok\n");
  });
});

describe("SshHost: runAs, writeFile, forward", () => {
  it("runAs('postgres') runs as postgres; runAs of the login user runs directly", async () => {
    expect((await host.runAs("postgres", ["id", "-un"])).stdout).toBe("postgres\n");
    expect((await host.runAs("root", ["id", "-un"])).stdout).toBe("root\n");
    await expect(host.runAs("postgres; id", ["true"])).rejects.toThrow(/invalid OS user name/);
  });

  it("runAs keeps env and cwd", async () => {
    const r = await host.runAs("postgres", ["sh", "-c", 'printf "%s|%s" "$X" "$(pwd)"'], { env: { X: "$(id)" }, cwd: "/tmp" });
    expect(r.stdout).toBe("$(id)|/tmp");
  });

  it("writeFile writes the content with the mode, replacing the old file atomically", async () => {
    const file = path.join(tmp, "conf file 'x'.conf");
    const content = "listen = 127.0.0.1\n" + Object.values(HOSTILE).join("\n") + "\n";
    await host.writeFile(file, content, "0640");
    expect(fs.readFileSync(file, "utf8")).toBe(content);
    expect(fs.statSync(file).mode & 0o7777).toBe(0o640);

    // Replaced by rename, not rewritten in place: a reader holding the old file (here a
    // hard link to it) still sees the old content, whole.
    const oldLink = path.join(tmp, "old-link");
    fs.linkSync(file, oldLink);
    await host.writeFile(file, "new content\n", "0600");
    expect(fs.readFileSync(file, "utf8")).toBe("new content\n");
    expect(fs.statSync(file).mode & 0o7777).toBe(0o600);
    expect(fs.readFileSync(oldLink, "utf8")).toBe(content);
    expect(fs.readdirSync(tmp).filter((f) => f.includes("understudy-tmp"))).toEqual([]);
    expect(markerFiles()).toEqual([]);
  });

  it("writeFile refuses a relative path or a bad mode", async () => {
    await expect(host.writeFile("relative.conf", "x")).rejects.toThrow(/absolute/);
    await expect(host.writeFile(path.join(tmp, "x"), "x", "rwx")).rejects.toThrow(/invalid file mode/);
  });

  it("forward() opens a TCP stream from the remote host (sshd's own banner)", async () => {
    const stream = await host.forward("127.0.0.1", PORT);
    expect(await firstBytes(stream)).toMatch(/^SSH-2\.0-/);
  });

  it("forward() to a closed port fails clearly", async () => {
    const port = await freePort();
    const e = await failure(host.forward("127.0.0.1", port));
    expect(e.message).toMatch(new RegExp(`cannot open a TCP stream to 127\\.0\\.0\\.1:${port} from the SSH host`));
  });
});

describe("SshHost: connecting", () => {
  it("a wrong port gives a clear 'could not connect' error within dialErrorLimit x perDialTimeout", async () => {
    const port = await freePort();
    const h = sshHost({ port, dialErrorLimit: 2, perDialTimeout: 1 });
    const t0 = Date.now();
    const e = await failure(h.run(["true"]));
    const elapsed = Date.now() - t0;
    expect(e.message).toMatch(new RegExp(`^could not connect over SSH to root@127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*\\(2 attempts\\)`));
    expect(elapsed).toBeLessThan(2 * 1000); // refused at once: two attempts, one 1 s pause
    await h.close();
  });

  it("a server that never answers: each attempt gives up after perDialTimeout", async () => {
    const sockets: net.Socket[] = [];
    const silent = net.createServer((s) => sockets.push(s)); // accepts, says nothing
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const port = (silent.address() as net.AddressInfo).port;
    try {
      const h = sshHost({ port, dialErrorLimit: 2, perDialTimeout: 1 });
      const t0 = Date.now();
      const e = await failure(h.run(["true"]));
      const elapsed = Date.now() - t0;
      expect(e.message).toMatch(/could not connect over SSH to .*Timed out while waiting for handshake \(2 attempts\)/);
      // 2 attempts of 1 s, plus the 1 s pause between them.
      expect(elapsed).toBeGreaterThanOrEqual(2000);
      expect(elapsed).toBeLessThan(4500);
      expect(sockets.length).toBe(2);
      await h.close();
    } finally {
      sockets.forEach((s) => s.destroy());
      await new Promise((r) => silent.close(r));
    }
  });

  it("a wrong key is an authentication failure, reported at once without retries", async () => {
    const h = sshHost({ privateKey: WRONG_KEY }); // default dialErrorLimit 10
    const t0 = Date.now();
    const e = await failure(h.run(["true"]));
    expect(e.message).toMatch(new RegExp(`^could not connect over SSH to ${DESCRIPTION}: authentication failed as root`));
    expect(Date.now() - t0).toBeLessThan(1000); // a retry would pause 1 s first
    await h.close();
  });

  it("no credentials at all is an error before dialing", async () => {
    await withEnv({ SSH_AUTH_SOCK: undefined }, async () => {
      const h = new SshHost(resolveConnection({ host: "127.0.0.1", port: PORT }));
      await expect(h.run(["true"])).rejects.toThrow(/no SSH credentials for root@127\.0\.0\.1:2222/);
    });
  });

  it("an unparsable private key fails at once, without echoing the key", async () => {
    const h = sshHost({ privateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IGEga2V5\n-----END OPENSSH PRIVATE KEY-----\n" });
    const t0 = Date.now();
    const e = await failure(h.run(["true"]));
    expect(e.message).toMatch(/could not connect over SSH to .*privateKey/i);
    expect(e.message).not.toContain("bm90IGEga2V5");
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it("hostKey: the right key is accepted (as read from a .pub file), another one refused", async () => {
    const right = fs.readFileSync(HOST_KEY_FILE, "utf8"); // with its trailing newline
    const good = sshHost({ hostKey: right });
    expect((await good.run(["echo", "trusted"])).stdout).toBe("trusted\n");
    await good.close();

    const other = fs.readFileSync(KEY_FILE + ".pub", "utf8"); // a real ed25519 key, not the host's
    const bad = sshHost({ hostKey: other });
    const e = await failure(bad.run(["echo", "must not run"]));
    const fp = execFileSync("ssh-keygen", ["-lf", HOST_KEY_FILE], { encoding: "utf8" }).split(" ")[1];
    expect(e.message).toMatch(/host key mismatch: the server presented SHA256:.*refusing to connect/);
    expect(e.message).toContain(fp); // the same fingerprint ssh-keygen shows
    await bad.close();
  });

  it("run-time override: a stored key that no longer works is replaced by UNDERSTUDY_SSH_PRIVATE_KEY_FILE", async () => {
    const stale = sshHost({ privateKey: WRONG_KEY });
    await expect(stale.run(["true"])).rejects.toThrow(/authentication failed/); // control
    await stale.close();
    await withEnv({ UNDERSTUDY_SSH_PRIVATE_KEY_FILE: KEY_FILE }, async () => {
      // Read when connecting, not when constructed: the same object now works.
      expect((await stale.run(["echo", "rotated"])).stdout).toBe("rotated\n");
      await stale.close();
    });
  });

  it("run-time override: UNDERSTUDY_SSH_PRIVATE_KEY (contents) wins over the file", async () => {
    await withEnv({ UNDERSTUDY_SSH_PRIVATE_KEY: KEY, UNDERSTUDY_SSH_PRIVATE_KEY_FILE: "/nonexistent" }, async () => {
      const h = sshHost({ privateKey: WRONG_KEY });
      expect((await h.run(["echo", "ok"])).stdout).toBe("ok\n");
      await h.close();
    });
  });

  it("proxy: goes through a jump host (127.0.0.1:2222 to 127.0.0.1:2222)", async () => {
    const h = sshHost({ proxy: { host: "127.0.0.1", port: PORT, privateKey: KEY } });
    expect(h.description).toBe(DESCRIPTION);
    expect((await h.run(["echo", "via", "proxy"])).stdout).toBe("via proxy\n");
    // The target sees the connection come from the jump host's sshd (a forwarded channel).
    const r = await h.run(["sh", "-c", 'echo "$SSH_CONNECTION"']);
    expect(r.stdout).toMatch(/^127\.0\.0\.1 \d+ 127\.0\.0\.1 2222\n$/);
    await h.close();
    await h.close();
  });

  it("proxy: its own failures are reported as the proxy's", async () => {
    const badJump = sshHost({ proxy: { host: "127.0.0.1", port: PORT, privateKey: WRONG_KEY } });
    const e = await failure(badJump.run(["true"]));
    expect(e.message).toMatch(/^could not connect over SSH to proxy root@127\.0\.0\.1:2222: authentication failed/);

    const port = await freePort();
    const unreachable = sshHost({ port, dialErrorLimit: 1, proxy: { host: "127.0.0.1", port: PORT, privateKey: KEY } });
    const e2 = await failure(unreachable.run(["true"]));
    expect(e2.message).toMatch(new RegExp(`could not connect over SSH to root@127\\.0\\.0\\.1:${port}: cannot open a TCP stream`));
    await unreachable.close();
  });

  it("reconnects after the connection drops", async () => {
    const h = sshHost();
    // Kill the sshd process serving this very connection (the parent of the remote
    // `timeout` wrapper, itself the parent of this shell).
    const e = (await failure(h.run(["sh", "-c", 'kill -9 $(ps -o ppid= -p $PPID); sleep 5']))) as HostCommandError;
    expect(e.message).toMatch(/lost its SSH channel|exited|killed/);
    expect((await h.run(["echo", "again"])).stdout).toBe("again\n");
    await h.close();
  });

  it("close() is safe twice, before connecting, and a closed host reconnects on use", async () => {
    const h = sshHost();
    await h.close(); // never connected
    expect((await h.run(["true"])).exitCode).toBe(0);
    await h.close();
    await h.close();
    expect((await h.run(["echo", "reopened"])).stdout).toBe("reopened\n");
    await h.close();
  });
});

describe("SshHost: secrets", () => {
  it("no error message in this file contained a private key or the password", () => {
    expect(seenErrors.length).toBeGreaterThan(10);
    const secretLines = [KEY, WRONG_KEY]
      .flatMap((k) => k.split("\n"))
      .filter((l) => l.length >= 20 && !l.startsWith("-----")); // the base64 body lines
    expect(secretLines.length).toBeGreaterThan(4);
    for (const msg of seenErrors) {
      expect(msg).not.toContain(PASSWORD);
      expect(msg).not.toMatch(/PRIVATE KEY-----/);
      for (const l of secretLines) expect(msg).not.toContain(l);
    }
    expect(markerFiles()).toEqual([]);
  });
});
