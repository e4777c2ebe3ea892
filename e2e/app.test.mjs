// End-to-end: the built app (web/dist) in Debian's headless Chromium, served from this test.
// Run after scripts/build-web.sh:  (cd e2e && node --test)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
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

async function open(url = base, opts = {}) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US', ...opts });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(url);
  await page.waitForSelector('#app[data-ready]');
  return { page, ctx, errors };
}

const settle = (page) => page.waitForTimeout(450);
const narration = (page) => page.textContent('#narration');
const position = async (page) => (await page.textContent('#position')).trim();

async function sendAndPause(page) {
  await page.click('#send');
  await page.waitForSelector('#step-list li');
  // Sending starts playback; pause so the test drives the steps.
  if ((await page.getAttribute('#play', 'aria-pressed')) === 'true') await page.click('#play');
}

test('first render shows the demo diagram fast', async () => {
  // Best of three fresh contexts (empty cache each time): the 2-core CI machine is shared with
  // other work, and one slow sample says more about the neighbours than about the page.
  const samples = [];
  let ctx, page;
  for (let i = 0; i < 3; i++) {
    await ctx?.close();
    ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 }, locale: 'en-US' });
    page = await ctx.newPage();
    await page.goto(base, { waitUntil: 'commit' });
    // Navigation start → diagram in the DOM, by the page's own clock (Performance API), checked
    // every animation frame inside the page so the test's round trips do not count.
    const h = await page.waitForFunction(() => document.querySelector('#hook-PREROUTING') && performance.now(), null, { polling: 'raf' });
    samples.push(await h.jsonValue());
  }
  const best = Math.min(...samples);
  console.log(`first render: ${best.toFixed(0)} ms after navigation start (samples ${samples.map((x) => x.toFixed(0)).join(', ')} ms)`);
  assert.ok(best < 1000, `first render took ${best} ms`);
  for (const h of ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']) {
    assert.ok(await page.$(`#hook-${h}`), h);
  }
  const pods = await page.$$eval('.pod[data-endpoint]', (els) => els.map((e) => e.dataset.endpoint));
  for (const ip of ['10.0.0.2', '10.0.0.3', '10.0.0.4']) {
    assert.ok(pods.some((p) => p.startsWith(ip + ':')), `pod ${ip} in ${pods}`);
  }
  const targets = await page.$$eval('#target option', (os) => os.map((o) => o.textContent));
  assert.ok(targets.some((t) => t.includes('10.104.14.67')), `ClusterIP target in ${targets}`);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '01-demo.png'), fullPage: true });
  await ctx.close();
});

test('send a packet and step forward and back like a debugger', async () => {
  const { page, ctx, errors } = await open();
  await sendAndPause(page);
  await page.locator('body').press('Home');
  assert.match(await position(page), /^1 \//);
  const dstBefore = await page.textContent('#hdr-dst code');
  assert.match(dstBefore, /^10\.104\.14\.67:80$/);
  // Step until DNAT happened; the header must show a Pod address then.
  let steps = 0;
  while (!(await page.$('#hdr-dst.rewritten')) && steps < 200) {
    await page.click('#fwd');
    steps++;
  }
  const dstAfter = await page.textContent('#hdr-dst code');
  assert.match(dstAfter, /^10\.0\.0\.[234]:\d+$/, 'DNAT to one of the demo Pods');
  assert.match(await narration(page), /DNAT/);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '02-after-dnat.png'), fullPage: true });
  // One step back undoes the rewrite in the view.
  await page.click('#back');
  assert.equal(await page.textContent('#hdr-dst code'), dstBefore);
  // Keyboard: → forward, ← back, End last step.
  await page.locator('body').press('ArrowRight');
  assert.equal(await page.textContent('#hdr-dst code'), dstAfter);
  await page.locator('body').press('End');
  const [cur, total] = (await position(page)).split(' / ').map(Number);
  assert.equal(cur, total);
  assert.match(await narration(page), /Result/);
  // Jump to a hook with the hook buttons.
  await page.click('.hook-jump[data-hook="PREROUTING"]');
  assert.match(await narration(page), /PREROUTING/);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '03-prerouting.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('play runs to the end by itself', async () => {
  const { page, ctx } = await open();
  await page.click('#send');
  await page.locator('body').press('+');
  await page.locator('body').press('+');
  await page.locator('body').press('+');
  await page.waitForFunction(() => {
    const [a, b] = document.querySelector('#position').textContent.split(' / ').map(Number);
    return a === b && a > 1;
  }, null, { timeout: 20000 });
  assert.equal(await page.getAttribute('#play', 'aria-pressed'), 'false');
  await ctx.close();
});

