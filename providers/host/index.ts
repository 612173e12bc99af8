export * from "./types";
export * from "./quote";
export * from "./connection";
export { LocalHost } from "./local";
export { SshHost } from "./ssh";
import { ConnectionArgs, resolveConnection } from "./connection";
import { LocalHost } from "./local";
import { SshHost } from "./ssh";
import type { Host } from "./types";

/** A local host when `connection` is absent, an SSH host otherwise. */
export function openHost(connection?: ConnectionArgs | null): Host {
  if (!connection) return new LocalHost();
  return new SshHost(resolveConnection(connection));
}

/** Run `fn` with a host and always close it afterwards. */
export async function withHost<T>(connection: ConnectionArgs | null | undefined, fn: (h: Host) => Promise<T>): Promise<T> {
  const host = openHost(connection);
  try {
    return await fn(host);
  } finally {
    await host.close();
  }
}
