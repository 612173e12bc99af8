/**
 * EC2 helpers for tests against moto: a client that records the commands it sends, SDK
 * middleware that injects what moto lacks (throttling, pending states, fast snapshot
 * restore), and a small "live" world (instances and volumes) to work on.
 */
import {
  AttachVolumeCommand,
  CreateTagsCommand,
  CreateVolumeCommand,
  DescribeImagesCommand,
  EC2Client,
  RunInstancesCommand,
} from "@aws-sdk/client-ec2";

export interface RecordingClient {
  client: EC2Client;
  /** Command names in the order they were sent (each SDK attempt once, before retries). */
  calls: string[];
  /** Inputs of each call, same order. */
  inputs: Array<Record<string, unknown>>;
}

export function recordingClient(endpoint: string, opts: { maxAttempts?: number } = {}): RecordingClient {
  const client = new EC2Client({
    region: "us-east-1",
    endpoint,
    credentials: { accessKeyId: "testing", secretAccessKey: "testing" },
    maxAttempts: opts.maxAttempts ?? 4,
    retryMode: "standard",
  });
  const calls: string[] = [];
  const inputs: Array<Record<string, unknown>> = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      calls.push(String(context.commandName));
      inputs.push(JSON.parse(JSON.stringify(args.input ?? {})));
      return next(args);
    },
    { step: "initialize", name: "understudyRecordCalls", priority: "high" },
  );
  return { client, calls, inputs };
}

/**
 * Throw a ThrottlingException from INSIDE the retry loop for the first `times` calls of
 * `command` (the error a real EC2 endpoint returns under load), so the SDK's retry strategy sees it.
 */
export function injectThrottling(client: EC2Client, command: string, times: number): { injected: number } {
  const state = { injected: 0 };
  type Mw = Parameters<EC2Client["middlewareStack"]["addRelativeTo"]>[0];
  const throttle = (next: (a: unknown) => Promise<unknown>, context: { commandName?: string }) => async (args: unknown) => {
    if (context.commandName === command && state.injected < times) {
      state.injected++;
      throw Object.assign(new Error("Rate exceeded"), {
        name: "ThrottlingException",
        $fault: "client",
        $metadata: { httpStatusCode: 400 },
      });
    }
    return next(args);
  };
  client.middlewareStack.addRelativeTo(
    throttle as unknown as Mw,
    { relation: "after", toMiddleware: "retryMiddleware", name: `understudyThrottle${command}${Math.random()}` },
  );
  return state;
}

/**
 * Rewrite a command's output (after moto answered): e.g. snapshots `pending` for the first
 * polls, since moto completes snapshots at once.
 */
export function rewriteOutput(
  client: EC2Client,
  command: string,
  rewrite: (output: Record<string, unknown>, call: number, input: Record<string, unknown>) => void,
): { calls: number } {
  const state = { calls: 0 };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const r = await next(args);
      if (context.commandName === command) rewrite(r.output as unknown as Record<string, unknown>, state.calls++, args.input as Record<string, unknown>);
      return r;
    },
    { step: "initialize", name: `understudyRewrite${command}${Math.random()}`, priority: "low" },
  );
  return state;
}

/** Answer a command without sending it (for APIs moto lacks, e.g. fast snapshot restore). */
export function answer(client: EC2Client, command: string, respond: (input: Record<string, unknown>, call: number) => Record<string, unknown>): { calls: number } {
  const state = { calls: 0 };
  client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName !== command) return next(args);
      return { output: { $metadata: { httpStatusCode: 200 }, ...respond(args.input as Record<string, unknown>, state.calls++) }, response: {} } as never;
    },
    { step: "initialize", name: `understudyAnswer${command}${Math.random()}`, priority: "low" },
  );
  return state;
}

export interface World {
  liveInstance: string;
  rehearsalInstance: string;
  /** An instance in another zone (us-east-1b). */
  otherZoneInstance: string;
  /** Live's data volumes (attached to live). */
  liveData: string[];
  /** A volume attached to live that is not a data volume of ours (e.g. a scratch disk). */
  liveOther: string;
  /** A volume attached to nothing, not ours. */
  stray: string;
}

/** Instances and volumes as a user's account would have them (none of them ours). */
export async function makeWorld(client: EC2Client, dataVolumes = 2): Promise<World> {
  const imgs = await client.send(new DescribeImagesCommand({}));
  const ami = imgs.Images![0].ImageId!;
  const run = async (zone: string, name: string) =>
    (await client.send(new RunInstancesCommand({ ImageId: ami, MinCount: 1, MaxCount: 1, Placement: { AvailabilityZone: zone }, TagSpecifications: [{ ResourceType: "instance", Tags: [{ Key: "Name", Value: name }] }] })))
      .Instances![0].InstanceId!;
  const liveInstance = await run("us-east-1a", "db1");
  const rehearsalInstance = await run("us-east-1a", "rehearsal");
  const otherZoneInstance = await run("us-east-1b", "elsewhere");
  const vol = async (size: number, name: string) =>
    (await client.send(new CreateVolumeCommand({ AvailabilityZone: "us-east-1a", Size: size, VolumeType: "gp3", TagSpecifications: [{ ResourceType: "volume", Tags: [{ Key: "Name", Value: name }] }] }))).VolumeId!;
  const liveData: string[] = [];
  const devices = "fghijk";
  for (let i = 0; i < dataVolumes; i++) {
    const v = await vol(10 + i, `db1-data-${i}`);
    await client.send(new AttachVolumeCommand({ VolumeId: v, InstanceId: liveInstance, Device: `/dev/sd${devices[i]}` }));
    liveData.push(v);
  }
  const liveOther = await vol(5, "db1-scratch");
  await client.send(new AttachVolumeCommand({ VolumeId: liveOther, InstanceId: liveInstance, Device: "/dev/sdp" }));
  const stray = await vol(1, "someone-else");
  await client.send(new CreateTagsCommand({ Resources: [stray], Tags: [{ Key: "team", Value: "other" }] }));
  return { liveInstance, rehearsalInstance, otherZoneInstance, liveData, liveOther, stray };
}
