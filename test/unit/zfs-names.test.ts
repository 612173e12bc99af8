import { describe, expect, it } from "vitest";
import {
  validateDataset,
  validateSnapshot,
  validateSnapshotShortName,
  validatePropertyName,
  validatePropertyValue,
  validateUserProperty,
} from "../../providers/zfs/names";
import { parseInfo } from "../../providers/zfs/driver";

describe("ZFS names", () => {
  it.each(["tank", "tank/db", "tank/db/pg-13_main.v2:x", "a".repeat(10) + "/" + "b".repeat(200)])("accepts %s", (n) => {
    expect(validateDataset(n)).toBe(n);
  });

  it.each([
    ["tank/x; rm -rf /", /contains ";"/],
    ["tank/$(touch /tmp/p)", /contains "\$"/],
    ["tank/`id`", /contains "`"/],
    ["tank/a b", /contains " "/],
    ["tank/a\nb", /contains "\\n"/],
    ["tank/'q'", /contains "'"/],
    ["tank/../etc", /"\.\." is not allowed/],
    ["tank/./x", /"\." is not allowed/],
    ["tank//x", /empty dataset component/],
    ["tank/", /empty dataset component/],
    ["/tank/x", /no leading \//],
    ["tank/x@s", /no @/],
    ["1tank/x", /must start with a letter/],
    ["mirror/x", /reserved/],
    ["tank/" + "a".repeat(300), /longer than 255/],
    ["", /empty pool name/],
  ])("rejects %j", (n, why) => {
    expect(() => validateDataset(n, "source.dataset")).toThrow(why);
    expect(() => validateDataset(n, "source.dataset")).toThrow(/^source\.dataset: /);
  });

  it("rejects non-strings", () => {
    expect(() => validateDataset(42)).toThrow(/must be a string/);
    expect(() => validateDataset(undefined)).toThrow(/must be a string/);
  });

  it("checks full and short snapshot names", () => {
    expect(validateSnapshot("tank/db@before-upgrade")).toBe("tank/db@before-upgrade");
    expect(() => validateSnapshot("tank/db")).toThrow(/dataset@name/);
    expect(() => validateSnapshot("tank/db@a@b")).toThrow(/no @/);
    expect(() => validateSnapshotShortName("a/b")).toThrow(/no @ or \//);
    expect(() => validateSnapshotShortName("step-1;reboot")).toThrow(/contains ";"/);
  });

  it("allows only known native properties and well-formed user properties", () => {
    expect(validatePropertyName("mountpoint")).toBe("mountpoint");
    expect(validatePropertyName("understudy:note")).toBe("understudy:note");
    expect(() => validatePropertyName("sharenfs")).toThrow(/not a property Understudy sets/);
    expect(() => validateUserProperty("Understudy:Note")).toThrow(/lower-case/);
    expect(() => validatePropertyValue("mountpoint", "/srv/../etc")).toThrow(/must not contain "\.\."/);
    expect(() => validatePropertyValue("mountpoint", "relative")).toThrow(/absolute path/);
    expect(() => validatePropertyValue("understudy:x", "a\nb")).toThrow(/one printable line/);
    expect(validatePropertyValue("mountpoint", "none")).toBe("none");
  });
});

describe("zfs get -H -p parsing", () => {
  it("reads numbers, origin and user properties; treats '-' as unset", () => {
    const info = parseInfo("tank/c", {
      type: "filesystem",
      creation: "1764000000",
      used: "0",
      referenced: "5368709120",
      origin: "tank/db@s1",
      mountpoint: "/srv/c",
      mounted: "yes",
      "understudy:owner": "p/s/ZfsClone/c",
      "other:prop": "-",
    });
    expect(info).toMatchObject({
      type: "filesystem",
      creation: 1764000000,
      referenced: 5368709120,
      origin: "tank/db@s1",
      mounted: true,
      user: { "understudy:owner": "p/s/ZfsClone/c" },
    });
    expect(info.user["other:prop"]).toBeUndefined();
    expect(parseInfo("tank/db", { origin: "-" }).origin).toBeUndefined();
  });
});
