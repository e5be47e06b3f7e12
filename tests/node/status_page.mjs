// Loads jwksd status pages in one headless Debian chromium (driven by playwright-core, which downloads no
// browser) and prints, as one JSON object, what each page rendered, what its console said and which
// Content-Security-Policy violations it raised; saves a full-page screenshot of each.
// Usage: node status_page.mjs OUT_DIR NAME=URL [NAME=URL ...]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [outDir, ...targets] = process.argv.slice(2);
const profile = mkdtempSync(join(tmpdir(), "jwksd-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 940, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-quic"],
});
const results = {};
try {
  for (const target of targets) {
    const [name, url] = [target.slice(0, target.indexOf("=")), target.slice(target.indexOf("=") + 1)];
    const page = await context.newPage();
    const console_ = [];
    page.on("console", (message) => console_.push({ type: message.type(), text: message.text() }));
    page.on("pageerror", (error) => console_.push({ type: "pageerror", text: String(error) }));
    // Recorded by the browser itself, whatever the console says: the page runs no script of its own.
    await page.addInitScript(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (event) => {
        window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
      });
    });
    const response = await page.goto(url, { waitUntil: "load" });
    const dom = await page.evaluate(() => {
      const all = (selector) => [...document.querySelectorAll(selector)];
      const badge = document.querySelector("#summary [data-rung]");
      return {
        title: document.title,
        status: document.querySelector("h1 [data-rung]")?.dataset.rung ?? null,
        rung: badge?.dataset.rung ?? null,
        // The stylesheet applied (its hash is in the CSP): the badge has a colour, not the default transparent.
        badgeBackground: badge ? getComputedStyle(badge).backgroundColor : null,
        kids: all("tr.key").map((row) => row.dataset.kid),
        sources: all("tr.source").map((row) => ({ name: row.dataset.source, state: row.querySelector("[data-rung]").dataset.rung,
                                                  text: row.innerText })),
        outcomes: all("rect[data-outcome]").map((rect) => rect.dataset.outcome),
        outcomeTitles: all("rect[data-outcome] title").map((title) => title.textContent),
        bars: all("g.bar").map((bar) => ({
          version: Number(bar.dataset.version), kid: bar.dataset.kid, status: bar.dataset.status,
          top: bar.getBoundingClientRect().top,
          phases: [...bar.querySelectorAll("rect[data-phase]")].map((rect) => ({
            phase: rect.dataset.phase, left: rect.getBoundingClientRect().left, width: rect.getBoundingClientRect().width })),
          ends: [...bar.querySelectorAll("rect[data-end]")].map((rect) => rect.dataset.end),
        })),
        now: document.querySelector("g.now")?.dataset.at ?? null,
        next: document.querySelector("g.next title")?.textContent ?? null,
        text: document.body.innerText,
        violations: window.__violations,
      };
    });
    await page.screenshot({ path: join(outDir, `status-${name}.png`), fullPage: true });
    results[name] = { httpStatus: response.status(), csp: response.headers()["content-security-policy"] ?? null,
                      console: console_, ...dom };
    await page.close();
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(results));
