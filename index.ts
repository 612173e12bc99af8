/**
 * The ready-made program: the stack configuration declares a rehearsal (see config.ts and
 * Pulumi.demo.yaml). `pulumi up` rehearses, `pulumi destroy` discards the clone.
 */
import * as pulumi from "@pulumi/pulumi";
import { promotionSettings, readStackConfig } from "./config";
import { UpgradeRehearsal } from "./components/upgrade-rehearsal";
import { Promotion } from "./components/promotion";

// Every key is read raw from the whole configuration map (not getObject, which warns about
// reading a secret such as `host` or `endpoint` in plain form, and refuses a plain word such
// as `method: logical`), validated in full before anything is declared; an `understudy:` key
// the program does not read is a warning naming the nearest known key. The host connection is
// then passed on as a secret.
const { config: conf, warnings } = readStackConfig(pulumi.runtime.allConfig());
for (const w of warnings) void pulumi.log.warn(w);

const rehearsal = new UpgradeRehearsal(pulumi.getStack(), {
  connection: conf.host ? pulumi.secret(conf.host) : undefined,
  source: conf.source,
  snapshot: conf.snapshot,
  clone: conf.clone,
  to: conf.to,
  toBinDir: conf.toBinDir,
  postgres: conf.postgres,
  mode: conf.mode,
  steps: conf.steps,
  checks: conf.checks,
  reportDir: conf.reportDir,
  // A promotion with the logical method: the rehearsal rehearses that method too (on a stand-in for live, never on live).
  ...(conf.method === "logical" ? { method: "logical" as const, logical: { ...(conf.logical?.applyTimeoutMs !== undefined ? { applyTimeoutMs: conf.logical.applyTimeoutMs } : {}), ...(conf.logical?.accept ? { accept: conf.logical.accept } : {}) } } : {}),
});

export const report = rehearsal.report;
export const reportMarkdown = rehearsal.reportMarkdown;
export const reportFiles = rehearsal.reportFiles;
export const clone = { dataset: rehearsal.clone.dataset, snapshot: rehearsal.clone.snapshot, mountpoint: rehearsal.clone.mountpoint };
export const upgraded = { port: rehearsal.port, socketDir: rehearsal.socketDir, connectionString: rehearsal.connectionString };

// With an endpoint configured, clients reach the database through PgBouncer, and
// `understudy:promote: true` (a reviewed change) swaps them to the upgraded clone.
const promotion = conf.endpoint
  ? new Promotion(`${pulumi.getStack()}-promotion`, {
      rehearsal,
      promote: conf.promote ?? false,
      // The users' passwords stay secret from here on (in state too).
      endpoint: { ...conf.endpoint, users: conf.endpoint.users ? pulumi.secret(conf.endpoint.users) : undefined },
      // endpoint.poolMode and endpoint.retainOnDelete come with the endpoint; method, logical, newLive,
      // liveStartCommand, liveStopCommand, switchoverTimeoutMs, acknowledgeReplicationLoss: as given.
      ...promotionSettings(conf),
    })
  : undefined;
export const endpoint = promotion
  ? { address: promotion.endpointAddress, state: promotion.state, target: promotion.target, pauseWindowMs: promotion.pauseWindowMs, phases: promotion.phases, events: promotion.events }
  : undefined;
