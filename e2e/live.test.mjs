// End-to-end "Live node": the built app, served by `proxyscope serve`, connected to a running
// `proxyscope agent` that reads a network namespace this test creates (and deletes on every exit
// path) with kube-proxy's iptables rules for examples/demo.yaml loaded by iptables-restore.
// Checks the page against the kernel's own iptables-save, traces a packet through the node's
// rules, and measures how long a rule change takes to reach the page.
// Needs root and `ip netns` (SKIPPED otherwise). Run after scripts/build-web.sh and
// `cargo build -p proxyscope`:  (cd e2e && node --test live.test.mjs)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { DIST, SHOTS, launchBrowser } from './support.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const BIN = path.resolve(here, process.env.PROXYSCOPE_BIN ?? '../target/debug/proxyscope');
const DEMO = path.resolve(here, '../examples/demo.yaml');
// The agent's poll interval; the target is a change on the page within one interval + 100 ms.
const INTERVAL_MS = 500;

const canNetns = process.getuid?.() === 0 && spawnSync('ip', ['netns', 'list']).status === 0;
const NS = `pse2e-${process.pid}`;
let nsMade = false;
const procs = [];
let browser, tmp;

function run(cmd, args, input) {
  const r = spawnSync(cmd, args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.error}`);
  return r.stdout;
}
const inNs = (args, input) => run('ip', ['netns', 'exec', NS, ...args], input);

// Start a proxyscope subcommand and wait for its `listening on URL` line.
async function start(args) {
  const p = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  procs.push(p);
  const lines = readline.createInterface({ input: p.stdout });
  let timer;
  const first = await Promise.race([
    new Promise((r) => lines.once('line', r)),
    new Promise((_, j) => { timer = setTimeout(() => j(new Error(`${args[0]} did not start`)), 30000); }),
  ]).finally(() => clearTimeout(timer));
  const m = /^listening on (\S+)$/.exec(first.trim());
  assert.ok(m, `unexpected first line from ${args[0]}: ${first}`);
  return m[1];
}

function cleanup() {
  for (const p of procs) p.kill('SIGKILL');
  if (nsMade) spawnSync('ip', ['netns', 'del', NS]);
  nsMade = false;
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}
// A test runner killed by a signal still removes the namespace.
for (const sig of ['SIGINT', 'SIGTERM']) process.once(sig, () => { cleanup(); process.exit(130); });

before(async () => {
  if (!canNetns) return;
  assert.ok(fs.existsSync(path.join(DIST, 'index.html')), `${DIST}/index.html missing: run scripts/build-web.sh first`);
  assert.ok(fs.existsSync(BIN), `${BIN} missing: cargo build -p proxyscope`);
  fs.mkdirSync(SHOTS, { recursive: true });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  cleanup();
});

const chainsOnPage = (page) => page.$$eval('#live-node-0 li.live-chain', (els) => els.map((e) => e.dataset.chain));

test('the Live node tab shows a netns\'s real rules, traces through them and follows a change', { skip: !canNetns && 'needs root and `ip netns`' }, async (t) => {
  run('ip', ['netns', 'add', NS]);
  nsMade = true;
  inNs(['ip', 'link', 'set', 'lo', 'up']);
  // kube-proxy creates its nfacct counters before the rules that use `-m nfacct`. The payload is
  // what iptables-save shows on such a node: kube-proxy's chains plus its jumps from the built-in
  // chains (which kube-proxy adds with `iptables -I`, outside its restore payload).
  for (const c of ['ct_state_invalid_dropped_pkts', 'localhost_nps_accepted_pkts']) inNs(['nfacct', 'add', c]);
  const payload = run(BIN, ['rules', '--mode', 'iptables', '--format', 'saved', DEMO]);
  inNs(['iptables-restore'], payload);
  // The expectation is the kernel's own listing, not the agent's.
  const kernelKube = inNs(['iptables-save'])
    .split('\n')
    .filter((l) => l.startsWith(':KUBE-'))
    .map((l) => l.slice(1).split(' ')[0]);
  assert.ok(kernelKube.includes('KUBE-SERVICES'));

  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pse2e-'));
  const token = 'e2e-token-' + process.pid;
  fs.writeFileSync(path.join(tmp, 'token'), token + '\n');
  const web = await start(['serve', '--listen', '127.0.0.1:0', '--dir', DIST]);
  const agentArgs = ['agent', '--netns', NS, '--listen', '127.0.0.1:0', '--interval', `${INTERVAL_MS}ms`,
                     '--token-file', path.join(tmp, 'token')];
  const ws = await start(agentArgs);
  // A second agent on the same node: two panels side by side must agree.
  const ws2 = await start(agentArgs);

  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 }, locale: 'en-US' });
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  // The page is on another port than the agent: the agent's loopback Origin rule and the token
  // in the query are what let it in.
  const q = (k, v) => `${k}=${encodeURIComponent(v)}`;
  await page.goto(`${web}?${q('agent', ws)}&${q('agent', ws2)}&${q('token', token)}`);
  await page.waitForSelector('#app[data-ready]');
  if (!(await page.$('#live')) && !(await page.$('#tab-live'))) {
    // The app mounts web/src/live.rs's LiveNode (WEB's lib.rs); until then there is nothing to test.
    t.skip('the app does not mount the Live node tab (#live / #tab-live) yet');
    await ctx.close();
    return;
  }
  if (!(await page.$('#live'))) await page.click('#tab-live');
  await page.waitForFunction(() => document.querySelectorAll('.live-node .live-status.live').length === 2, null, { timeout: 15000 });
  await page.waitForSelector('li.live-chain');

  // Every KUBE- chain the kernel has, and nothing else (the filter starts at "KUBE-").
  assert.deepEqual([...(await chainsOnPage(page))].sort(), [...kernelKube].sort());
  // KUBE-SERVICES's rules as the kernel lists them.
  const kernelRules = inNs(['iptables-save', '-t', 'nat']).split('\n').filter((l) => l.startsWith('-A KUBE-SERVICES ')).length;
  const summary = await page.textContent('#live-node-0 details[data-table="nat"] li.live-chain[data-chain="KUBE-SERVICES"] summary');
  assert.match(summary, new RegExp(`· ${kernelRules}$`), summary);

  // demo.yaml: my-service ClusterIP 10.104.14.67:80 → Pods 10.0.0.2-4:80, traced by core over the
  // node's own rules.
  await page.fill('#live-dst', '10.104.14.67');
  await page.dispatchEvent('#live-dst', 'change');
  await page.fill('#live-port', '80');
  await page.dispatchEvent('#live-port', 'change');
  await page.click('#live-trace');
  await page.waitForFunction(() => document.querySelectorAll('.live-outcome').length === 2);
  for (const outcome of await page.$$eval('.live-outcome', (els) => els.map((e) => e.textContent))) {
    // Three endpoints behind `-m statistic` rules: each is chosen with probability 1/3.
    assert.match(outcome, /goes to 10\.0\.0\.[234]:80 · probability 0\.3333/, outcome);
  }

  // Rule changes reach the page: measured from the moment the kernel has the rule to the
  // moment the page shows it (the page's clock, checked every frame).
  const samples = [];
  for (let i = 0; i < 3; i++) {
    const chain = `KUBE-E2E-LIVE-${i}`;
    const rev = Number(await page.textContent('#live-node-0 .live-revision'));
    inNs(['iptables', '-t', 'nat', '-N', chain]);
    const t0 = Date.now();
    const seen = await page.waitForFunction(
      (c) => document.querySelector(`#live-node-0 li.live-chain[data-chain="${c}"]`) && Date.now(),
      chain, { polling: 'raf', timeout: 10000 });
    samples.push((await seen.jsonValue()) - t0);
    assert.ok(Number(await page.textContent('#live-node-0 .live-revision')) > rev);
  }
  console.log(`live: rule change → page ${samples.join(', ')} ms (poll interval ${INTERVAL_MS} ms)`);
  await page.screenshot({ path: path.join(SHOTS, 'live.png'), fullPage: true });
  // The target is one interval + 100 ms. A change lands at a random point of the poll cycle, so
  // the typical sample (the median) must meet it; on the shared 2-core CI machine a single sample
  // may not, but none may miss a whole extra poll.
  const median = [...samples].sort((a, b) => a - b)[1];
  assert.ok(median <= INTERVAL_MS + 100, `median ${median} ms of ${samples.join(', ')} ms`);
  for (const s of samples) assert.ok(s <= 2 * INTERVAL_MS + 100, `a change took ${s} ms to reach the page`);
  assert.deepEqual(errors, []);
  await ctx.close();
});
