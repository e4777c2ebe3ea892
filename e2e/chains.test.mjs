// End-to-end: the chain graph (web/src/chains.rs) in Debian's headless Chromium, on the demo and on
// the 10,000-Service preset. Run after scripts/build-web.sh:  (cd e2e && node --test)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { DIST, SHOTS, serveDist, launchBrowser } from './support.mjs';

let server, base, browser;

before(async () => {
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html missing: run scripts/build-web.sh first`);
  fs.mkdirSync(SHOTS, { recursive: true });
  ({ server, base } = await serveDist());
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (server ? server.close(r) : r()));
});

async function open(url = base) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  await page.waitForSelector('#app[data-ready]');
  return { page, ctx, errors };
}

// kube-proxy's servicePortChainName (pkg/proxy/iptables/proxier.go): "KUBE-SVC-" + the first 16
// characters of base32(sha256(servicePortName + lower-case protocol)), servicePortName being
// "namespace/name:portName". Computed here, independently of the app and of core.
function kubeSvcChain(servicePortName, proto = 'tcp') {
  const digest = crypto.createHash('sha256').update(servicePortName + proto).digest();
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0, acc = 0, out = '';
  for (const b of digest) {
    acc = ((acc << 8) | b) & 0xffff;
    bits += 8;
    while (bits >= 5) { out += alphabet[(acc >>> (bits - 5)) & 31]; bits -= 5; }
  }
  return 'KUBE-SVC-' + out.slice(0, 16);
}

const attrs = (page, sel, name) => page.$$eval(sel, (els, n) => els.map((e) => e.getAttribute(n)), name);

async function sendAndPause(page) {
  await page.click('#send');
  await page.waitForSelector('#step-list li');
  if ((await page.getAttribute('#play', 'aria-pressed')) === 'true') await page.click('#play');
}

test('chain graph: the demo packet\'s chains are unfolded and lit, keyboard and Chinese work', async () => {
  const { page, ctx, errors } = await open();
  await page.click('#tab-chains');
  await page.waitForSelector('#chain-svg .cg-node');
  await sendAndPause(page);
  const svc = kubeSvcChain('default/my-service:http');
  const lit = await attrs(page, '.cg-node.on-path', 'data-chain');
  assert.ok(lit.includes('PREROUTING') && lit.includes('KUBE-SERVICES') && lit.includes(svc), `on the path: ${lit}`);
  assert.ok(lit.some((c) => c.startsWith('KUBE-SEP-')), `an endpoint chain on the path: ${lit}`);
  assert.ok((await page.$$('.cg-edge.on-path')).length >= 3, 'the jumps between them are lit');
  assert.match(await page.textContent('#chain-packet-path'), new RegExp(`nat PREROUTING → nat KUBE-SERVICES → nat ${svc} → nat KUBE-SEP-`));
  // The built-in chains come in the order a packet meets them: nat PREROUTING first.
  const first = await page.$eval('#cg-row-0', (e) => [e.dataset.table, e.dataset.chain]);
  assert.deepEqual(first, ['nat', 'PREROUTING']);

  // Keyboard: the rows are a tree; arrows move, Enter selects and lists the chain's rules.
  await page.focus('#cg-row-0');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'cg-row-1');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#chain-rules');
  const chosen = await page.getAttribute('#cg-row-1', 'data-chain');
  assert.equal(await page.getAttribute('.cg-node.selected', 'data-chain'), chosen);
  assert.match(await page.textContent('#chain-rules'), new RegExp(`^-A ${chosen} `));

  // Search by address: the Pod 10.0.0.3 finds its KUBE-SEP chain (its DNAT rule names it).
  await page.fill('#chain-search', '10.0.0.3');
  await page.waitForSelector('.cg-hit');
  const hits = await page.$$eval('.cg-hit', (bs) => bs.map((b) => b.dataset.chain));
  assert.ok(hits.some((c) => c.startsWith('KUBE-SEP-')), `hits: ${hits}`);

  await page.click('#lang');
  assert.equal(await page.textContent('#chains-title'), '链图');
  assert.match(await page.textContent('#chain-summary'), /条链/);
  assert.match(await page.getAttribute('#cg-row-0', 'aria-label'), /条规则/);
  await page.locator('#chains').screenshot({ path: path.join(SHOTS, 'chains-demo-zh.png') });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('chain graph: a Service found by name among 10,000 focuses its KUBE-SVC chain and the path to it', async () => {
  const { page, ctx, errors } = await open();
  const perf = {};
  let t0 = Date.now();
  await page.selectOption('#preset', { label: 'large cluster (10,000 Services, generated)' });
  await page.waitForFunction(() => document.querySelectorAll('#target option').length > 10000, null, { timeout: 120000 });
  perf.load = Date.now() - t0;
  // The share link carries the preset's one-line marker, not 20 MB of YAML, and rebuilds it.
  await page.waitForFunction(() => location.hash.startsWith('#s='));
  const link = await page.evaluate(() => location.href);
  assert.ok(link.length < 4000, `share link of ${link.length} characters`);
  const other = await open(link);
  await other.page.waitForFunction(() => document.querySelectorAll('#target option').length > 10000, null, { timeout: 120000 });
  assert.match(await other.page.inputValue('#scenario'), /^# proxyscope:large-cluster services=10000 endpoints=2\n/);
  await other.ctx.close();

  // Opening the panel builds the graph of ~30,000 chains once.
  t0 = Date.now();
  await page.click('#tab-chains');
  await page.waitForSelector('#chain-svg .cg-node', { timeout: 60000 });
  perf.graph = Date.now() - t0;
  const summary = await page.textContent('#chain-summary');
  const chains = Number(summary.match(/([\d,]+) chains/)[1].replace(/,/g, ''));
  // 10,000 KUBE-SVC + 20,000 KUBE-SEP + NodePort/LB chains (KUBE-EXT, KUBE-FW, KUBE-SVL).
  assert.ok(chains > 30000, summary);
  // Only what matters is drawn: a few dozen rows, not tens of thousands.
  const rows = (await page.$$('#chain-svg [role=treeitem]')).length;
  assert.ok(rows < 80, `${rows} rows drawn`);
  assert.ok(await page.$('.cg-folded'), 'KUBE-SERVICES fan-out folded into a count');

  const want = kubeSvcChain('ns43/svc4321:http');
  t0 = Date.now();
  await page.fill('#chain-search', 'svc4321');
  await page.waitForSelector('.cg-hit');
  perf.search = Date.now() - t0;
  assert.equal(await page.getAttribute('.cg-hit', 'data-chain'), want, 'best hit is the Service\'s own chain');
  t0 = Date.now();
  await page.press('#chain-search', 'Enter');
  await page.waitForSelector('.cg-node.selected');
  perf.focus = Date.now() - t0;
  assert.equal(await page.getAttribute('.cg-node.selected', 'data-chain'), want);
  // The jumps that lead there from the first hook are highlighted.
  const focusPath = await attrs(page, '.cg-node.focus-path', 'data-chain');
  assert.deepEqual(focusPath, ['PREROUTING', 'KUBE-SERVICES', want]);
  assert.equal((await page.$$('.cg-edge.focus-path')).length, 2);
  assert.equal(await page.textContent('#chain-focus-path'), `Reached by: nat PREROUTING → nat KUBE-SERVICES → nat ${want}`);
  // Selecting unfolds it: its two endpoint chains are listed.
  const kids = (await attrs(page, '.cg-node', 'data-chain')).filter((c) => c.startsWith('KUBE-SEP-'));
  assert.equal(kids.length, 2, `endpoint chains under ${want}: ${kids}`);

  // Send a packet to that Service: the walked chains are lit, through the same KUBE-SVC chain.
  const idx = await page.$$eval('#target option', (os) => os.findIndex((o) => o.textContent.includes('ns43/svc4321')));
  assert.ok(idx >= 0);
  await page.selectOption('#target', String(idx));
  t0 = Date.now();
  await sendAndPause(page);
  perf.send = Date.now() - t0;
  const lit = await attrs(page, '.cg-node.on-path', 'data-chain');
  assert.ok(lit.includes(want), `on the path: ${lit}`);
  assert.match(await page.textContent('#chain-packet-path'), new RegExp(`nat KUBE-SERVICES → nat ${want} → nat KUBE-SEP-`));

  await page.locator('#chains').screenshot({ path: path.join(SHOTS, 'chains-large.png') });

  // Stepping redraws only the visible rows: our own work per step (Yew renders before the next
  // task), with the panel open and closed.
  const stepWork = () => page.evaluate(async () => {
    const fwd = document.querySelector('#fwd');
    const back = document.querySelector('#back');
    const ms = [];
    for (let i = 0; i < 20; i++) {
      await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
      const before = document.querySelector('#position').textContent;
      const t = performance.now();
      (i % 2 ? back : fwd).click();
      // Yew renders in microtasks: wait for the new position without yielding to rendering.
      for (let k = 0; k < 10000 && document.querySelector('#position').textContent === before; k++) {
        await new Promise((r) => queueMicrotask(r));
      }
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    return ms[ms.length >> 1];
  });
  perf.step = (await stepWork()).toFixed(1);
  await page.click('#tab-chains');
  await page.waitForSelector('#chain-svg', { state: 'detached' });
  perf.stepClosed = (await stepWork()).toFixed(1);
  console.log(`chain graph, 10,000 Services: load ${perf.load} ms, build+draw ${perf.graph} ms, search ${perf.search} ms, ` +
    `focus ${perf.focus} ms, send ${perf.send} ms, one step ${perf.step} ms of work (panel closed: ${perf.stepClosed} ms); ${chains} chains, ${rows} rows drawn`);
  assert.ok(perf.search < 2000 && perf.focus < 2000, 'search and focus stay interactive');
  assert.deepEqual(errors, []);
  await ctx.close();
});
