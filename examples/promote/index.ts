// Rehearse, then promote with a reviewed change: `pulumi config set promote true`,
// `pulumi preview` shows `~ promote: false => true` on the cut-over, `pulumi up` swaps
// PgBouncer to the upgraded clone without losing a write. `promote false` rolls back.
import * as pulumi from "@pulumi/pulumi";
import { Promotion, UpgradeRehearsal } from "pulumi-understudy";

const config = new pulumi.Config();

const rehearsal = new UpgradeRehearsal("pg13-to-15", {
  source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432 },
  clone: { dataset: "tank/rehearsals/pg13-to-15" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});

const promotion = new Promotion("go-live", {
  rehearsal,
  promote: config.getBoolean("promote") ?? false,
  endpoint: {
    name: "app",
    listenPort: 6432,
    database: "app",
    authType: "scram-sha-256",
    users: config.requireSecretObject<Array<{ name: string; password: string }>>("bouncerUsers"),
    pauseTimeoutMs: 10_000,
  },
});

export const state = promotion.state;
export const servedBy = promotion.target;
export const pauseWindowMs = promotion.pauseWindowMs;
