/**
 * Opens a {@link Storage} from its {@link StorageSpec}. Implementations are loaded by name
 * when first used (dynamic providers must not capture them at module load: AWS SDK, ssh2).
 * Spec kinds are part of the state format: never rename one, only add.
 */
import type { Host } from "../host/types";
import { InputError } from "../errors";
import type { Storage, StorageSpec } from "./types";
import * as zfs from "../zfs/storage";
import * as ebs from "../ebs/storage";

export * from "./types";

/** What each backend module exports. */
export interface StorageModule {
  /** Checks the spec's own fields (no I/O); returns it normalized or throws InputError naming `field.*`. */
  validateSpec(spec: StorageSpec, field: string): StorageSpec;
  createStorage(spec: StorageSpec, host: Host): Storage;
}

const backends: Record<string, () => StorageModule> = {
  zfs: () => zfs,
  ebs: () => ebs,
};

function moduleFor(spec: unknown, field: string): StorageModule {
  const kind = spec && typeof spec === "object" ? (spec as StorageSpec).kind : undefined;
  const load = typeof kind === "string" ? backends[kind] : undefined;
  if (!load) throw new InputError(`${field}.kind`, `${JSON.stringify(kind)} is not a storage backend (known: ${Object.keys(backends).join(", ")})`);
  return load();
}

/** Validate a spec without opening anything. */
export function validateStorageSpec(spec: unknown, field = "storage"): StorageSpec {
  return moduleFor(spec, field).validateSpec(spec as StorageSpec, field);
}

/** A host that refuses every command: for a storage used for its syntax checks only. */
const NO_HOST: Host = {
  description: "no host (syntax checks only)",
  run: async () => {
    throw new Error("a command was about to run during a syntax check");
  },
  runAs: async () => {
    throw new Error("a command was about to run during a syntax check");
  },
  writeFile: async () => {
    throw new Error("a file was about to be written during a syntax check");
  },
  close: async () => undefined,
};

/** The backend's id and name rules (no I/O: it has no host), e.g. for a provider's `check`. */
export function storageSyntax(spec: StorageSpec | undefined): Pick<Storage, "validateVolumeId" | "validateSnapshotName" | "cloneTargets" | "siblingVolume"> {
  return openStorage(spec, NO_HOST);
}

/** The storage a spec names, on `host` (where commands run and clones are mounted). */
export function openStorage(spec: StorageSpec | undefined, host: Host): Storage {
  const s = spec ?? { kind: "zfs" };
  const m = moduleFor(s, "storage");
  return m.createStorage(m.validateSpec(s, "storage"), host);
}
