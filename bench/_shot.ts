import * as fs from "node:fs";
import { chromium } from "playwright-core";
import { renderTimelineHtml } from "../providers/rehearsal/timeline";
(async () => {
  const b = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  for (const f of ["passed", "failed-check", "failed-user-step", "failed-verify"]) {
    const r = JSON.parse(fs.readFileSync(`test/fixtures/reports/${f}.json`, "utf8"));
    fs.writeFileSync(`/tmp/usrev-shots/${f}.html`, renderTimelineHtml(r));
    for (const scheme of ["light", "dark"] as const) {
      const p = await b.newPage({ viewport: { width: 1100, height: 900 }, colorScheme: scheme });
      await p.goto(`file:///tmp/usrev-shots/${f}.html`);
      await p.screenshot({ path: `/tmp/usrev-shots/${f}-${scheme}.png`, fullPage: true });
      await p.close();
    }
  }
  await b.close();
})();
