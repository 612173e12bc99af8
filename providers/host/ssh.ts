import type { Client, ConnectConfig } from "ssh2";
import type { Duplex } from "node:stream";
import { quoteArgv } from "./quote";
import {
  checkEnvNames,
  DEFAULT_TIMEOUT_MS,
  Host,
  HostCommandError,
  RunOptions,
  RunResult,
  switchUserArgv,
} from "./types";
import { writeFileVia } from "./local";
import { applyRuntimeOverrides, describeConnection, ResolvedConnection } from "./connection";

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Runs commands on a remote host over SSH (ssh2). argv is quoted with {@link quoteArgv}
 * and passed to the remote login shell; environment and working directory are applied by
 * argv (`env NAME=value`, a constant `sh -c 'cd "$1" ...'`), never by string building.
 */
export class SshHost implements Host {
  readonly description: string;
  private readonly conn: ResolvedConnection;
  private client: Promise<Client> | undefined;
  private proxyClient: Client | undefined;

  constructor(conn: ResolvedConnection) {
    this.conn = conn;
    this.description = describeConnection(conn);
  }

  private config(c: ResolvedConnection): ConnectConfig {
    const cfg: ConnectConfig = {
      host: c.host,
      port: c.port,
      username: c.user,
      readyTimeout: c.perDialTimeout * 1000,
      keepaliveInterval: 15000,
    };
    if (c.privateKey) {
      cfg.privateKey = c.privateKey;
      if (c.privateKeyPassword) cfg.passphrase = c.privateKeyPassword;
    }
    if (c.password) cfg.password = c.password;
    if (!c.privateKey && !c.password) cfg.agent = c.agentSocketPath ?? process.env.SSH_AUTH_SOCK;
    if (c.hostKey) {
      const expected = c.hostKey.split(/\s+/)[1];
      cfg.hostVerifier = (key: Buffer) => key.toString("base64") === expected;
    }
    return cfg;
  }

  private async dial(c: ResolvedConnection, sock?: Duplex): Promise<Client> {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { Client: SshClient } = require("ssh2") as typeof import("ssh2");
    const limit = c.dialErrorLimit;
    let lastError: Error | undefined;
    for (let attempt = 1; limit < 0 || attempt <= Math.max(1, limit); attempt++) {
      try {
        return await new Promise<Client>((resolve, reject) => {
          const client = new SshClient();
          client.once("ready", () => resolve(client));
          client.once("error", (e) => reject(e));
          client.connect({ ...this.config(c), ...(sock ? { sock } : {}) });
        });
      } catch (e) {
        lastError = e as Error;
        const msg = String(lastError.message);
        // Authentication and host-key failures do not get better by retrying.
        if (/authentication|verification|host key|handshake failed/i.test(msg)) break;
        if (sock) break;
        await sleep(Math.min(1000 * attempt, 5000));
      }
    }
    throw new Error(`could not connect over SSH to ${describeConnection(c)}: ${lastError?.message ?? "unknown error"}`);
  }

  private connect(): Promise<Client> {
    if (!this.client) {
      const conn = applyRuntimeOverrides(this.conn);
      const proxy = conn.proxy ? applyRuntimeOverrides(conn.proxy) : undefined;
      this.client = (async () => {
        if (!proxy) return await this.dial(conn);
        const jump = await this.dial(proxy);
        this.proxyClient = jump;
        const stream = await new Promise<Duplex>((resolve, reject) =>
          jump.forwardOut("127.0.0.1", 0, conn.host, conn.port, (err, s) => (err ? reject(err) : resolve(s))),
        );
        return await this.dial(conn, stream);
      })();
      this.client.catch(() => {
        this.client = undefined;
      });
    }
    return this.client;
  }

  async run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    if (argv.length === 0) throw new Error("empty command");
    checkEnvNames(opts.env);
    let full: string[] = [...argv];
    if (opts.env && Object.keys(opts.env).length > 0) {
      full = ["env", ...Object.entries(opts.env).map(([k, v]) => `${k}=${v}`), ...full];
    }
    if (opts.cwd) full = ["sh", "-c", 'cd "$1" && shift && exec "$@"', "sh", opts.cwd, ...full];
    const command = quoteArgv(full);
    const client = await this.connect();
    const started = Date.now();
    const ok = opts.okExitCodes ?? [0];
    const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    return await new Promise<RunResult>((resolve, reject) => {
      client.exec(command, (err, channel) => {
        if (err) {
          reject(
            new HostCommandError({
              host: this.description, argv, exitCode: null, stdout: "", stderr: "",
              reason: `could not start over SSH: ${err.message}`, redact: opts.redact,
            }),
          );
          return;
        }
        const out: Buffer[] = [];
        const errb: Buffer[] = [];
        let code: number | null = null;
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          try {
            channel.signal("KILL");
          } catch {
            /* ignore */
          }
          channel.close();
        }, timeoutMs);
        channel.on("data", (d: Buffer) => out.push(d));
        channel.stderr.on("data", (d: Buffer) => errb.push(d));
        channel.on("exit", (c: number | null) => {
          code = c;
        });
        channel.on("close", () => {
          clearTimeout(timer);
          const result: RunResult = {
            stdout: Buffer.concat(out).toString("utf8"),
            stderr: Buffer.concat(errb).toString("utf8"),
            exitCode: code ?? -1,
            durationMs: Date.now() - started,
          };
          if (!timedOut && ok.includes(result.exitCode)) resolve(result);
          else
            reject(
              new HostCommandError({
                host: this.description, argv, exitCode: code, stdout: result.stdout, stderr: result.stderr,
                timedOut, redact: opts.redact,
              }),
            );
        });
        if (opts.input !== undefined) channel.end(opts.input);
        else channel.end();
      });
    });
  }

  runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    return this.run(switchUserArgv(this.conn.user, user, argv), opts);
  }

  async writeFile(path: string, content: string, mode = "0644"): Promise<void> {
    await writeFileVia(this, path, content, mode);
  }

  /** A TCP stream to `host:port` as seen from the remote host (for `pg` over a tunnel). */
  async forward(host: string, port: number): Promise<Duplex> {
    const client = await this.connect();
    return await new Promise<Duplex>((resolve, reject) =>
      client.forwardOut("127.0.0.1", 0, host, port, (err, s) => (err ? reject(err) : resolve(s))),
    );
  }

  async close(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) {
      try {
        (await c).end();
      } catch {
        /* never connected */
      }
    }
    this.proxyClient?.end();
    this.proxyClient = undefined;
  }
}
