import type { Client, ClientChannel, ConnectConfig } from "ssh2";
import type { Duplex } from "node:stream";
import { quoteArgv } from "./quote";
import {
  checkEnvNames,
  DEFAULT_TIMEOUT_MS,
  Host,
  HostCommandError,
  redactText,
  RunOptions,
  RunResult,
  asUser,
} from "./types";
import { writeFileVia } from "./local";
import { recordCommand } from "./record";
import { applyRuntimeOverrides, describeConnection, ResolvedConnection } from "./connection";
import { setTimeout as sleep } from "node:timers/promises";

/**
 * ssh2 tags every connection error with a `level`. Only network trouble is worth another
 * dial; a refused key or a wrong host key stays wrong however often we try.
 */
const RETRYABLE_LEVELS = new Set(["client-socket", "client-timeout", "client-dns", "retry"]);

/** Seconds the remote `timeout` waits after SIGTERM before it sends SIGKILL. */
const KILL_AFTER_S = 5;
/** How long after the remote deadline we stop waiting for the channel ourselves. */
const LOCAL_GRACE_MS = (KILL_AFTER_S + 5) * 1000;

/** Host-key algorithms that produce a key of the type named in `hostKey`. */
function hostKeyAlgorithms(type: string): string[] {
  // An RSA key signs with any of these; the key blob (what we compare) is the same.
  return type === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [type];
}

/** `SHA256:...` as printed by `ssh-keygen -l`. */
function fingerprint(blob: Buffer): string {
   
  const { createHash } = require("node:crypto") as typeof import("node:crypto");
  return "SHA256:" + createHash("sha256").update(blob).digest("base64").replace(/=+$/, "");
}

/** An Error carrying an ssh2-style `level`, so that {@link RETRYABLE_LEVELS} applies to it. */
function leveled(message: string, level: string): Error {
  return Object.assign(new Error(message), { level });
}

/** Secrets of a connection (and its proxy) that must never appear in an error. */
function secretsOf(c: ResolvedConnection | undefined): string[] {
  if (!c) return [];
  return [c.password, c.privateKey, c.privateKeyPassword, ...secretsOf(c.proxy)].filter((s): s is string => !!s);
}

/**
 * The argv actually run on the remote host. The environment and working directory are
 * applied by argv (`env NAME=value`, a constant `sh -c 'cd ...'` script), never by building
 * a shell string. The deadline is enforced remotely by `timeout` (coreutils), which signals
 * the whole process group: closing an SSH channel does not stop the remote command, and
 * OpenSSH ignores signal requests for root sessions ("requires privilege separation").
 */
function remoteArgv(argv: readonly string[], opts: RunOptions, timeoutMs: number): string[] {
  let full = [...argv];
  const env = Object.entries(opts.env ?? {});
  if (env.length > 0) full = ["env", ...env.map(([k, v]) => `${k}=${v}`), ...full];
  // CDPATH could send a relative `cd` elsewhere and make it print to stdout.
  if (opts.cwd) full = ["sh", "-c", 'unset CDPATH; cd -- "$1" && shift && exec "$@"', "sh", opts.cwd, ...full];
  return ["timeout", "-s", "TERM", "-k", String(KILL_AFTER_S), (timeoutMs / 1000).toFixed(3), ...full];
}

/**
 * Runs commands on a remote host over SSH (ssh2). argv is quoted with {@link quoteArgv}
 * and passed to the remote login shell (which must be a POSIX shell). One connection per
 * host object, opened on first use, reopened after it drops; {@link close} ends it.
 *
 * Credentials are read when connecting, not when constructed: the environment variables
 * of {@link applyRuntimeOverrides} win over the stored ones. They never appear in errors.
 */
export class SshHost implements Host {
  readonly description: string;
  private readonly conn: ResolvedConnection;
  private client: Promise<Client> | undefined;
  private secrets: string[];

  constructor(conn: ResolvedConnection) {
    this.conn = conn;
    this.description = describeConnection(conn);
    this.secrets = secretsOf(conn);
  }

