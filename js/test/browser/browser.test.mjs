// kiln-ml in headless Chromium (Debian's /usr/bin/chromium through playwright-core): fixture
// models served from localhost compared with onnxruntime's outputs, bad input, worker and cache.
//
// CHROMIUM=/path overrides the browser; KILN_FIXTURES=a,b limits the fixture models.

import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, normalize, extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const TYPES = { '.js': 'text/javascript', '.mjs': 'text/javascript', '.html': 'text/html', '.wasm': 'application/wasm', '.json': 'application/json' };
const SERVED = ['js/src/', 'js/dist/', 'js/test/', 'models/fixtures/', 'models/ml/'];

function serve() {
  const server = createServer(async (req, res) => {
    const path = normalize(decodeURIComponent(new URL(req.url, 'http://localhost').pathname)).replace(/^\/+/, '');
    if (!SERVED.some((p) => path.startsWith(p))) {
      res.statusCode = 404;
      res.end();
      return;
    }
    try {
      const body = await readFile(join(repo, path));
      res.setHeader('content-type', TYPES[extname(path)] ?? 'application/octet-stream');
      res.end(body);
    } catch {
      res.statusCode = 404;
      res.end();
    }
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const manifest = JSON.parse(readFileSync(join(repo, 'models', 'fixtures', 'MANIFEST.json'), 'utf8'));
const filter = (process.env.KILN_FIXTURES ?? '').split(',').filter((s) => s.length > 0);
const fixtures = manifest.fixtures.map((f) => f.name).filter((n) => filter.length === 0 || filter.some((s) => n.includes(s)));

describe('kiln-ml in Chromium', { skip: existsSync(executablePath) ? false : `${executablePath} not found` }, () => {
  let server;
  let context;
  let page;
  let profile;
  const errors = [];

  before(async () => {
    server = await serve();
    profile = await mkdtemp(join(tmpdir(), 'kiln-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
        '--no-first-run', '--disable-component-update', '--disable-sync'],
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`http://127.0.0.1:${server.address().port}/js/test/browser/page.html`);
    await page.waitForFunction(() => window.kilnReady === true, null, { timeout: 30000 });
  });

  after(async () => {
    await context?.close();
    server?.close();
    if (profile) await rm(profile, { recursive: true, force: true });
  });

  test('the relaxed-SIMD build is loaded where Chromium supports it', async () => {
    const [variant, supported] = await page.evaluate(async () => {
      const m = await import('/js/src/index.js');
      await m.initWasm();
      return [m.wasmVariant(), m.relaxedSimdSupported()];
    });
    assert.equal(variant, supported ? 'relaxed-simd' : 'simd128');
  });

  for (const name of fixtures) {
    test(`fixture ${name}`, async () => {
      const problems = await page.evaluate((n) => window.runFixture(n), name);
      assert.deepEqual(problems, []);
    });
  }

  test('bad input rejects with clear Errors and the session stays usable', async () => {
    const r = await page.evaluate(() => window.badInput());
    assert.match(r.notOnnx, /cannot load the model: not a valid ONNX model/);
    assert.match(r.missingUrl, /cannot fetch the model from '.*nope\/model\.onnx': HTTP 404/);
    assert.match(r.wrongType, /input 'input_ids' must be int64, got int32/);
    assert.match(r.wrongShape, /input 'input_ids' must have shape/);
    assert.equal(r.stillWorks, 'ok');
    assert.match(r.released, /the session has been released/);
  });

  test('worker session and Cache API model cache', async () => {
    const r = await page.evaluate(() => window.workerAndCache());
    assert.deepEqual(r.problems, []);
    assert.deepEqual(r.keys, ['/models/fixtures/lstm_tagger_ts/model.onnx']);
  });

  test('ZipMap output (sequence of maps) as plain objects', { skip: existsSync(join(repo, 'models', 'ml', 'logreg_multi')) ? false : 'no models/ml' }, async () => {
    const { got, want } = await page.evaluate(() => window.runZipMap('logreg_multi'));
    assert.equal(got.length, want.length);
    for (let r = 0; r < want.length; r++) {
      assert.deepEqual(Object.keys(got[r]).sort(), Object.keys(want[r]).sort());
      for (const k of Object.keys(want[r])) assert.ok(Math.abs(got[r][k] - want[r][k]) <= 1e-5 + 1e-3 * Math.abs(want[r][k]));
    }
  });

  test('no uncaught page errors', () => {
    assert.deepEqual(errors, []);
  });
});
