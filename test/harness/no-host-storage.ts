/**
 * ZFS storage with no host behind it, for component tests under `pulumi.runtime.setMocks`:
 * everything the program reads on live while it runs (its layout, its databases, its
 * replication) fails to be read, and the components fall back as they do when a host cannot
 * be reached (one plain dataset, the endpoint's own database, no replication listed).
 */
import * as pulumi from "@pulumi/pulumi";
import { ZfsStorage } from "../../components/storage/zfs";

const unreachable = new Proxy({}, { get: () => () => Promise.reject(new Error("no host in this test")) });

export class NoHostZfs extends ZfsStorage {
  override withStorage<T>(fn: (s: never, h: never) => Promise<T>): pulumi.Output<T> {
    return pulumi.output(fn(unreachable as never, unreachable as never)) as unknown as pulumi.Output<T>;
  }
}