  private config(c: ResolvedConnection, onHostKey: (key: Buffer) => void): ConnectConfig {
    const cfg: ConnectConfig = {
      host: c.host,
      port: c.port,
      username: c.user,
      readyTimeout: c.perDialTimeout * 1000, // 0: no limit, as in @pulumi/command
      keepaliveInterval: 15000,
      keepaliveCountMax: 4,
    };
    // As in @pulumi/command, the key takes preference over the password; the agent is
    // used when asked for, or when nothing else is given.
    const methods: Array<"publickey" | "password" | "agent"> = [];
    if (c.privateKey) {
      cfg.privateKey = c.privateKey;
      if (c.privateKeyPassword) cfg.passphrase = c.privateKeyPassword;
      methods.push("publickey");
    }
    if (c.password) {
      cfg.password = c.password;
      methods.push("password");
    }
    const agent = c.agentSocketPath ?? (methods.length === 0 ? process.env.SSH_AUTH_SOCK : undefined);
    if (agent) {
      cfg.agent = agent;
      methods.push("agent");
    }
    cfg.authHandler = methods;
    if (c.hostKey) {
      // Validated by resolveConnection: `<type> <base64> [comment]`. Offer only the
      // algorithms of that key type, or a server with several host keys may present
      // another one and be refused although it is the right server.
      const [type, blob] = c.hostKey.trim().split(/\s+/);
      const expected = Buffer.from(blob, "base64");
      cfg.algorithms = { serverHostKey: hostKeyAlgorithms(type) as NonNullable<ConnectConfig["algorithms"]>["serverHostKey"] };
      cfg.hostVerifier = (key: Buffer) => {
        onHostKey(key);
        return key.equals(expected);
      };
    }
    return cfg;
  }

  /**
   * One SSH connection, with @pulumi/command's retry semantics: up to `dialErrorLimit`
   * attempts (-1: no limit) of at most `perDialTimeout` seconds each. `openSock` gives a
   * fresh stream per attempt when going through a proxy.
   */
  private async dial(c: ResolvedConnection, role: string, openSock?: () => Promise<Duplex>): Promise<Client> {
    const where = `${role}${describeConnection(c)}`;
    if (!c.privateKey && !c.password && !c.agentSocketPath && !process.env.SSH_AUTH_SOCK) {
      throw new Error(
        `no SSH credentials for ${where}: set privateKey or password in the connection, ` +
          "UNDERSTUDY_SSH_PRIVATE_KEY(_FILE) or UNDERSTUDY_SSH_PASSWORD, or run an ssh-agent (SSH_AUTH_SOCK)",
      );
    }
     
    const { Client: SshClient } = require("ssh2") as typeof import("ssh2");
    const attempts = c.dialErrorLimit < 0 ? Infinity : Math.max(1, c.dialErrorLimit);
    let last: Error | undefined;
    let presented: Buffer | undefined;
    let attempt = 0;
    while (attempt < attempts) {
      attempt++;
      try {
        let sock: Duplex | undefined;
        if (openSock) {
          try {
            sock = await openSock();
          } catch (e) {
            throw leveled((e as Error).message, "retry");
          }
        }
        return await new Promise<Client>((resolve, reject) => {
          const client = new SshClient();
          let settled = false;
          const fail = (e: Error) => {
            if (settled) return;
            settled = true;
            client.end();
            reject(e);
          };
          // Stays attached for the life of the client: an error after `ready` (e.g. a
          // keepalive timeout) is followed by `close`, which the owner watches.
          client.on("error", fail);
          client.on("close", () => fail(leveled("connection closed during the SSH handshake", "retry")));
          client.once("ready", () => {
            settled = true;
            resolve(client);
          });
          client.connect({ ...this.config(c, (k) => (presented = k)), ...(sock ? { sock } : {}) });
        });
      } catch (e) {
        last = e as Error;
        const level = (last as { level?: string }).level;
        if (!level || !RETRYABLE_LEVELS.has(level)) break;
        if (attempt < attempts) await sleep(Math.min(1000 * attempt, 5000));
      }
    }
    const msg = last?.message ?? "unknown error";
    let why: string;
    if (/authentication methods failed/i.test(msg)) {
      why = `authentication failed as ${c.user} (${msg}); check the connection's privateKey/password or UNDERSTUDY_SSH_PRIVATE_KEY(_FILE)/UNDERSTUDY_SSH_PASSWORD`;
    } else if (/verification failed/i.test(msg) && c.hostKey && presented) {
      const expected = Buffer.from(c.hostKey.trim().split(/\s+/)[1], "base64");
      why = `host key mismatch: the server presented ${fingerprint(presented)}, hostKey expects ${fingerprint(expected)}; refusing to connect`;
    } else {
      why = `${msg} (${attempt} attempt${attempt === 1 ? "" : "s"})`;
    }
    throw new Error(redactText(`could not connect over SSH to ${where}: ${why}`, this.secrets));
  }

  /** Open the connection, through the proxy if there is one. */
  private async open(): Promise<Client> {
    const conn = applyRuntimeOverrides(this.conn);
    const proxy = conn.proxy ? applyRuntimeOverrides(conn.proxy) : undefined;
    this.secrets = [...new Set([...this.secrets, ...secretsOf(conn), ...secretsOf(proxy)])];
    if (!proxy) return await this.dial(conn, "");
    const jump = await this.dial(proxy, "proxy ");
    try {
      const target = await this.dial(conn, "", () => forwardOut(jump, conn.host, conn.port));
      target.once("close", () => jump.end());
      return target;
    } catch (e) {
      jump.end();
      throw e;
    }
  }