test('language toggle covers labels, narration and glossary; default follows the browser', async () => {
  const { page, ctx } = await open();
  await sendAndPause(page);
  await page.click('#lang');
  assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
  assert.equal(await page.textContent('#send'), '发送数据包');
  assert.match(await page.textContent('#glossary'), /会话保持/);
  assert.match(await page.textContent('#glossary'), /伪装/);
  assert.match(await page.textContent('#glossary'), /调度算法/);
  assert.match(await narration(page), /[\u4e00-\u9fff]/);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '04-zh.png'), fullPage: true });
  await page.locator('body').press('l');
  assert.equal(await page.textContent('#send'), 'Send packet');
  await ctx.close();

  const zh = await open(base, { locale: 'zh-CN' });
  assert.equal(await zh.page.textContent('#send'), '发送数据包');
  await zh.ctx.close();
});

test('a shared link reproduces the view, embed mode is minimal', async () => {
  const { page, ctx } = await open();
  await sendAndPause(page);
  await page.locator('body').press('Home');
  for (let i = 0; i < 6; i++) await page.click('#fwd');
  const want = {
    pos: await position(page),
    narr: await narration(page),
    dst: await page.textContent('#hdr-dst code'),
    steps: await page.$$eval('#step-list li', (l) => l.map((x) => x.textContent)),
  };
  const link = await page.inputValue('#share-url');
  assert.match(link, /#s=[A-Za-z0-9_-]+$/);
  const snippet = await page.inputValue('#embed-snippet');
  assert.match(snippet, /<iframe src="[^"]*\?embed=1#s=/);
  await ctx.close();

  const other = await open(link);
  assert.equal(await position(other.page), want.pos);
  assert.equal(await narration(other.page), want.narr);
  assert.equal(await other.page.textContent('#hdr-dst code'), want.dst);
  assert.deepEqual(await other.page.$$eval('#step-list li', (l) => l.map((x) => x.textContent)), want.steps);
  await other.ctx.close();

  const embedUrl = snippet.match(/src="([^"]+)"/)[1].replaceAll('&amp;', '&');
  const emb = await open(embedUrl, { viewport: { width: 980, height: 640 } });
  assert.ok(await emb.page.$('main.embed'));
  assert.equal(await emb.page.$('#scenario'), null, 'no editor in embed mode');
  assert.equal(await position(emb.page), want.pos);
  await settle(emb.page);
  await emb.page.screenshot({ path: path.join(SHOTS, '05-embed.png') });
  await emb.ctx.close();

  const broken = await open(base + '#s=not-valid');
  assert.match(await broken.page.textContent('#share-error'), /URL fragment/);
  await broken.ctx.close();
});

test('export the trace as JSON', async () => {
  const { page, ctx } = await open(base, { acceptDownloads: true });
  await sendAndPause(page);
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#export')]);
  const file = path.join(SHOTS, 'trace.json');
  await dl.saveAs(file);
  const trace = JSON.parse(fs.readFileSync(file, 'utf8'));
  assert.equal(trace.mode, 'iptables');
  assert.ok(Array.isArray(trace.steps) && trace.steps.length > 0);
  assert.equal(trace.packet.dst, '10.104.14.67');
  await ctx.close();
});

