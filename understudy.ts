/**
 * pulumi-understudy: rehearse database upgrades on copy-on-write clones.
 * The public API: resources and components. Drivers are exported for scripts and tests.
 */
export * as host from "./providers/host";
export type { ConnectionArgs } from "./providers/host/connection";
export { ZfsSnapshot, ZfsSnapshotArgs, ZfsClone, ZfsCloneArgs } from "./providers/zfs/resources";
export { ZfsDriver, OWNER_PROPERTY } from "./providers/zfs/driver";
export { lookupSnapshot, lookupSnapshotOutput, LookupSnapshotArgs, LookupSnapshotResult } from "./providers/zfs/lookup";
export { ZfsSnapshotSchedule } from "./providers/zfs/schedule-resource";
export { SnapshotSchedule, SnapshotScheduleArgs } from "./components/snapshot-schedule";
export { PostgresServer, PostgresServerArgs } from "./providers/postgres/server-resource";
export { DatabaseClone, DatabaseCloneArgs, PostgresSourceArgs } from "./components/database-clone";
export { UpgradeRehearsal, UpgradeRehearsalArgs, UserStep, ChecksArgs, planSteps } from "./components/upgrade-rehearsal";
export { ZfsStorage, ZfsStorageArgs } from "./components/storage/zfs";
export type { StorageBackend } from "./components/storage/types";
export type { Storage, StorageSpec, SnapshotSet, VolumeInfo } from "./providers/storage/types";
export type { RehearsalPlan, PromotionPlan } from "./providers/plan";
export { DEFAULTS } from "./providers/plan/defaults";
export { InputError } from "./providers/errors";
export { RehearsalStep } from "./providers/rehearsal/step";
export type { RehearsalReport, StepRecord, CheckRecord, CutoverRecord, LogicalRehearsalRecord } from "./providers/rehearsal/report";
export { LogicalRehearsal } from "./providers/rehearsal/logical";
export { LOGICAL_REHEARSAL_DEFAULTS, type LogicalRehearsalSettings } from "./providers/plan/rehearsal";
export { renderMarkdown, withSourceSize } from "./providers/rehearsal/report";
export { renderTimelineHtml } from "./providers/rehearsal/timeline";
export { writeReportFiles, ReportFiles } from "./providers/rehearsal/report-files";
export { predictGrowth, GROWTH_MODEL, GrowthModel, GrowthPrediction, StepGrowth } from "./providers/rehearsal/predict";
export type { ClusterSize, VerifySpec } from "./providers/rehearsal/verify";
export { PgBouncerEndpointResource, PgBouncerEndpointArgs } from "./providers/endpoint/resource";
export { PgBouncerEndpoint } from "./providers/endpoint/pgbouncer";
export { CutOver } from "./providers/promotion/cutover";
export { Promotion, PromotionArgs } from "./components/promotion";
export type { LogicalSettings } from "./providers/plan/logical";
// EBS (AWS): the storage backend, the rehearsal instance, the Route53 endpoint. `@pulumi/aws` is
// an optional peer dependency, loaded only by what declares AWS resources.
export { EbsStorage, EbsStorageArgs, EbsRehearsalTarget, EbsScheduleTarget, dlmIntervalHours } from "./components/storage/ebs";
export { EbsRehearsalInstance, EbsRehearsalInstanceArgs, EbsRehearsalInstanceCreate } from "./components/ebs-rehearsal-instance";
export { route53Endpoint, Route53EndpointArgs } from "./components/route53-endpoint";
export { Route53Switch, Route53SwitchArgs, Route53RecordType } from "./providers/endpoint/route53";
export { EbsSnapshotSet, EbsSnapshotSetArgs, EbsCloneSet, EbsCloneSetArgs } from "./providers/ebs/resources";
export type { EbsStorageSpec, EbsLiveSpec, EbsLiveVolume, EbsAssembly, EbsRehearsalSpec, EbsVolumeSpec, EbsWaitSpec } from "./providers/ebs/spec";
