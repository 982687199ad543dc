// Drives the live dashboard in headless Debian Chromium (playwright-core, no downloaded
// browser) while the load generator runs, and prints what the page showed as JSON:
//   node tests/browser/dashboard.mjs URL SCREENSHOT
// Samples twice during the load, then waits for the totals to settle (the load ended) and
// samples once more, with a screenshot. Every wait is bounded.
import { createRequire } from "node:module";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const require = createRequire(join(process.env.BITACORA_NODE_DIR || ".", "node_modules", "x.js"));
const { chromium } = require("playwright-core");

const [url, screenshot] = process.argv.slice(2);
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const browser = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "bitacora-chromium-")), {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", args: flags, headless: true,
  viewport: { width: 1440, height: 1200 },
});
const errors = [];
try {
  const page = browser.pages()[0] || await browser.newPage();
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  await page.goto(url, { timeout: 20000 });
  const snapshots = () => page.evaluate(() => Number(document.body.dataset.snapshots || 0));
  await page.waitForFunction(() => Number(document.body.dataset.snapshots || 0) >= 3, null, { timeout: 20000 });
  const sample = () => page.evaluate(() => {
    const num = (id) => Number(document.getElementById(id).textContent.replace(/,/g, ""));
    const types = {};
    for (const tr of document.querySelectorAll("#table-types tbody tr")) {
      types[tr.dataset.eventType] = Number(tr.querySelector(".total").textContent.replace(/,/g, ""));
    }
    return {
      snapshots: Number(document.body.dataset.snapshots),
      connection: document.getElementById("conn").textContent,
      accepted: num("total-accepted"), duplicates: num("total-duplicates"),
      quarantined: num("total-quarantined"), records_in: num("total-records-in"),
      rate_events: document.getElementById("rate-events").textContent,
      p95: document.getElementById("p95").textContent,
      dedup_rate: document.getElementById("dedup-rate").textContent,
      types,
      versions: [...document.querySelectorAll("#chart-versions g")].map((g) => g.dataset.appVersion),
      routes: [...document.querySelectorAll("#table-routes tbody tr")].map((tr) => tr.dataset.route),
      lines: document.querySelectorAll("#chart-types path").length,
      errors_listed: document.querySelectorAll("#errors div:not(.empty)").length,
    };
  });
  const during = [await sample()];
  await page.waitForTimeout(2500);
  during.push(await sample());
  // Settled: the same totals over three consecutive snapshots.
  let last = await sample(), same = 0;
  const until = Date.now() + 60000;
  while (same < 3 && Date.now() < until) {
    const n = await snapshots();
    await page.waitForFunction((k) => Number(document.body.dataset.snapshots) > k, n, { timeout: 5000 });
    const s = await sample();
    same = s.accepted === last.accepted && s.records_in === last.records_in ? same + 1 : 0;
    last = s;
  }
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ during, settled: last, errors }));
} finally {
  await browser.close();
}