test('scenario editor shows errors at their line', async () => {
  const { page, ctx } = await open();
  await page.fill('#scenario', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n');
  await page.click('#load-scenario');
  const errs = await page.textContent('#scenario-errors');
  assert.match(errs, /line \d+/);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '06-editor-error.png'), fullPage: true });
  await ctx.close();
});

test('send many: 1000 connections animate and spread over the Pods', async () => {
  const { page, ctx } = await open();
  // Our own frame sampler (independent of the app's loop): every rAF timestamp while it runs.
  await page.evaluate(() => {
    window.__frames = [];
    const loop = (t) => { window.__frames.push(t); if (!window.__stop) requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  });
  await page.evaluate(() => performance.mark('many-start'));
  await page.click('.many-n[data-n="1000"]');
  await page.waitForSelector('#many-canvas[data-fps]:not([data-fps=""])', { timeout: 20000 });
  const m = await page.evaluate(() => {
    window.__stop = true;
    performance.mark('many-end');
    const span = performance.measure('many', 'many-start', 'many-end');
    const start = span.startTime;
    const f = window.__frames.filter((t) => t >= start);
    // The 1000 traces run synchronously on click (the longest gap); the flight follows it.
    let worst = 0, at = 0;
    for (let i = 1; i < f.length; i++) if (f[i] - f[i - 1] > worst) { worst = f[i] - f[i - 1]; at = i; }
    const flight = f.slice(at);
    return {
      ms: span.duration,
      fps: ((f.length - 1) * 1000) / (f[f.length - 1] - f[0]),
      flightFps: ((flight.length - 1) * 1000) / (flight[flight.length - 1] - flight[0]),
      worst,
    };
  });
  const fps = Number(await page.getAttribute('#many-canvas', 'data-fps'));
  // The app's own drawing work per frame (Performance API inside the rAF callback).
  const frameMs = Number(await page.getAttribute('#many-canvas', 'data-frame-ms'));
  const frameMsMax = Number(await page.getAttribute('#many-canvas', 'data-frame-ms-max'));
  const counts = await page.$$eval('#distribution td.count', (tds) => tds.map((t) => Number(t.textContent)));
  console.log(`send many: 1000 connections traced + animated in ${m.ms.toFixed(0)} ms; ` +
    `Performance API: ${m.flightFps.toFixed(1)} fps while the 1000 dots fly (${m.fps.toFixed(1)} fps overall, ` +
    `longest frame ${m.worst.toFixed(1)} ms = tracing the 1000 connections); app's loop: ${fps.toFixed(1)} fps, ` +
    `drawing ${frameMs} ms/frame (worst ${frameMsMax} ms); ` +
    `counts per Pod ${counts.join('/')}`);
  assert.equal(counts.reduce((a, b) => a + b, 0), 1000);
  assert.equal(counts.length, 3, 'three Pods');
  // Uniform 1/3 each: with n=1000 a count outside 333 ± 5σ (σ≈14.9) means the draw is biased.
  for (const c of counts) assert.ok(Math.abs(c - 1000 / 3) < 75, `count ${c}`);
  assert.ok(fps >= 30 && m.flightFps >= 30, `fps ${fps} / ${m.flightFps}`);
  assert.ok(frameMs > 0 && frameMs < 4, `our work per frame ${frameMs} ms (bar: < 4 ms)`);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '07-send-many.png'), fullPage: true });
  await ctx.close();
});

test('reduced motion: no transition on the packet', async () => {
  const { page, ctx } = await open(base, { reducedMotion: 'reduce' });
  await sendAndPause(page);
  const t = await page.$eval('#packet-dot', (e) => getComputedStyle(e).transitionDuration);
  assert.match(t, /^0s/);
  await ctx.close();
});

async function pick(page, sel, re) {
  const opts = await page.$$eval(`${sel} option`, (os) => os.map((o) => ({ v: o.value, t: o.textContent })));
  const o = opts.find((x) => re.test(x.t));
  assert.ok(o, `${sel}: no option matching ${re} in ${opts.map((x) => x.t)}`);
  await page.selectOption(sel, o.v);
}

