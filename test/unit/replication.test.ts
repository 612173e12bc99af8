/**
 * Replication a promotion drops (providers/runner/replication.ts): the rows psql returns
 * become items with ids the user acknowledges, and the refusal names each with how to
 * rebuild it. The SQL itself runs on a real live in test/integration/promotion.test.ts.
 */
import { describe, expect, it } from "vitest";
import { replicationItems, replicationRefusal, unacknowledged } from "../../providers/runner/replication";

const rows = [
  ["slot", "cdc_consumer", "logical slot, plugin pgoutput, database app, active"],
  ["standby", "replica1", "standby connected from 10.0.0.7, streaming, async"],
  ["subscription", "app.from_billing", "subscription enabled, slot from_billing"],
  ["noise"],
];

describe("replication a promotion drops", () => {
  it("every slot, standby and subscription gets an id by kind and name", () => {
    expect(replicationItems(rows).map((i) => i.id)).toEqual(["slot:cdc_consumer", "standby:replica1", "subscription:app.from_billing"]);
  });
  it("only ids acknowledged exactly are let through", () => {
    const items = replicationItems(rows);
    expect(unacknowledged(items, ["slot:cdc_consumer", "standby:replica"]).map((i) => i.id)).toEqual(["standby:replica1", "subscription:app.from_billing"]);
    expect(unacknowledged(items, items.map((i) => i.id))).toEqual([]);
  });
  it("the refusal lists each with what it is and how to rebuild it, and what to write", () => {
    const text = replicationRefusal(replicationItems(rows));
    expect(text).toMatch(/- slot:cdc_consumer: logical slot, plugin pgoutput, database app, active; afterwards: create it again on the new live/);
    expect(text).toMatch(/- standby:replica1: .*rebuild it from the new live/);
    expect(text).toMatch(/acknowledgeReplicationLoss \(e\.g\. \["slot:cdc_consumer","standby:replica1","subscription:app\.from_billing"\]\)/);
    expect(text).toMatch(/Nothing was stopped or changed\.$/);
  });
});
