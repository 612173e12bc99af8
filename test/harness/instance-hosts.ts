/**
 * Stand-ins for two machines on this one (the EBS tests): live's instance is this machine,
 * the new live's instance is a network namespace of it. Both record every command they run,
 * so a test can say which "machine" did what.
 */
import * as os from "node:os";
import { LocalHost, writeFileVia } from "../../providers/host/local";
import { asUser, type Host, type RunOptions, type RunResult } from "../../providers/host/types";

/** Live's instance, standing in: this machine; every command recorded. */
export class RecordingLocal extends LocalHost {
  readonly seen: string[] = [];
  override run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.seen.push(argv.join(" "));
    return super.run(argv, opts);
  }
}

/** The new live's instance, standing in: commands run in network namespace `ns` of this machine; every command recorded. */
export class NetnsHost implements Host {
  readonly description: string;
  private readonly inner = new LocalHost();
  readonly seen: string[] = [];
  constructor(private readonly ns: string) {
    this.description = `new-live instance (network namespace ${ns} on this machine)`;
  }
  run(argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    this.seen.push(argv.join(" "));
    return this.inner.run(["nsenter", `--net=/run/netns/${this.ns}`, "--", ...argv], opts);
  }
  runAs(user: string, argv: readonly string[], opts?: RunOptions): Promise<RunResult> {
    const r = asUser(os.userInfo().username, user, argv, opts);
    return this.run(r.argv, r.opts);
  }
  writeFile(path: string, content: string, mode = "0644"): Promise<void> {
    return writeFileVia(this, path, content, mode);
  }
  async close(): Promise<void> {}
}
