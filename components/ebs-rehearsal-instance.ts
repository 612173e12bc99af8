import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../providers/host/connection";
import { InputError } from "../providers/errors";
import { ownerId } from "../providers/common";
import { validateAvailabilityZone, validateEndpoint, validateInstanceId, validateRegion, validateTags } from "../providers/ebs/spec";
import { UnderstudyResource } from "../providers/shim";
import { loadPulumiAws } from "./aws";
import type { EbsRehearsalTarget } from "./storage/ebs";

/** An instance the component creates (in live's subnet and zone, from an AMI or a launch template). */
export interface EbsRehearsalInstanceCreate {
  /** AMI id (`ami-...`): an image with PostgreSQL's old and new versions installed. Or a launch template. */
  ami?: pulumi.Input<string>;
  /** A launch template holding the AMI, instance profile, user data... (`id` or `name`, optional `version`). */
  launchTemplate?: { id?: pulumi.Input<string>; name?: pulumi.Input<string>; version?: pulumi.Input<string> };
  /** e.g. `r6i.2xlarge`: enough memory for the rehearsal's PostgreSQL. */
  instanceType: pulumi.Input<string>;
  /** Live's subnet (so the instance is in live's zone and reaches what live reaches). */
  subnetId: pulumi.Input<string>;
  /** Security groups for the instance (SSH from where Pulumi runs; nothing from clients). */
  securityGroupIds: pulumi.Input<pulumi.Input<string>[]>;
  /** An EC2 key pair name, if the AMI does not provision keys otherwise. */
  keyName?: pulumi.Input<string>;
  /** An instance profile (e.g. for the SSM agent). */
  iamInstanceProfile?: pulumi.Input<string>;
  /** Root volume size in GiB (default: the AMI's). */
  rootVolumeSizeGiB?: pulumi.Input<number>;
  userData?: pulumi.Input<string>;
  tags?: Record<string, string>;
}

export interface EbsRehearsalInstanceArgs {
  /** Region (for stopping the instance on destroy). */
  region: string;
  /** Another EC2 endpoint (only used to stop the instance). */
  endpoint?: string;
  /** An existing instance: its id and zone. Give this or `create`. */
  existing?: { instanceId: pulumi.Input<string>; availabilityZone: pulumi.Input<string> };
  /** Create one. */
  create?: EbsRehearsalInstanceCreate;
  /**
   * SSH to the instance, shaped like `@pulumi/command`'s connection. For a created instance
   * `host` may be left out: its private IP is used. Stored as a secret.
   */
  connection: pulumi.Input<Omit<ConnectionArgs, "host"> & { host?: string }>;
  /**
   * What `pulumi destroy` does to an instance the component created: `terminate` (default) or
   * `stop` (kept, stopped, with its root volume: cheaper to restart, still billed for storage).
   * An existing instance is never stopped or terminated.
   */
  onDestroy?: "terminate" | "stop";
  /** Live's instance: refused as the rehearsal instance, never stopped. */
  liveInstanceId?: string;
}

/**
 * The EC2 instance clones are attached to and the rehearsal runs on: an instance you give, or
 * one created from an AMI or launch template in live's subnet (so in live's zone, where the
 * clones' volumes must be), with your security groups. Pass {@link EbsRehearsalInstance.target}
 * as `EbsStorage`'s `rehearsal`.
 *
 * @example
 * ```ts
 * const box = new EbsRehearsalInstance("rehearsal-box", {
 *   region: "eu-west-1",
 *   create: { ami: "ami-0123456789abcdef0", instanceType: "r6i.2xlarge", subnetId: "subnet-0abc", securityGroupIds: ["sg-0abc"], keyName: "ops" },
 *   connection: { user: "admin", privateKey },
 *   onDestroy: "stop",
 * });
 * const storage = new EbsStorage({ region: "eu-west-1", live, rehearsal: box.target });
 * ```
 */
export class EbsRehearsalInstance extends pulumi.ComponentResource {
  readonly instanceId: pulumi.Output<string>;
  readonly availabilityZone: pulumi.Output<string>;
  /** The SSH connection with `host` filled in (secret). */
  readonly connection: pulumi.Output<ConnectionArgs>;
  /** What `EbsStorage` takes as `rehearsal`. */
  readonly target: EbsRehearsalTarget;