test('presets: no endpoints is REJECTed; NodePort with eTP Local keeps the client source', async () => {
  const { page, ctx, errors } = await open();
  // kube-proxy writes no nat rules for a Service without endpoints, only a filter REJECT
  // (shared/specs/kube-proxy-iptables.md §16.5).
  await page.selectOption('#preset', { label: 'no-endpoints.yaml' });
  await pick(page, '#client', /^Pod on another node/);
  await pick(page, '#target', /ClusterIP/);
  await sendAndPause(page);
  await page.locator('body').press('End');
  assert.match(await narration(page), /rejected/);
  assert.ok(await page.$('#packet-dot.dropped'));
  assert.equal(await page.textContent('#hdr-dst code'), '10.96.44.4:80', 'never DNATed');
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '08-no-endpoints.png'), fullPage: true });

  // externalTrafficPolicy: Local: traffic from outside goes to KUBE-SVL without masquerade, so the
  // Pod sees the real client address (§12).
  await page.selectOption('#preset', { label: 'nodeport-local.yaml' });
  await pick(page, '#client', /^External client/);
  await pick(page, '#target', /NodePort/);
  await sendAndPause(page);
  await page.locator('body').press('End');
  assert.match(await page.textContent('#hdr-src code'), /^203\.0\.113\.10:/);
  assert.match(await page.textContent('#hdr-dst code'), /^10\./, 'DNATed to the local Pod');
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '09-nodeport-local.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await ctx.close();
});

test('the next packet of a connection is found by conntrack and keeps its Pod', async () => {
  const { page, ctx } = await open();
  await sendAndPause(page);
  await page.locator('body').press('End');
  const pod = await page.textContent('#hdr-dst code');
  await page.click('#send-again');
  if ((await page.getAttribute('#play', 'aria-pressed')) === 'true') await page.click('#play');
  await page.locator('body').press('Home');
  // Kernel behaviour: NAT is decided on a connection's first packet only.
  assert.match(await narration(page), /existing connection/);
  await page.locator('body').press('End');
  assert.equal(await page.textContent('#hdr-dst code'), pod);
  const steps = await page.$$eval('#step-list li', (l) => l.map((x) => x.textContent).join('\n'));
  assert.doesNotMatch(steps, /nat table/);
  await ctx.close();
});

test('IPVS mode: the scheduler picks the Pod at LOCAL_IN, and the link keeps the mode', async () => {
  const { page, ctx, errors } = await open();
  await page.selectOption('#mode', 'ipvs');
  await sendAndPause(page);
  const steps = await page.$$eval('#step-list li', (l) => l.map((x) => x.textContent).join('\n'));
  // kube-proxy's IPVS mode: the ClusterIP is bound to kube-ipvs0, so it routes as local, and
  // IPVS (default scheduler rr) rewrites the destination at LOCAL_IN.
  assert.match(steps, /IPVS/);
  assert.match(steps, /rr/);
  // The rewritten packet leaves via LOCAL_OUT (ip_vs_nat_xmit), not via FORWARD.
  assert.match(steps, /OUTPUT and POSTROUTING \(not FORWARD\)/);
  await page.locator('body').press('End');
  assert.match(await page.textContent('#hdr-dst code'), /^10\.0\.0\.[234]:/);
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '10-ipvs.png'), fullPage: true });
  const link = await page.inputValue('#share-url');
  await ctx.close();
  const other = await open(link);
  assert.equal(await other.page.inputValue('#mode'), 'ipvs');
  assert.match(await other.page.$$eval('#step-list li', (l) => l.map((x) => x.textContent).join('\n')), /IPVS/);
  await other.ctx.close();
  assert.deepEqual(errors, []);
});

