import { describe, expect, it } from "vitest";
import { markerSet } from "../../providers/runner/steps";

// The ZFS backend's rule for a snapshot set's short name, as the runner asks it of any backend.
const storage = {
  validateSnapshotName: (name: string) => {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]*$/.test(name)) throw new Error(`bad name ${name}`);
    return name;
  },
};

describe("the step marker (written before a step, carried by the set taken after it)", () => {
  it("names the set its step takes", () => {
    expect(markerSet(storage, "step 3 upgrade started 2026-12-04T02:19:04.000Z\n")).toBe("s03-upgrade");
    expect(markerSet(storage, "step 12 smoke started 2026-12-04T02:19:04.000Z\n")).toBe("s12-smoke");
  });

  it("text that is not a marker (empty, garbage, a name no set may have) names nothing: the step counts as cut off", () => {
    expect(markerSet(storage, "")).toBeUndefined();
    expect(markerSet(storage, "garbage")).toBeUndefined();
    expect(markerSet(storage, "step 3 bad/name started x\n")).toBeUndefined();
    expect(markerSet(storage, "step 300 upgrade started x\n")).toBeUndefined();
  });
});
