// Drives Debian's Chromium (never a downloaded browser) against two
// `leaf console` proxies, one logged in as an admin and one as a reader.
// Go (e2e/console_test.go) starts leafd and the proxies and talks to this
// script over stdin/stdout: it prints "READY" once the chain shows, waits
// for a line "REORDERED" (Go reordered the chain through the API), then
// checks the page shows the new order without a reload.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const { ADMIN_URL, READER_URL, XDP_HOOK, SHOTS } = process.env;
const lines = createInterface({ input: process.stdin });
const nextLine = () => new Promise(res => lines.once("line", res));

function fail(msg) { console.error("FAIL: " + msg); process.exit(1); }

const context = await chromium.launchPersistentContext(mkdtempSync(join(tmpdir(), "leaf-chromium-")), {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run"],
  viewport: { width: 1400, height: 1000 },
});
const order = page => page.$$eval(`.hook[data-hook="${XDP_HOOK}"] .member`, ms => ms.map(m => m.dataset.name));

try {
  const admin = await context.newPage();
  await admin.goto(ADMIN_URL);
  await admin.waitForSelector(`.hook[data-hook="${XDP_HOOK}"] .member >> nth=2`, { timeout: 30000 });
  const before = await order(admin);
  if (before.length !== 3) fail(`chain shows ${before.length} members: ${before}`);
  const role = await admin.evaluate(() => document.body.dataset.role);
  if (role !== "admin") fail(`admin page has role ${role}`);
  if ((await admin.$$(`.hook[data-hook="${XDP_HOOK}"] button`)).length !== 2) fail("admin sees no reorder buttons");
  await admin.waitForSelector("#events li", { timeout: 30000 });
  await admin.screenshot({ path: join(SHOTS, "console-admin.png"), fullPage: true });
  console.log("READY " + before.join(","));

  if ((await nextLine()) !== "REORDERED") fail("unexpected line from the test");
  const want = [before[2], before[0], before[1]].join(",");
  await admin.waitForFunction(
    ([hook, want]) => [...document.querySelectorAll(`.hook[data-hook="${hook}"] .member`)].map(m => m.dataset.name).join(",") === want,
    [XDP_HOOK, want], { timeout: 30000 });
  await admin.screenshot({ path: join(SHOTS, "console-after-reorder.png"), fullPage: true });
  console.log("LIVE " + (await order(admin)).join(","));

  // The reader sees the same chain, has no buttons, and leafd refuses
  // its change even when the page tries one by hand.
  const reader = await context.newPage();
  await reader.goto(READER_URL);
  await reader.waitForSelector(`.hook[data-hook="${XDP_HOOK}"] .member >> nth=2`, { timeout: 30000 });
  if ((await reader.evaluate(() => document.body.dataset.role)) !== "reader") fail("reader page is not a reader's");
  if ((await reader.$$("button")).length !== 0) fail("reader sees buttons");
  const answer = await reader.evaluate(async () => {
    const doc = await (await fetch("/v1/state")).json();
    for (const a of doc.spec.attachments) a.priority = 1000 - (a.priority || 0);
    const r = await fetch("/v1/state", { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(doc) });
    return r.status;
  });
  if (answer !== 403) fail(`reader's PUT /v1/state answered ${answer}`);
  await reader.screenshot({ path: join(SHOTS, "console-reader.png"), fullPage: true });
  console.log("READER 403");
} finally {
  await context.close();
}
process.exit(0);
