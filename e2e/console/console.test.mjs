// Drives Debian's Chromium (never a downloaded browser) against two
// `leaf console` proxies, one logged in as an admin and one as a reader.
// Go (e2e/console_test.go) starts leafd and the proxies and talks to this
// script over stdin/stdout: it prints "READY" once the chain shows, then
// what the page shows of the TC hook (leaf's members and the foreign
// program), the tracepoint, the charts holding data, the filter's verdict
// counters and the certificates; it waits for a line "REORDERED" (Go
// reordered the chain through the API), then checks the page shows the
// new order without a reload.
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const { ADMIN_URL, READER_URL, XDP_HOOK, TC_HOOK, TP_HOOK, FOREIGN_ID, SHOTS } = process.env;
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
  console.log("READY " + before.join(","));

  // The TC hook: leaf's two members, then the program the test attached
  // itself, marked foreign.
  const tc = `.hook[data-hook="${TC_HOOK}"]`;
  await admin.waitForSelector(`${tc} .member.foreign[data-foreign="${FOREIGN_ID}"]`, { timeout: 30000 });
  const tcLeaf = await admin.$$eval(`${tc} .member:not(.foreign)`, ms => ms.map(m => m.dataset.name));
  const tcForeign = await admin.$$eval(`${tc} .member.foreign`, ms => ms.map(m => m.dataset.foreign));
  // The test attached it at the head of TCX: drawn first, before leaf's.
  const tcOrder = await admin.$$eval(`${tc} .member`, ms => ms.map(m => m.classList.contains("foreign") ? "foreign" : "leaf"));
  if (tcOrder.join(",") !== "foreign,leaf,leaf") fail(`TC hook drawn as ${tcOrder}, want the foreign program first`);
  console.log(`TC ${tcLeaf.join(",")} foreign ${tcForeign.join(",")}`);
  const tp = await admin.$$eval(`.hook[data-hook="${TP_HOOK}"] .member`, ms => ms.map(m => m.dataset.name));
  console.log("TRACEPOINT " + tp.join(","));

  // Charts: the packets pktcount counts on the XDP hook, drawn as a rate
  // over at least two samples, above zero (the test's traffic).
  const packets = `#charts .charts[data-attachment="count"] figure[data-metric="leaf_pkg_pktcount_packets_total"]`;
  await admin.waitForFunction(sel => {
    const f = document.querySelector(sel);
    return f && Number(f.querySelector("svg").dataset.points) >= 2 && Number(f.dataset.last) > 0;
  }, packets, { timeout: 60000 });
  const withData = await admin.$$eval("#charts figure", fs => fs.filter(f => Number(f.dataset.last) > 0)
    .map(f => `${f.closest(".charts").dataset.attachment}/${f.dataset.metric}`));
  if (!(await admin.$(`${packets} svg polyline`))) fail("the packets chart has no line");
  console.log("CHARTS " + withData.join(" "));

  // Verdict counters portfilter declares, on the filter's member box.
  const filter = `.hook[data-hook="${XDP_HOOK}"] .member[data-name="filter"]`;
  await admin.waitForFunction(sel => ["XDP_DROP", "XDP_PASS"].every(v => {
    const dd = document.querySelector(`${sel} dd[data-verdict="${v}"]`);
    return dd && Number(dd.textContent) > 0;
  }), filter, { timeout: 30000 });
  const verdicts = await admin.$$eval(`${filter} dd.verdict`, ds => ds.map(d => `${d.dataset.verdict}=${d.textContent}`));
  // The chain's cost, from the kernel's statistics of the hook's program.
  const cost = await admin.waitForSelector(`.hook[data-hook="${XDP_HOOK}"] .chain-cost`, { timeout: 30000 });
  const m = /chain: (\d+) runs · avg (\d+) ns/.exec(await cost.textContent());
  if (!m || Number(m[1]) === 0 || Number(m[2]) === 0) fail(`XDP chain cost shown as ${await cost.textContent()}`);
  console.log("VERDICTS " + verdicts.join(" "));

  // The TLS listener's certificates with their expiry.
  await admin.waitForSelector('#certs tr[data-kind="server"]', { timeout: 30000 });
  const certs = await admin.$$eval("#certs tbody tr", rs => rs.filter(r => r.dataset.kind !== "clients")
    .map(r => `${r.dataset.kind}:${r.children[1].textContent}:${r.classList.contains("warn") ? "warn" : "ok"}`));
  await admin.screenshot({ path: join(SHOTS, "console-admin.png"), fullPage: true });
  await (await admin.$("#hooks")).screenshot({ path: join(SHOTS, "console-hooks.png") });
  await (await admin.$("#charts")).screenshot({ path: join(SHOTS, "console-charts.png") });
  console.log("CERTS " + certs.join(" "));

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
  // It reads the charts and the certificates through the same API.
  await reader.waitForSelector('#charts figure[data-metric="leaf_pkg_pktcount_packets_total"] svg polyline', { timeout: 30000 });
  await reader.waitForSelector('#certs tr[data-kind="server"]', { timeout: 30000 });
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
