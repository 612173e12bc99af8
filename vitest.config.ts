import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // One machine, one zfs-fuse daemon, real PostgreSQL servers: files run one at a time.
    fileParallelism: false,
    testTimeout: 15 * 60 * 1000,
    hookTimeout: 10 * 60 * 1000,
    reporters: ["verbose"],
  },
});