test('side by side: the same packet in iptables and IPVS mode, differences called out', async () => {
  const { page, ctx, errors } = await open();
  await page.check('#compare');
  await sendAndPause(page);
  await page.waitForSelector('#compare-ipvs');
  // iptables mode picks the Pod with -m statistic random rules; IPVS finds the virtual server
  // by a table lookup and its scheduler (kube-proxy's default rr) decides, at LOCAL_IN.
  assert.match(await page.textContent('#compare-iptables .how'), /statistic --mode random/);
  assert.match(await page.textContent('#compare-ipvs .how'), /^rr: /);
  const notes = await page.textContent('#compare-notes');
  assert.match(notes, /LOCAL_IN/);
  assert.match(notes, /hash lookup|one hash lookup/);
  for (const col of ['#compare-iptables', '#compare-ipvs']) {
    assert.match(await page.getAttribute(col, 'data-output'), /^10\.0\.0\.[234]:/);
  }
  await settle(page);
  await page.locator('#compare-panel').screenshot({ path: path.join(SHOTS, '11-compare.png') });
  // Chinese too, and the link keeps the view.
  await page.locator('body').press('l');
  assert.match(await page.textContent('#compare-title'), /同一个数据包/);
  assert.match(await page.textContent('#compare-notes'), /LOCAL_IN/);
  const link = await page.inputValue('#share-url');
  await ctx.close();
  const other = await open(link);
  assert.ok(await other.page.isChecked('#compare'));
  assert.ok(await other.page.$('#compare-ipvs'));
  await other.ctx.close();
  assert.deepEqual(errors, []);
});

test('IPVS: 14 schedulers, ipvsadm -Ln and scheduler state that follows the connections', async () => {
  const { page, ctx, errors } = await open();
  await page.selectOption('#mode', 'ipvs');
  const names = await page.$$eval('#scheduler option', (os) => os.map((o) => o.value));
  assert.deepEqual(names.sort(), ['dh', 'fo', 'lblc', 'lblcr', 'lc', 'mh', 'nq', 'ovf', 'rr', 'sed', 'sh', 'twos', 'wlc', 'wrr']);
  assert.equal(await page.inputValue('#scheduler'), 'rr');
  await page.selectOption('#scheduler', 'wrr');
  assert.match(await page.textContent('#ipvsadm'), /TCP {2}10\.104\.14\.67:80 wrr/);
  const conns = () => page.$$eval('#sched-state tbody tr', (rs) =>
    rs.reduce((n, r) => n + Number(r.querySelector('.active').textContent) + Number(r.querySelector('.inactive').textContent), 0));
  assert.equal(await conns(), 0);
  await sendAndPause(page);
  assert.equal(await conns(), 1);
  await page.click('#send');
  await page.waitForFunction(() => document.querySelectorAll('#sched-state tbody tr').length > 0);
  assert.equal(await conns(), 2, 'a second connection is counted on its server');
  assert.equal(await page.getAttribute('#sched-state', 'data-scheduler'), 'wrr');
  assert.ok(await page.$('#sched-state [data-fact="Cw"]'), 'wrr shows its current weight');
  // dh hashes the destination address: a Service VIP is one address, so one server gets all.
  await page.selectOption('#scheduler', 'dh');
  await page.click('.many-n[data-n="100"]');
  await page.waitForSelector('#distribution td.count');
  assert.deepEqual(await page.$$eval('#distribution td.count', (t) => t.map((x) => Number(x.textContent))), [100]);
  // rr with keepalive: 100 requests over 4 pooled connections (25 each), connections A B C A.
  await page.selectOption('#scheduler', 'rr');
  await page.check('#keepalive');
  await page.click('.many-n[data-n="100"]');
  await page.waitForFunction(() => document.querySelectorAll('#distribution td.count').length === 3);
  const counts = await page.$$eval('#distribution td.count', (t) => t.map((x) => Number(x.textContent)));
  assert.deepEqual(counts, [50, 25, 25]);
  await settle(page);
  await page.locator('#ipvs-panel').screenshot({ path: path.join(SHOTS, '12-ipvs-panel.png') });
  const link = await page.inputValue('#share-url');
  await ctx.close();
  const other = await open(link);
  assert.equal(await other.page.inputValue('#scheduler'), 'rr');
  assert.ok(await other.page.isChecked('#keepalive'));
  await other.ctx.close();
  assert.deepEqual(errors, []);
});

