export * from "./names";
export * from "./driver";
export { ZfsSnapshot, ZfsSnapshotArgs, ZfsClone, ZfsCloneArgs } from "./resources";
