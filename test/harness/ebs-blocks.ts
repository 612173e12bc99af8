/**
 * The blocks behind EBS volumes and snapshots in the tests, on loop devices (LoopLab): moto
 * keeps no data, so when it answers CreateSnapshots each volume's image is copied (what the
 * snapshot holds), and a volume made from a snapshot appears, through the test-only device
 * lookup, as a loop device holding a copy of the snapshot's blocks.
 */
import { DescribeVolumesCommand, type EC2Client } from "@aws-sdk/client-ec2";
import { execFileSync } from "node:child_process";
import type { DeviceLookup } from "../../providers/ebs/instance";
import type { LoopLab } from "./loop";

export class EbsBlocks {
  /** EBS volume or snapshot id -> the image holding its blocks. */
  readonly images = new Map<string, string>();

  /** `admin`: the client that reads volumes back (set once moto runs). */
  constructor(
    private readonly lab: LoopLab,
    private readonly admin: () => EC2Client,
  ) {}

  /** When `client`'s CreateSnapshots is answered, copy each volume's image under the snapshot's id. */
  watchSnapshots(client: EC2Client, name: string): void {
    client.middlewareStack.add(
      (next, context) => async (args) => {
        if (context.commandName === "CreateSnapshotsCommand") execFileSync("sync");
        const r = await next(args);
        if (context.commandName === "CreateSnapshotsCommand") {
          const out = r.output as { SnapshotInfos?: Array<{ SnapshotId?: string; VolumeId?: string }>; Snapshots?: Array<{ SnapshotId?: string; VolumeId?: string }> };
          for (const s of out.SnapshotInfos ?? out.Snapshots ?? []) {
            const img = this.images.get(s.VolumeId!);
            if (img) this.images.set(s.SnapshotId!, this.lab.copy(img, s.SnapshotId!));
          }
        }
        return r;
      },
      { step: "initialize", name },
    );
  }

  /** Test-only device lookup: a volume made from a snapshot appears as a loop device holding a copy of the snapshot's blocks. */
  readonly lookup: DeviceLookup = async (_host, volumeId) => {
    const known = this.images.get(volumeId);
    if (known) return this.lab.devices.get(known) ?? this.lab.attach(known);
    const v = (await this.admin().send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))).Volumes![0];
    const snapImg = v.SnapshotId ? this.images.get(v.SnapshotId) : undefined;
    if (!snapImg) throw new Error(`test stand-in: no blocks for ${volumeId} (snapshot ${v.SnapshotId})`);
    const img = this.lab.copy(snapImg, volumeId);
    this.images.set(volumeId, img);
    return this.lab.attach(img);
  };
}
