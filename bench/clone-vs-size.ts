/**
 * Clone time against data size: bare `zfs snapshot` + `zfs clone`, the same through the
 * library's driver, through `pulumi up` (ZfsSnapshot + ZfsClone), and a full copy of the data.
 * Prints a Markdown table. Run: `npm run bench -- clone` (after scripts/setup.sh).
 *
 * Sizes default to 10 MB, 1 GB and 5 GB; override with BENCH_SIZES_MB=10,1024.
 */
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import { createPool, sh, zfsDestroyByHand } from "../test/harness/zfs";
import { fileBackend, fixtureProgram, openStack } from "../test/harness/pulumi";
import { ZfsDriver } from "../providers/zfs/driver";
import { LocalHost } from "../providers/host/local";

function ms(fn: () => void): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
async function msAsync(fn: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
const fmt = (x: number) => (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);

async function main(): Promise<void> {
  const sizes = (process.env.BENCH_SIZES_MB ?? "10,1024,5120").split(",").map(Number);
  const total = sizes.reduce((a, b) => a + b, 0);
  const pool = createPool("usbench", Math.ceil((total * 2.5) / 1024) + 2);
  const rows: string[] = [];
  try {
    const drv = new ZfsDriver(new LocalHost());
    const backend = fileBackend();
    const program = fixtureProgram("zfs-program");
    for (const mb of sizes) {
      const ds = `${pool.name}/d${mb}`;
      sh(["zfs", "create", ds]);
      process.stderr.write(`writing ${mb} MB of random data into ${ds}...\n`);
      execFileSync("dd", ["if=/dev/urandom", `of=/srv/${pool.name}/d${mb}/data.bin`, "bs=1M", `count=${mb}`, "status=none"]);
      execFileSync("sync");
      const bare = ms(() => {
        sh(["zfs", "snapshot", `${ds}@bare`]);
        sh(["zfs", "clone", `${ds}@bare`, `${pool.name}/c${mb}-bare`]);
      });
      const lib = await msAsync(async () => {
        await drv.snapshot(`${ds}@lib`, { "understudy:owner": "bench" });
        await drv.clone(`${ds}@lib`, `${pool.name}/c${mb}-lib`, { "understudy:owner": "bench" });
      });
      const stack = await openStack(program, `b${mb}`, backend, {
        resources: {
          value: JSON.stringify([
            { type: "ZfsSnapshot", name: "s", args: { dataset: ds, name: "pulumi" } },
            { type: "ZfsClone", name: "c", args: { snapshot: { $ref: "s.snapshot" }, dataset: `${pool.name}/c${mb}-pulumi` } },
          ]),
        },
      });
      const up = await msAsync(() => stack.up());
      const used = Number(sh(["zfs", "get", "-H", "-p", "-o", "value", "used", `${pool.name}/c${mb}-pulumi`]).trim());
      sh(["zfs", "create", `${pool.name}/copy${mb}`]);
      const copy = ms(() => {
        execFileSync("cp", ["-a", `/srv/${pool.name}/d${mb}/.`, `/srv/${pool.name}/copy${mb}/`]);
        execFileSync("sync");
      });
      await stack.destroy();
      rows.push(`| ${mb >= 1024 ? `${mb / 1024} GB` : `${mb} MB`} | ${fmt(bare)} | ${fmt(lib)} | ${fmt(up)} | ${used} B | ${fmt(copy)} |`);
      process.stderr.write(rows[rows.length - 1] + "\n");
      zfsDestroyByHand(`${pool.name}/copy${mb}`, { recursive: true });
    }
  } finally {
    pool.destroy();
  }
  console.log("| data size | bare `zfs snapshot` + `zfs clone` | library driver | `pulumi up` (ZfsSnapshot + ZfsClone, whole run) | clone `used` | full copy (`cp -a`) |");
  console.log("| --- | --- | --- | --- | --- | --- |");
  for (const r of rows) console.log(r);
  console.log(`\nzfs-fuse on a sparse file, ${new Date().toISOString().slice(0, 10)}, ${fs.readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)?.[1] ?? "?"}, 2 cores.`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