  constructor(name: string, args: EbsRehearsalInstanceArgs, opts?: pulumi.ComponentResourceOptions) {
    super("understudy:index:EbsRehearsalInstance", name, {}, opts);
    validateRegion(args.region, "region");
    if (args.endpoint !== undefined) validateEndpoint(args.endpoint, "endpoint");
    if (!!args.existing === !!args.create) throw new InputError("create", "give either `existing` (an instance id and zone) or `create`, not both and not neither");
    const onDestroy = args.onDestroy ?? "terminate";
    if (onDestroy !== "terminate" && onDestroy !== "stop") throw new InputError("onDestroy", `${JSON.stringify(onDestroy)} must be "terminate" or "stop"`);
    if (args.liveInstanceId !== undefined) validateInstanceId(args.liveInstanceId, "liveInstanceId");
    if (args.existing) {
      const e = args.existing;
      if (typeof e.instanceId === "string") {
        validateInstanceId(e.instanceId, "existing.instanceId");
        if (e.instanceId === args.liveInstanceId) throw new InputError("existing.instanceId", `${e.instanceId} is live's instance; the rehearsal needs another one`);
      }
      if (typeof e.availabilityZone === "string") validateAvailabilityZone(e.availabilityZone, "existing.availabilityZone", args.region);
      this.instanceId = pulumi.output(e.instanceId);
      this.availabilityZone = pulumi.output(e.availabilityZone);
      this.connection = pulumi.secret(pulumi.output(args.connection).apply((c) => {
        if (!c.host) throw new InputError("connection.host", "an existing instance needs connection.host");
        return c as ConnectionArgs;
      }));
    } else {
      const c = args.create!;
      if (!c.ami === !c.launchTemplate) throw new InputError("create.ami", "give either an AMI or a launch template");
      if (typeof c.ami === "string" && !/^ami-([0-9a-f]{8}|[0-9a-f]{17})$/.test(c.ami)) throw new InputError("create.ami", `${JSON.stringify(c.ami)} is not an AMI id`);
      if (typeof c.subnetId === "string" && !/^subnet-([0-9a-f]{8}|[0-9a-f]{17})$/.test(c.subnetId)) throw new InputError("create.subnetId", `${JSON.stringify(c.subnetId)} is not a subnet id`);
      if (Array.isArray(c.securityGroupIds)) {
        if (c.securityGroupIds.length === 0) throw new InputError("create.securityGroupIds", "give at least one security group (SSH from where Pulumi runs)");
        c.securityGroupIds.forEach((g, i) => {
          if (typeof g === "string" && !/^sg-([0-9a-f]{8}|[0-9a-f]{17})$/.test(g)) throw new InputError(`create.securityGroupIds[${i}]`, `${JSON.stringify(g)} is not a security group id`);
        });
      }
      if (c.tags) validateTags(c.tags, "create.tags");
      const aws = loadPulumiAws("EbsRehearsalInstance");
      const owner = ownerId("EbsRehearsalInstance", name);
      const instance = new aws.ec2.Instance(
        `${name}`,
        {
          ami: c.ami,
          launchTemplate: c.launchTemplate,
          instanceType: c.instanceType,
          subnetId: c.subnetId,
          vpcSecurityGroupIds: c.securityGroupIds,
          keyName: c.keyName,
          iamInstanceProfile: c.iamInstanceProfile,
          userData: c.userData,
          rootBlockDevice: c.rootVolumeSizeGiB ? { volumeSize: c.rootVolumeSizeGiB, volumeType: "gp3", deleteOnTermination: true } : undefined,
          // Clones are attached by Understudy at run time: never let Pulumi see them as drift.
          tags: { ...(c.tags ?? {}), Name: c.tags?.Name ?? `understudy ${name}`, "understudy:owner": owner },
        },
        // "stop": the instance is kept on destroy and EbsInstanceStop stops it.
        { parent: this, retainOnDelete: onDestroy === "stop", ignoreChanges: ["ebsBlockDevices"] },
      );
      this.instanceId = instance.id;
      this.availabilityZone = instance.availabilityZone;
      this.connection = pulumi.secret(pulumi.all([args.connection, instance.privateIp]).apply(([conn, ip]) => ({ ...conn, host: conn.host ?? ip }) as ConnectionArgs));
      if (onDestroy === "stop") {
        new EbsInstanceStop(`${name}-stop`, { region: args.region, endpoint: args.endpoint, instanceId: instance.id, owner, liveInstanceId: args.liveInstanceId }, { parent: this, dependsOn: [instance] });
      }
    }
    this.target = { instanceId: this.instanceId, availabilityZone: this.availabilityZone, connection: this.connection };
    this.registerOutputs({ instanceId: this.instanceId, availabilityZone: this.availabilityZone });
  }
}

interface EbsInstanceStopArgs {
  region: string;
  endpoint?: string;
  instanceId: pulumi.Input<string>;
  owner: string;
  liveInstanceId?: string;
}

/** Stops (never terminates) an instance we created when it is destroyed; refuses live's. */
class EbsInstanceStop extends UnderstudyResource {
  constructor(name: string, args: EbsInstanceStopArgs, opts?: pulumi.CustomResourceOptions) {
    super("EbsInstanceStop", name, { ...args, label: name }, opts);
  }
}
