// PostgreSQL self-managed on EC2, data on EBS: hourly crash-consistent snapshot sets of live by
// AWS DLM, a rehearsal instance, a snapshot set of live taken now (after a CHECKPOINT), its
// clones attached and mounted on the rehearsal instance at live's own paths, and the Route53
// name clients use; an upgrade rehearsal 13 -> 15 on those clones and the promotion that swaps
// the record to the upgraded clone when `promote` is set. Live's instance and volumes are
// only ever snapshotted, and PostgreSQL on it stopped cleanly during a promotion (kept for
// roll-back).
//
// Config (pulumi config set ...):
//   liveInstanceId     i-...        live's instance (tagged Name=<liveName>)
//   liveName           db1          the Name tag live already carries (the DLM policy targets it)
//   dataVolumes        JSON list of { volumeId, mountpoint } on live, e.g. PGDATA and pg_wal
//   ami, subnetId, securityGroupId  for the rehearsal instance (live's subnet: live's zone)
//   sshPrivateKey      (secret)     to log in to the rehearsal instance as `admin`
//   zoneId, dbName     the Route53 record clients use, e.g. db.example.com
//   liveAddress        the record's value today (live's instance)
//   rehearsalAddress   the rehearsal instance's address (the new live's, after a promotion)
//   promote            true to promote (a reviewed change), false again to roll back
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { EbsRehearsalInstance, EbsStorage, Promotion, UpgradeRehearsal, route53Endpoint } from "pulumi-understudy";

const cfg = new pulumi.Config();
const region = new pulumi.Config("aws").require("region");
const liveInstanceId = cfg.require("liveInstanceId");
const dataVolumes = cfg.requireObject<Array<{ volumeId: string; mountpoint: string }>>("dataVolumes");
const privateKey = cfg.getSecret("sshPrivateKey") ?? pulumi.secret(fs.readFileSync(`${process.env.HOME}/.ssh/id_ed25519`, "utf8"));

// The rehearsal instance: created in live's subnet (so in live's zone), stopped (kept) on destroy.
const box = new EbsRehearsalInstance("rehearsal-box", {
  region,
  liveInstanceId,
  create: {
    ami: cfg.require("ami"),
    instanceType: cfg.get("instanceType") ?? "r6i.2xlarge",
    subnetId: cfg.require("subnetId"),
    securityGroupIds: [cfg.require("securityGroupId")],
    tags: { team: "dba" },
  },
  connection: pulumi.secret(privateKey).apply((k) => ({ user: "admin", privateKey: k })),
  onDestroy: "stop",
});

const storage = new EbsStorage({
  region,
  live: { instanceId: liveInstanceId, volumes: dataVolumes },
  rehearsal: box.target,
  // Clones of large volumes load lazily from S3: initialize them at 300 MiB/s in the background.
  volume: { iops: 6000, throughput: 500, initializationRate: 300 },
  tags: { team: "dba" },
  schedule: { targetTags: { Name: cfg.get("liveName") ?? "db1" } },
  // SSH to live's instance: a CHECKPOINT before each set of live, and a promotion stops
  // PostgreSQL there cleanly (and starts it again to roll back).
  liveConnection: pulumi.secret(privateKey).apply((k) => ({ host: cfg.require("liveAddress"), user: "admin", privateKey: k })),
});

// Hourly sets of live by DLM: 24 hourly and 7 daily kept.
const hourly = storage.schedule("pg-hourly", { volumes: dataVolumes.map((v) => v.volumeId), every: "1h", keep: { hourly: 24, daily: 7 }, prefix: "hourly" }, {});

// A set of live now, then its clones on the rehearsal instance, at live's paths.
const sources = dataVolumes.map((v) => v.volumeId);
const base = storage.snapshotSet("base", { volumes: sources, snapshotName: `understudy-${pulumi.getStack()}-base` }, {});
const clones = storage.cloneSet("rehearsal", { set: base.set, requests: storage.cloneRequests("rehearsal", sources) }, { dependsOn: base.resources });

// The name clients use; a promotion swaps its value (Route53Switch), so Pulumi ignores it afterwards.
const endpoint = route53Endpoint("db", {
  zoneId: cfg.require("zoneId"),
  name: cfg.require("dbName"),
  initialValue: cfg.require("liveAddress"),
  importExisting: true,
});

// The upgrade rehearsed on clones of live (13 -> 15), a snapshot set of the clones after each step.
const rehearsal = new UpgradeRehearsal("pg13-to-15", {
  storage,
  source: { dataset: dataVolumes[0].volumeId, pgdata: "13/main", version: 13, port: 5432 },
  clone: { dataset: "pg13-to-15" },
  to: 15,
  postgres: { port: 55432, database: cfg.get("database") ?? "app" },
});

// The reviewed change: `promote: false => true` swaps the record to the upgraded clone on the
// rehearsal instance. DNS holds no clients: the outage is the rehearsal's predicted cut-over
// plus the TTL (README, "On AWS").
const promotion = new Promotion(
  "go-live",
  {
    rehearsal,
    promote: cfg.getBoolean("promote") ?? false,
    endpoint: {
      route53: { zoneId: cfg.require("zoneId"), name: cfg.require("dbName"), ttl: 30 },
      liveAddress: cfg.require("liveAddress"),
      newLiveAddress: cfg.require("rehearsalAddress"),
      database: cfg.get("database") ?? "app",
    },
    // Clients keep connecting to <dbName>:5432: the new live listens on live's port.
    newLive: { port: 5432 },
  },
  { dependsOn: [endpoint.record] },
);

export const rehearsalInstance = box.instanceId;
export const report = rehearsal.report;
export const promotionState = promotion.state;
export const baseSet = base.set;
export const clonesMounted = clones.volumes.apply((v) => v.map((c) => `${c.id} at ${c.mountpoint}`));
export const schedule = hourly.cron;
export const dbName = endpoint.fqdn;
