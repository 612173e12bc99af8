// The same resources on a database host reached over SSH. The connection has the shape of
// @pulumi/command's remote connection and is stored as a secret. A rotated key never makes
// a clone undeletable: UNDERSTUDY_SSH_PRIVATE_KEY_FILE (or _PRIVATE_KEY / _PASSWORD) in the
// environment of `pulumi up`/`destroy` wins over the stored credentials.
import * as pulumi from "@pulumi/pulumi";
import * as fs from "node:fs";
import { ConnectionArgs, UpgradeRehearsal, ZfsSnapshot, ZfsStorage } from "pulumi-understudy";

const config = new pulumi.Config();
const connection: pulumi.Input<ConnectionArgs> = pulumi.secret({
  host: config.require("dbHost"),
  user: "root",
  privateKey: fs.readFileSync(config.require("keyFile"), "utf8"),
  hostKey: config.get("hostKey"), // e.g. "ssh-ed25519 AAAA...": refuse any other host
});

// The storage: ZFS on that host. Every component takes it (an EBS storage has the same shape).
const storage = new ZfsStorage({ connection });

const snap = new ZfsSnapshot("pre-upgrade", { connection, dataset: "tank/pg13", name: "pre-upgrade" });

const rehearsal = new UpgradeRehearsal("remote-13-to-15", {
  storage,
  source: { dataset: "tank/pg13", pgdata: "main", version: 13, port: 5432 },
  clone: { dataset: "tank/rehearsals/remote" },
  to: 15,
  postgres: { port: 55432, database: "app" },
});

export const snapshot = snap.snapshot;
export const report = rehearsal.report;
