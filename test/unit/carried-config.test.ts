/**
 * Live's configuration carried over to the upgraded cluster: what is carried, what is left
 * out and why (a parameter the new version removed or renamed, a path to live's own files,
 * live's synchronous standbys), and values quoted so that none can break the file.
 */
import { describe, expect, it } from "vitest";
import { carriedConfig } from "../../providers/runner/config";

const known = new Set(["shared_buffers", "work_mem", "archive_command", "log_line_prefix", "debug_parallel_query", "cluster_name", "search_path"]);

describe("carriedConfig", () => {
  const c = carriedConfig(
    [
      ["shared_buffers", "16384"],
      ["work_mem", "4096"],
      ["archive_command", "test ! -f /arch/%f && cp %p /arch/%f"],
      ["log_line_prefix", "%m [%p] %q%u@%d "],
      ["stats_temp_directory", "/var/run/postgresql/13-main.pg_stat_tmp"],
      ["operator_precedence_warning", "off"],
      ["force_parallel_mode", "off"],
      ["data_directory", "/var/lib/postgresql/13/main"],
      ["hba_file", "/etc/postgresql/13/main/pg_hba.conf"],
      ["port", "5432"],
      ["synchronous_standby_names", "standby1"],
      ["search_path", "\"$user\", public, it's"],
      ["pg_stat_statements.max", "5000"],
    ],
    known,
    13,
    15,
  );

  it("carries what the new version knows, custom (extension) settings included", () => {
    expect(c.carried).toEqual(["shared_buffers", "work_mem", "archive_command", "log_line_prefix", "search_path", "pg_stat_statements.max"]);
    expect(c.text).toContain("shared_buffers = '16384'\n");
    expect(c.text).toContain("archive_command = 'test ! -f /arch/%f && cp %p /arch/%f'\n");
  });

  it("quotes values: a quote is doubled, a backslash escaped, nothing starts a new line", () => {
    expect(c.text).toContain(`search_path = '"$user", public, it''s'\n`);
    const weird = carriedConfig([["search_path", "a\\b'c"]], known, 13, 15);
    expect(weird.text).toContain("search_path = 'a\\\\b''c'");
  });

  it("leaves out removed and renamed parameters, live's own paths and its synchronous standbys, saying why", () => {
    const why = Object.fromEntries(c.dropped.map((d) => [d.name, d.why]));
    expect(why.stats_temp_directory).toMatch(/live's directory/);
    expect(why.operator_precedence_warning).toMatch(/PostgreSQL 15 has no such parameter \(removed\)/);
    expect(why.force_parallel_mode).toMatch(/renamed to debug_parallel_query in 16/);
    expect(why.data_directory).toMatch(/live's data directory/);
    expect(why.hba_file).toMatch(/copied into the new data directory/);
    expect(why.port).toMatch(/its own port/);
    expect(why.synchronous_standby_names).toMatch(/commits on the new one would wait for them/);
    for (const d of c.dropped) expect(c.text).toContain(`#   ${d.name}: `);
    expect(c.text).not.toMatch(/^(data_directory|hba_file|port|synchronous_standby_names) =/m);
  });
});
