/**
 * The SSH connection argument: @pulumi/command's `remote.ConnectionArgs` shape and
 * defaults, validation that names the field, and run-time credential overrides.
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import {
  applyRuntimeOverrides,
  ConnectionArgs,
  describeConnection,
  resolveConnection,
} from "../../providers/host/connection";

const ROOT = path.resolve(__dirname, "../..");

describe("resolveConnection defaults", () => {
  it("fills in @pulumi/command's defaults: port 22, user root, dialErrorLimit 10, perDialTimeout 15", () => {
    const c = resolveConnection({ host: "db1" });
    expect(c).toMatchObject({ host: "db1", port: 22, user: "root", dialErrorLimit: 10, perDialTimeout: 15 });
    expect(c.proxy).toBeUndefined();
  });

  it("uses the same defaults as @pulumi/command's own connectionArgsProvideDefaults", async () => {
    // The real function from the installed package, not a copy of its numbers.
    const { types } = await import("@pulumi/command");
    const theirs = types.input.remote.connectionArgsProvideDefaults({ host: "db1" });
    const ours = resolveConnection({ host: "db1" });
    for (const k of ["port", "user", "dialErrorLimit", "perDialTimeout"] as const) {
      expect(ours[k], k).toBe(theirs[k]);
    }
    const theirProxy = types.input.remote.proxyConnectionArgsProvideDefaults({ host: "bastion" });
    const ourProxy = resolveConnection({ host: "db1", proxy: { host: "bastion" } }).proxy!;
    for (const k of ["port", "user", "dialErrorLimit", "perDialTimeout"] as const) {
      expect(ourProxy[k], `proxy.${k}`).toBe(theirProxy[k]);
    }
  });

  it("keeps given values, including -1 (no dial limit) and 0 (no per-dial timeout)", () => {
    const c = resolveConnection({
      host: "10.0.0.5",
      port: 2200,
      user: "deploy",
      password: "pw",
      privateKey: "KEY",
      privateKeyPassword: "pass",
      agentSocketPath: "/run/agent.sock",
      hostKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnl1Mb7gD9MmV7y7d1T9Cj9ZzNa6vJvHSKdS9+jwhM1 host",
      dialErrorLimit: -1,
      perDialTimeout: 0,
      proxy: { host: "bastion", port: 2022, user: "jump" },
    });
    expect(c).toMatchObject({ port: 2200, user: "deploy", password: "pw", privateKey: "KEY", dialErrorLimit: -1, perDialTimeout: 0 });
    expect(c.proxy).toEqual({
      host: "bastion",
      port: 2022,
      user: "jump",
      dialErrorLimit: 10,
      perDialTimeout: 15,
      password: undefined,
      privateKey: undefined,
      privateKeyPassword: undefined,
      agentSocketPath: undefined,
      hostKey: undefined,
    });
  });

  it("treats null as absent (a value removed from stack config)", () => {
    const c = resolveConnection({ host: "db1", port: null, user: null, proxy: null } as unknown as ConnectionArgs);
    expect(c).toMatchObject({ port: 22, user: "root" });
    expect(c.proxy).toBeUndefined();
  });

  it("accepts a hostKey copied from a .pub file (trailing newline, comment) and trims it", () => {
    const line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnl1Mb7gD9MmV7y7d1T9Cj9ZzNa6vJvHSKdS9+jwhM1 root@db1";
    expect(resolveConnection({ host: "db1", hostKey: line + "\n" }).hostKey).toBe(line);
    expect(resolveConnection({ host: "db1", hostKey: "  ecdsa-sha2-nistp256 AAAAE2VjZHNh= " }).hostKey).toBe(
      "ecdsa-sha2-nistp256 AAAAE2VjZHNh=",
    );
  });
});

describe("resolveConnection validation names the field", () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ["port 0", { host: "h", port: 0 }, /^connection\.port: /],
    ["port 65536", { host: "h", port: 65536 }, /^connection\.port: /],
    ["port as a string", { host: "h", port: "22" }, /^connection\.port: .*number/],
    ["fractional port", { host: "h", port: 22.5 }, /^connection\.port: /],
    ["missing host", { port: 22 }, /^connection\.host: /],
    ["empty host", { host: "" }, /^connection\.host: host is required/],
    ["user with a shell command", { host: "h", user: "root; id" }, /^connection\.user: user must be a plain login name/],
    ["user with a space", { host: "h", user: "a b" }, /^connection\.user: /],
    ["dialErrorLimit -2", { host: "h", dialErrorLimit: -2 }, /^connection\.dialErrorLimit: /],
    ["perDialTimeout -1", { host: "h", perDialTimeout: -1 }, /^connection\.perDialTimeout: /],
    ["hostKey that is not a key", { host: "h", hostKey: "AAAA" }, /^connection\.hostKey: hostKey must be/],
    ["hostKey with two lines", { host: "h", hostKey: "ssh-ed25519 AAAA\nssh-rsa BBBB" }, /^connection\.hostKey: /],
    ["privateKey not a string", { host: "h", privateKey: 42 }, /^connection\.privateKey: /],
    ["proxy port", { host: "h", proxy: { host: "b", port: -1 } }, /^connection\.proxy\.port: /],
    ["proxy host", { host: "h", proxy: { host: "b;id" } }, /^connection\.proxy\.host: /],
    ["a proxy of a proxy", { host: "h", proxy: { host: "b", proxy: { host: "c" } } }, /^connection\.proxy: unknown field\(s\) proxy/],
    ["misspelt field", { host: "h", privatekey: "KEY" }, /^connection: unknown field\(s\) privatekey \(known: host, port, /],
  ];
  it.each(cases)("%s", (_name, conn, message) => {
    expect(() => resolveConnection(conn as ConnectionArgs)).toThrow(message);
  });

  it("uses the caller's field name", () => {
    expect(() => resolveConnection({ host: "h", port: 0 }, "zfsClone.connection")).toThrow(/^zfsClone\.connection\.port: /);
  });

  it("never echoes a secret in a validation error", () => {
    let message = "";
    try {
      resolveConnection({ host: "h", port: 0, password: "hunter2-secret", privateKey: "-----BEGIN KEY-----" });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/connection\.port/);
    expect(message).not.toContain("hunter2");
    expect(message).not.toContain("BEGIN");
  });
});

describe("resolveConnection host names", () => {
  const hostile = [
    "db1; rm -rf /",
    "$(touch /tmp/pwned)",
    "`id`",
    "-oProxyCommand=sh",
    "-db1", // would read as an option to anything that takes a host argument
    "db1 -p 23",
    "db1\n",
    "db1\0",
    "a'b",
    'a"b',
    "~root",
    "*",
    "root@db1", // the user is its own field
    "db1/../x",
    "db1|nc",
    "db1&",
    "x".repeat(254),
  ];
  it.each(hostile.map((h) => [JSON.stringify(h), h]))("rejects %s", (_shown, host) => {
    expect(() => resolveConnection({ host })).toThrow(/^connection\.host: /);
  });

  it.each(["db1", "db1.example.com", "10.0.0.5", "::1", "fe80::1%eth0", "my_host-2"])("accepts %s", (host) => {
    expect(resolveConnection({ host }).host).toBe(host);
  });
});

describe("applyRuntimeOverrides", () => {
  const stored = resolveConnection({ host: "db1", privateKey: "STORED-KEY", password: "stored-pw" });

  it("changes nothing without UNDERSTUDY_SSH_* variables (empty ones count as unset)", () => {
    expect(applyRuntimeOverrides(stored, {})).toEqual(stored);
    expect(
      applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PRIVATE_KEY: "", UNDERSTUDY_SSH_PRIVATE_KEY_FILE: "", UNDERSTUDY_SSH_PASSWORD: "" }),
    ).toEqual(stored);
  });

  it("UNDERSTUDY_SSH_PRIVATE_KEY wins over the stored key and over UNDERSTUDY_SSH_PRIVATE_KEY_FILE", () => {
    const c = applyRuntimeOverrides(stored, {
      UNDERSTUDY_SSH_PRIVATE_KEY: "ENV-KEY",
      UNDERSTUDY_SSH_PRIVATE_KEY_FILE: "/nonexistent/never-read",
    });
    expect(c.privateKey).toBe("ENV-KEY");
    expect(c.password).toBe("stored-pw");
  });

  it("UNDERSTUDY_SSH_PRIVATE_KEY_FILE is read at call time and wins over the stored key", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "understudy-conn-"));
    try {
      const file = path.join(dir, "key");
      fs.writeFileSync(file, "FILE-KEY-1\n");
      expect(applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PRIVATE_KEY_FILE: file }).privateKey).toBe("FILE-KEY-1\n");
      fs.writeFileSync(file, "FILE-KEY-2\n"); // rotated
      expect(applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PRIVATE_KEY_FILE: file }).privateKey).toBe("FILE-KEY-2\n");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("an unreadable UNDERSTUDY_SSH_PRIVATE_KEY_FILE is an error naming the variable", () => {
    expect(() => applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PRIVATE_KEY_FILE: "/nonexistent/key" })).toThrow(
      /^UNDERSTUDY_SSH_PRIVATE_KEY_FILE=\/nonexistent\/key: cannot read the key: ENOENT/,
    );
  });

  it("UNDERSTUDY_SSH_PASSWORD wins over the stored password, independently of the key", () => {
    const c = applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PASSWORD: "env-pw" });
    expect(c).toMatchObject({ password: "env-pw", privateKey: "STORED-KEY" });
  });

  it("returns a copy: the stored connection (what state holds) is never changed", () => {
    const before = structuredClone(stored);
    applyRuntimeOverrides(stored, { UNDERSTUDY_SSH_PRIVATE_KEY: "ENV-KEY", UNDERSTUDY_SSH_PASSWORD: "env-pw" });
    expect(stored).toEqual(before);
  });

  it("reads process.env by default", () => {
    const saved = process.env.UNDERSTUDY_SSH_PASSWORD;
    process.env.UNDERSTUDY_SSH_PASSWORD = "from-process-env";
    try {
      expect(applyRuntimeOverrides(stored).password).toBe("from-process-env");
    } finally {
      if (saved === undefined) delete process.env.UNDERSTUDY_SSH_PASSWORD;
      else process.env.UNDERSTUDY_SSH_PASSWORD = saved;
    }
  });
});

describe("describeConnection", () => {
  it("is user@host:port and never shows a secret", () => {
    const c = resolveConnection({ host: "db1", password: "hunter2", privateKey: "KEY" });
    expect(describeConnection(c)).toBe("root@db1:22");
  });

  it("brackets an IPv6 address", () => {
    expect(describeConnection(resolveConnection({ host: "::1", port: 2222 }))).toBe("root@[::1]:2222");
  });
});

/**
 * Type-level compatibility with @pulumi/command, checked by the TypeScript compiler on a
 * small in-memory file (vitest itself does not type-check). The property names come from
 * the installed node_modules/@pulumi/command/types/input.d.ts.
 */
