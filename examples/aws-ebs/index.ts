// PostgreSQL self-managed on EC2, data on EBS: hourly crash-consistent snapshot sets of live by
// AWS DLM, a rehearsal instance, a snapshot set of live taken now (after a CHECKPOINT), its
// clones attached and mounted on the rehearsal instance at live's own paths, and the Route53
// name clients use (its value belongs to the cut-over). Live's instance and volumes are only
// ever snapshotted.
//
// Config (pulumi config set ...):
//   liveInstanceId     i-...        live's instance (tagged Name=<liveName>)
//   liveName           db1          the Name tag live already carries (the DLM policy targets it)
//   dataVolumes        JSON list of { volumeId, mountpoint } on live, e.g. PGDATA and pg_wal
//   ami, subnetId, securityGroupId  for the rehearsal instance (live's subnet: live's zone)
//   sshPrivateKey      (secret)     to log in to the rehearsal instance as `admin`
//   zoneId, dbName     the Route53 record clients use, e.g. db.example.com
import * as fs from "node:fs";
import * as pulumi from "@pulumi/pulumi";
import { EbsRehearsalInstance, EbsStorage, route53Endpoint } from "pulumi-understudy";

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
  initialValue: cfg.get("liveAddress") ?? `${liveInstanceId}.internal`,
  importExisting: true,
});

export const rehearsalInstance = box.instanceId;
export const baseSet = base.set;
export const clonesMounted = clones.volumes.apply((v) => v.map((c) => `${c.id} at ${c.mountpoint}`));
export const schedule = hourly.cron;
export const dbName = endpoint.fqdn;