test('paste a node dump: trace through it, problems at their line', async () => {
  const { page, ctx, errors } = await open();
  // A hand-written iptables-save in kube-proxy's shape: one Service 10.96.0.10:53 → one
  // endpoint 10.0.0.9:53, plus a line iptables-restore would refuse.
  const dump = [
    '*nat',
    ':PREROUTING ACCEPT [0:0]',
    ':INPUT ACCEPT [0:0]',
    ':OUTPUT ACCEPT [0:0]',
    ':POSTROUTING ACCEPT [0:0]',
    ':KUBE-SERVICES - [0:0]',
    ':KUBE-SVC-TEST - [0:0]',
    ':KUBE-SEP-TEST - [0:0]',
    '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES',
    '-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 53 -j KUBE-SVC-TEST',
    'this is not a rule',
    '-A KUBE-SVC-TEST -j KUBE-SEP-TEST',
    '-A KUBE-SEP-TEST -p tcp -m tcp -j DNAT --to-destination 10.0.0.9:53',
    'COMMIT',
    '',
  ].join('\n');
  await page.fill('#dump', dump);
  await page.click('#load-dump');
  await page.waitForSelector('#dump-active');
  assert.ok(await page.$('#dump-errors li[data-line="12"]'), await page.textContent('#dump-errors'));
  await page.fill('#custom-dst', '10.96.0.10:53');
  await sendAndPause(page);
  await page.locator('body').press('End');
  assert.equal(await page.textContent('#hdr-dst code'), '10.0.0.9:53');
  await settle(page);
  await page.screenshot({ path: path.join(SHOTS, '13-dump.png'), fullPage: true });
  await page.click('#clear-dump');
  assert.equal(await page.$('#dump-active'), null);
  await ctx.close();
  assert.deepEqual(errors, []);
});

test('export the diagram as SVG and PNG', async () => {
  const { page, ctx } = await open(base, { acceptDownloads: true });
  await sendAndPause(page);
  const [svgDl] = await Promise.all([page.waitForEvent('download'), page.click('#export-svg')]);
  const svgFile = path.join(SHOTS, 'diagram.svg');
  await svgDl.saveAs(svgFile);
  const svg = fs.readFileSync(svgFile, 'utf8');
  assert.match(svg, /^<\?xml/);
  assert.match(svg, /<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  assert.match(svg, /<style>/);
  for (const h of ['PREROUTING', 'INPUT', 'FORWARD', 'OUTPUT', 'POSTROUTING']) assert.ok(svg.includes(h), h);
  const [pngDl] = await Promise.all([page.waitForEvent('download'), page.click('#export-png')]);
  const pngFile = path.join(SHOTS, 'diagram.png');
  await pngDl.saveAs(pngFile);
  const png = fs.readFileSync(pngFile);
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'PNG signature');
  // IHDR: width and height, the diagram's 960×330 drawn at 2×.
  assert.equal(png.readUInt32BE(16), 1920);
  assert.equal(png.readUInt32BE(20), 660);
  assert.ok(png.length > 10000, `a drawn picture, not a blank (${png.length} bytes)`);
  await ctx.close();
});

