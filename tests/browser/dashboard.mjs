// Drives Debian's chromium through the dashboard (tests/dashboard.rs starts the nodes and
// this script): load it, start a download, watch progress, play the audio file while the
// download is still in progress, change a limit, and see the download reach 100%.
// Prints one JSON line of findings; exits non-zero on failure.
import { chromium } from 'playwright-core';

const { URL_, ID, SHOT } = { URL_: process.env.DASH_URL, ID: process.env.CONTENT_ID, SHOT: process.env.SHOT };
const out = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--autoplay-policy=no-user-gesture-required'],
});
try {
  // bypassCSP: Playwright's waitForFunction evaluates strings, which the page's CSP forbids.
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 }, bypassCSP: true });
  page.setDefaultTimeout(60000);
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto(URL_);
  await page.waitForFunction(() => document.getElementById('node-id').textContent.length === 64);
  out.live = await page.textContent('#conn');

  // Look at the content, then download it.
  await page.fill('#get-id', ID);
  await page.click('#get-tree');
  await page.waitForFunction(() => /file|folder/.test(document.getElementById('msg').textContent));
  out.tree_msg = await page.textContent('#msg');
  await page.click('#get-go');
  const row = `tr.transfer[data-id="${ID}"]`;
  await page.waitForSelector(row);
  await page.waitForFunction((r) => {
    const p = document.querySelector(r + ' .progress');
    return p && parseInt(p.textContent) > 0;
  }, row);

  // Play the sample while the download is in progress.
  await page.waitForSelector('button.play');
  await page.click('button.play');
  await page.waitForFunction(() => document.getElementById('player').currentTime > 0.5, null, { timeout: 60000 });
  out.played_at_progress = parseInt(await page.textContent(row + ' .progress'));
  out.current_time = await page.evaluate(() => document.getElementById('player').currentTime);
  if (SHOT) await page.screenshot({ path: SHOT, fullPage: true });

  // Change a limit and see it applied (the status events report it).
  await page.fill('#limit-down', '7MB/s');
  await page.click('#limit-save');
  await page.waitForFunction(() => document.getElementById('limits-now').textContent.includes('down 7.0 MB/s'));
  out.limits = await page.textContent('#limits-now');

  // The peers of the transfer, with their connection type.
  await page.click(row + ' .peers-btn');
  await page.waitForSelector('tr.peers');
  out.peers = await page.textContent('tr.peers');

  await page.waitForFunction((r) => document.querySelector(r + ' .progress')?.textContent === '100%', row, { timeout: 180000 });
  out.finished = true;

  // The learners' page lists the routing table by bucket.
  await page.click('#nav-learn');
  await page.waitForSelector('#buckets tbody tr');
  out.buckets = await page.locator('#buckets tbody tr').count();
  await page.waitForSelector('#lookups tbody tr.lookup');
  out.lookups = await page.locator('#lookups tbody tr.lookup').count();
  // Live, hop by hop: a lookup started now appears on its own, newest first and opened,
  // each of its requests with whom it asked and what came back.
  await page.evaluate((id) => api('local_request_content_info', { content_hash: id }), ID);
  await page.waitForFunction((id) => {
    const first = document.querySelector('#lookups tbody tr.lookup');
    return first && first.textContent.startsWith('api') && first.textContent.includes(id.slice(0, 12))
      && document.querySelector('#lookups tbody tr.hop.answered');
  }, ID);
  out.hops = await page.locator('#lookups tbody tr.hop').count();
  out.hop = await page.textContent('#lookups tbody tr.hop.answered');
  if (process.env.SHOT_LEARN) await page.screenshot({ path: process.env.SHOT_LEARN, fullPage: true });
  out.errors = errors;
  console.log(JSON.stringify(out));
} catch (e) {
  console.log(JSON.stringify({ ...out, failed: String(e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
