import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { crashLinesOf, crashMessage } from "../harness/postgres";

describe("crashLinesOf (the test harness's reading of a server log after clients saw a crash)", () => {
  it("names the process that died and why, with the lines before it; a worker's normal exit (code 1) is not a crash", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "crashlines-")), "server.log");
    fs.writeFileSync(
      file,
      [
        'LOG:  background worker "logical replication launcher" (PID 10) exited with exit code 1',
        "LOG:  checkpoint starting: time",
        "LOG:  checkpoint complete",
        "LOG:  server process (PID 42) was terminated by signal 9: Killed",
        "DETAIL:  Failed process was running: UPDATE pgbench_accounts SET abalance = 1",
        "LOG:  terminating any other active server processes",
        "LOG:  all server processes terminated; reinitializing",
      ].join("\n"),
    );
    expect(crashLinesOf(file)).toEqual([
      "LOG:  checkpoint starting: time",
      "LOG:  checkpoint complete",
      "LOG:  server process (PID 42) was terminated by signal 9: Killed",
      "DETAIL:  Failed process was running: UPDATE pgbench_accounts SET abalance = 1",
      "LOG:  terminating any other active server processes",
    ]);
    fs.writeFileSync(file, "LOG:  startup process (PID 7) exited with exit code 2\nPANIC:  could not fsync file \"base/1/2\": Input/output error\n");
    expect(crashLinesOf(file)).toHaveLength(2);
    fs.writeFileSync(file, 'LOG:  background worker "logical replication worker" (PID 11) exited with exit code 1\n');
    expect(crashLinesOf(file)).toEqual([]);
    expect(crashLinesOf(path.join(path.dirname(file), "missing.log"))).toEqual([]);
    // The assertion message: only when pgbench saw a crash, naming the log and its lines.
    fs.writeFileSync(file, "LOG:  server process (PID 42) was terminated by signal 6: Aborted\n");
    expect(crashMessage("pgbench: error: ... FATAL:  server conn crashed?", path.dirname(file))).toBe(`a server log says:\n${file}:\nLOG:  server process (PID 42) was terminated by signal 6: Aborted`);
    expect(crashMessage("number of failed transactions: 0", path.dirname(file))).toBeUndefined();
  });
});