describe("ConnectionArgs matches @pulumi/command's remote.ConnectionArgs", () => {
  const virtualFile = path.join(ROOT, "test/unit/__connection_compat__.ts");

  function compile(source: string): { diagnostics: string[]; program: ts.Program; file: ts.SourceFile } {
    const options: ts.CompilerOptions = {
      strict: true,
      noEmit: true,
      skipLibCheck: true,
      target: ts.ScriptTarget.ES2022,
      module: ts.ModuleKind.CommonJS,
      moduleResolution: ts.ModuleResolutionKind.Node10,
      esModuleInterop: true,
      types: ["node"],
    };
    const host = ts.createCompilerHost(options);
    const getSourceFile = host.getSourceFile.bind(host);
    host.getSourceFile = (name, lang, ...rest) =>
      path.resolve(name) === virtualFile ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest);
    const fileExists = host.fileExists.bind(host);
    host.fileExists = (name) => path.resolve(name) === virtualFile || fileExists(name);
    const program = ts.createProgram([virtualFile], options, host);
    const file = program.getSourceFile(virtualFile)!;
    const diagnostics = [...program.getSyntacticDiagnostics(file), ...program.getSemanticDiagnostics(file)].map((d) =>
      ts.flattenDiagnosticMessageText(d.messageText, "\n"),
    );
    return { diagnostics, program, file };
  }

  /** The string literal members of the type alias `name` declared in the virtual file. */
  function keysOf(program: ts.Program, file: ts.SourceFile, name: string): string[] {
    const checker = program.getTypeChecker();
    const decl = file.statements.find((s): s is ts.TypeAliasDeclaration => ts.isTypeAliasDeclaration(s) && s.name.text === name)!;
    const type = checker.getTypeAtLocation(decl.name);
    const members = type.isUnion() ? type.types : [type];
    return members.map((t) => (t as ts.StringLiteralType).value).sort();
  }

  const header = `
    import type * as pulumi from "@pulumi/pulumi";
    import type { types } from "@pulumi/command";
    import { resolveConnection, type ConnectionArgs } from "../../providers/host/connection";
    type Theirs = types.input.remote.ConnectionArgs;
    type TheirProxy = types.input.remote.ProxyConnectionArgs;
  `;

  it("has the same field names (hostKey included: @pulumi/command has it too)", () => {
    const { diagnostics, program, file } = compile(`${header}
      export type TheirKeys = keyof Theirs;
      export type OurKeys = keyof ConnectionArgs;
      export type TheirProxyKeys = keyof TheirProxy;
      export type OurProxyKeys = keyof NonNullable<ConnectionArgs["proxy"]>;
    `);
    expect(diagnostics).toEqual([]);
    const theirs = keysOf(program, file, "TheirKeys");
    // Guard against a vacuous pass: the names are really read from the package.
    expect(theirs).toContain("perDialTimeout");
    expect(keysOf(program, file, "OurKeys")).toEqual(theirs);
    expect(keysOf(program, file, "OurProxyKeys")).toEqual(keysOf(program, file, "TheirProxyKeys"));
  });

  it("a @pulumi/command connection with plain values is accepted as it is, and ours is a valid @pulumi/command one", () => {
    const { diagnostics } = compile(`${header}
      declare const fromCommand: pulumi.Unwrap<Theirs>;
      resolveConnection(fromCommand);
      const literal: pulumi.Unwrap<Theirs> = {
        host: "db1", port: 22, user: "root", privateKey: "k", privateKeyPassword: "p", password: "pw",
        agentSocketPath: "/a", hostKey: "ssh-ed25519 AAAA", dialErrorLimit: 10, perDialTimeout: 15,
        proxy: { host: "bastion", port: 22, user: "jump", privateKey: "k" },
      };
      resolveConnection(literal);
      declare const ours: ConnectionArgs;
      export const back: Theirs = ours;
    `);
    expect(diagnostics).toEqual([]);
  });

  it("(control) the compiler does reject a wrongly typed field", () => {
    const { diagnostics } = compile(`${header}
      resolveConnection({ host: "db1", port: "22" });
    `);
    expect(diagnostics.join("\n")).toMatch(/Type 'string' is not assignable to type 'number'/);
  });
});