test('scale view: iptables work per packet grows with the Services, IPVS stays flat', async () => {
  const { page, ctx, errors } = await open();
  await page.evaluate(() => {
    window.__frames = [];
    const loop = (t) => { window.__frames.push(t); if (!window.__stop) requestAnimationFrame(loop); };
    requestAnimationFrame(loop);
  });
  const t0 = Date.now();
  await page.click('#tab-scale');
  await page.waitForSelector('#scale-table tr[data-services="10000"]', { timeout: 120000 });
  const ms = Date.now() - t0;
  const worst = await page.evaluate(() => {
    window.__stop = true;
    const f = window.__frames;
    let w = 0;
    for (let i = 1; i < f.length; i++) w = Math.max(w, f[i] - f[i - 1]);
    return w;
  });
  const rows = await page.$$eval('#scale-table tbody tr', (rs) => rs.map((r) => ({
    n: Number(r.dataset.services),
    pre: r.classList.contains('precomputed'),
    ipt: Number(r.querySelector('.ipt-packet').textContent),
    iptTotal: Number(r.querySelector('.ipt-total').textContent),
    ipvs: Number(r.querySelector('.ipvs-packet').textContent),
    ipvsTotal: Number(r.querySelector('.ipvs-total').textContent),
  })));
  console.log(`scale view: 10 → 3000 Services measured in the page in ${ms} ms, longest frame ${worst.toFixed(0)} ms; ` +
    rows.map((r) => `${r.n}${r.pre ? '*' : ''}: iptables ${r.ipt}/pkt ${r.iptTotal} rules, IPVS ${r.ipvs}/pkt ${r.ipvsTotal} rules`).join('; '));
  assert.deepEqual(rows.map((r) => r.n), [10, 30, 100, 300, 1000, 3000, 10000]);
  assert.ok(rows[6].pre && !rows[5].pre, '10,000 is marked precomputed, the rest measured here');
  // kube-proxy iptables mode walks KUBE-SERVICES linearly: 100× the Services → far more rules
  // per packet; IPVS mode matches ipsets and hashes, so its per-packet rules do not change.
  // (From 30 Services on: with 10 there is no LoadBalancer yet, and kube-proxy writes the
  // rules for its ipsets only when a set has members.)
  for (let i = 1; i < rows.length; i++) {
    assert.ok(rows[i].ipt > rows[i - 1].ipt, `iptables per packet grows at ${rows[i].n}`);
    assert.equal(rows[i].ipvs, rows[1].ipvs, `IPVS per packet flat at ${rows[i].n}`);
    assert.equal(rows[i].ipvsTotal, rows[1].ipvsTotal, `IPVS iptables rules flat at ${rows[i].n}`);
  }
  assert.ok(rows[4].ipt > 10 * rows[0].ipt, `1000 vs 10 Services: ${rows[4].ipt} vs ${rows[0].ipt}`);
  await settle(page);
  await page.locator('#scale-panel').screenshot({ path: path.join(SHOTS, '14-scale.png') });
  await page.selectOption('#scale-endpoints', '1');
  const link = await page.inputValue('#share-url');
  await ctx.close();
  const other = await open(link);
  assert.equal(await other.page.inputValue('#scale-endpoints'), '1');
  await other.ctx.close();
  assert.deepEqual(errors, []);
});

test('core\'s English notes are shown in Chinese, marked with their language', async () => {
  const { page, ctx, errors } = await open();
  await page.click('#lang');
  await page.selectOption('#mode', 'ipvs');
  await sendAndPause(page);
  await page.locator('body').press('Home');
  // Step through the whole walk, collecting core's notes as shown (core/src/netfilter/walk.rs,
  // core/src/ipvs/mode.rs).
  const seen = [];
  for (let steps = 0; steps < 100 && !(await page.isDisabled('#fwd')); steps++) {
    seen.push(...(await page.$$eval('.core-note', (ns) => ns.map((n) => [n.getAttribute('lang'), n.textContent]))));
    await page.click('#fwd');
  }
  assert.ok(seen.some(([, t]) => t.startsWith('IPVS 挂在 LOCAL_IN 上')), JSON.stringify(seen));
  assert.ok(seen.every(([l]) => l === 'zh-CN'), JSON.stringify(seen));
  assert.deepEqual(errors, []);
  await ctx.close();
});