  private connect(): Promise<Client> {
    if (!this.client) {
      const p = this.open();
      this.client = p;
      // Forget the connection once it is gone (or never came), so the next call redials.
      const forget = () => {
        if (this.client === p) this.client = undefined;
      };
      p.then((c) => c.once("close", forget), forget);
    }
    return this.client;
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new Error("empty command");
    checkEnvNames(opts.env);
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    if (!(timeoutMs > 0 && Number.isFinite(timeoutMs))) throw new Error(`timeoutMs must be a positive number, got ${timeoutMs}`);
    const command = quoteArgv(remoteArgv(argv, opts, timeoutMs));
    recordCommand(this.description, argv, [...(opts.redact ?? []), ...this.secrets]);
    const client = await this.connect();
    const redact = [...(opts.redact ?? []), ...this.secrets];
    const ok = opts.okExitCodes ?? [0];
    const started = Date.now();
    return await new Promise<RunResult>((resolve, reject) => {
      const failed = (x: { exitCode: number | null; stdout?: string; stderr?: string; timedOut?: boolean; reason?: string }) =>
        new HostCommandError({ host: this.description, argv, stdout: "", stderr: "", redact, ...x });
      const onChannel = (err: Error | undefined, channel: ClientChannel) => {
        if (err) {
          reject(failed({ exitCode: null, reason: `could not start over SSH: ${err.message}` }));
          return;
        }
        const out: Buffer[] = [];
        const errb: Buffer[] = [];
        let code: number | null = null;
        let signal: string | undefined;
        let gotExit = false;
        let killed = false;
        // Backstop: the remote `timeout` should have ended the command by now. The channel
        // can also stay open because a daemon it started still holds stdout.
        const timer = setTimeout(() => {
          killed = true;
          channel.signal("KILL"); // honoured for non-root logins only
          channel.close();
        }, timeoutMs + LOCAL_GRACE_MS);
        channel.on("data", (d: Buffer) => out.push(d));
        channel.stderr.on("data", (d: Buffer) => errb.push(d));
        channel.on("error", () => undefined); // e.g. stdin written after the remote closed it
        channel.on("exit", (c: number | null, sig?: string) => {
          gotExit = true;
          code = c;
          signal = sig ?? undefined;
        });
        channel.on("close", () => {
          clearTimeout(timer);
          const durationMs = Date.now() - started;
          const stdout = Buffer.concat(out).toString("utf8");
          const stderr = Buffer.concat(errb).toString("utf8");
          const exitCode = code ?? (signal ? 128 : -1);
          // `timeout` exits 124 after its TERM; after its KILL we see 137 or SIGKILL.
          const timedOut =
            killed || (durationMs >= timeoutMs && (code === 124 || code === 137 || signal === "SIGKILL"));
          if (!timedOut && gotExit && ok.includes(exitCode)) {
            resolve({ stdout, stderr, exitCode, durationMs });
            return;
          }
          let reason: string | undefined;
          if (timedOut) reason = `timed out after ${timeoutMs} ms`;
          else if (!gotExit) reason = "lost its SSH channel before it finished (exit status unknown)";
          else if (signal) reason = `was killed by ${signal}`;
          else if (code === 127 && /timeout: (command )?not found|timeout: No such file/.test(stderr))
            reason = "could not run: the host has no `timeout` command (GNU coreutils is required)";
          reject(failed({ exitCode: code, stdout, stderr, timedOut, reason }));
        });
        if (opts.input !== undefined) channel.end(opts.input);
        else channel.end();
      };
      try {
        client.exec(command, onChannel);
      } catch (e) {
        // ssh2 throws when the connection is already gone.
        reject(failed({ exitCode: null, reason: `could not start over SSH: ${(e as Error).message}` }));
      }
    });
  }

  async runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    // async: an invalid user name rejects the promise instead of throwing synchronously.
    const r = asUser(this.conn.user, user, argv, opts);
    return await this.run(r.argv, r.opts);
  }

  async writeFile(path: string, content: string, mode = "0644"): Promise<void> {
    await writeFileVia(this, path, content, mode);
  }

  /** A TCP stream to `host:port` as seen from the remote host (for `pg` over a tunnel). */
  async forward(host: string, port: number): Promise<Duplex> {
    return await forwardOut(await this.connect(), host, port);
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (!c) return;
    try {
      (await c).end(); // through a proxy, the jump connection ends with it
    } catch {
      /* never connected */
    }
  }
}

/** A `direct-tcpip` channel from the remote host to `host:port`. */
function forwardOut(client: Client, host: string, port: number): Promise<Duplex> {
  return new Promise<Duplex>((resolve, reject) => {
    try {
      client.forwardOut("127.0.0.1", 0, host, port, (err, s) =>
        err ? reject(new Error(`cannot open a TCP stream to ${host}:${port} from the SSH host: ${err.message}`)) : resolve(s),
      );
    } catch (e) {
      reject(e as Error);
    }
  });
}
