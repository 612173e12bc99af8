import * as pulumi from "@pulumi/pulumi";
import type { ConnectionArgs } from "../host/connection";
import { withHost } from "../host";
import { failure, isUnknown, ownerId, progress, checkConnection } from "../common";
import { UnderstudyResource } from "../shim";
import { declaredDiff, type DiffSpec } from "../diff";
import { installSchedule, paths, removeSchedule, ScheduleSpec, validateSchedule, cronExpression } from "./schedule";
import { validateDataset } from "./names";

interface Inputs {
  connection?: ConnectionArgs;
  scheduleId: string;
  dataset: string;
  every: string;
  prefix: string;
  keepHourly: number;
  keepDaily: number;
  owner: string;
  hook?: string[];
  hookUser?: string;
  pruneOnDelete: boolean;
  label?: string;
}

interface Outputs extends Inputs {
  scriptPath: string;
  cronPath: string;
  logPath: string;
  cron: string;
}

function spec(i: Inputs): ScheduleSpec {
  return {
    id: i.scheduleId,
    dataset: i.dataset,
    every: i.every,
    prefix: i.prefix,
    keep: { hourly: i.keepHourly, daily: i.keepDaily },
    owner: i.owner,
    hook: i.hook,
    hookUser: i.hookUser,
  };
}

function outputs(i: Inputs): Outputs {
  const p = paths(i.scheduleId);
  return { ...i, scriptPath: p.script, cronPath: p.cron, logPath: p.log, cron: cronExpression(i.every) };
}

async function install(i: Inputs): Promise<void> {
  await withHost(i.connection, async (h) => {
    for (const w of await installSchedule(h, spec(i))) progress(i.label ?? i.scheduleId, `warning: ${w}`);
    progress(i.label ?? i.scheduleId, `installed ${paths(i.scheduleId).cron} (${cronExpression(i.every)}) for ${i.dataset}`);
  });
}

/** Another id, dataset or prefix is another schedule (its snapshots are named by it); timing, retention and hook change in place. */
export const SCHEDULE_DIFF: DiffSpec = {
  replace: ["scheduleId", "dataset", "prefix"],
  update: ["every", "keepHourly", "keepDaily", "hook", "hookUser", "pruneOnDelete"],
  ignore: ["owner", "label"],
};
const diff = declaredDiff(SCHEDULE_DIFF);

export const zfsScheduleProvider: pulumi.dynamic.ResourceProvider = {
  async check(_olds: Inputs, news: Inputs) {
    const failures: pulumi.dynamic.CheckFailure[] = [];
    failures.push(...checkConnection(news.connection));
    if (!isUnknown(news.dataset)) failures.push(...failure("dataset", () => validateDataset(news.dataset, "dataset")));
    // The schedule's own fields, even while the connection is not known yet (preview).
    if (!isUnknown(spec(news))) {
      // On the field the validator named (every, prefix, keep.hourly, ...).
      const f = failure(undefined, () => validateSchedule(spec(news)));
      if (failures.length === 0) failures.push(...f);
    }
    return { inputs: news, failures };
  },

  async diff(_id: string, olds: Outputs, news: Inputs) {
    return diff(olds as unknown as Record<string, unknown>, news as unknown as Record<string, unknown>);
  },

  async create(inputs: Inputs) {
    await install(inputs);
    return { id: paths(inputs.scheduleId).cron, outs: outputs(inputs) };
  },

  async read(id: string, props: Outputs) {
    return await withHost(props.connection, async (h) => {
      const r = await h.run(["test", "-f", props.cronPath], { okExitCodes: [0, 1] });
      if (r.exitCode !== 0) return { id: undefined as unknown as string, props: {} };
      return { id, props };
    });
  },

  async update(_id: string, _olds: Outputs, news: Inputs) {
    await install(news);
    return { outs: outputs(news) };
  },

  async delete(_id: string, props: Outputs) {
    await withHost(props.connection, async (h) => {
      const { removed, kept } = await removeSchedule(h, spec(props), props.pruneOnDelete);
      const label = props.label ?? props.scheduleId;
      progress(label, `removed ${props.cronPath} and ${props.scriptPath}`);
      if (removed.length) progress(label, `destroyed ${removed.length} scheduled snapshot(s) of ${props.dataset}`);
      if (kept.length) progress(label, `kept snapshots that have clones: ${kept.join("; ")}`);
    });
  },
};

export interface ZfsSnapshotScheduleArgs {
  connection?: pulumi.Input<ConnectionArgs>;
  dataset: pulumi.Input<string>;
  every?: pulumi.Input<string>;
  prefix?: pulumi.Input<string>;
  keepHourly?: pulumi.Input<number>;
  keepDaily?: pulumi.Input<number>;
  hook?: pulumi.Input<pulumi.Input<string>[]>;
  hookUser?: pulumi.Input<string>;
  pruneOnDelete?: pulumi.Input<boolean>;
}

/** The host-side part of a {@link SnapshotSchedule}: a cron entry and its script. */
export class ZfsSnapshotSchedule extends UnderstudyResource {
  declare readonly scriptPath: pulumi.Output<string>;
  declare readonly cronPath: pulumi.Output<string>;
  declare readonly logPath: pulumi.Output<string>;
  declare readonly cron: pulumi.Output<string>;
  declare readonly owner: pulumi.Output<string>;
  declare readonly prefix: pulumi.Output<string>;

  constructor(name: string, args: ZfsSnapshotScheduleArgs, opts?: pulumi.CustomResourceOptions) {
    const owner = ownerId("SnapshotSchedule", name);
    const id = `${pulumi.getStack()}-${name}`.toLowerCase().replace(/[^a-z0-9-]+/g, "-").slice(0, 50) + "-" + shortHash(owner);
    super(
      "ZfsSnapshotSchedule",
      name,
      {
        connection: args.connection,
        scheduleId: id,
        dataset: args.dataset,
        every: args.every ?? "1h",
        prefix: args.prefix ?? "understudy",
        keepHourly: args.keepHourly ?? 24,
        keepDaily: args.keepDaily ?? 7,
        owner,
        hook: args.hook,
        hookUser: args.hookUser,
        pruneOnDelete: args.pruneOnDelete ?? true,
        label: name,
        scriptPath: undefined,
        cronPath: undefined,
        logPath: undefined,
        cron: undefined,
      },
      opts,
    );
  }
}

function shortHash(s: string): string {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619) >>> 0;
  return h.toString(36).slice(0, 6);
}
