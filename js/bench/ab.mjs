// A/B of kiln-ml builds in one Node process: node ab.mjs DIST_A DIST_B ... -- MODEL_DIR[:ROWS] ...
// Each DIST is a dist/ directory (kiln_wasm.js + kiln_wasm_bg.wasm), loaded with a copy of src/.
// Sessions are created once; ROUNDS rounds (default 5) of RUNS runs (default 10) alternate
// between the builds. Prints per-round medians and the median of those, with ratios against the
// first build. Times are the process's CPU time per run (less sensitive to other jobs on the
// machine than wall time); WALL=1 uses wall time. MODEL_DIR is as for bench.mjs; ":ROWS" repeats
// a classic-ML fixture's rows up to ROWS rows.
import { readFileSync, existsSync, mkdirSync, mkdtempSync, cpSync } from 'node:fs';
import { join, basename, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tmpdir } from 'node:os';
import { performance } from 'node:perf_hooks';
const argv = process.argv.slice(2);
const sep = argv.indexOf('--');
if (sep < 1) {
  console.error('usage: node ab.mjs DIST_A [DIST_B ...] -- MODEL_DIR[:ROWS] ...');
  process.exit(2);
}
const dists = argv.slice(0, sep), models = argv.slice(sep + 1);
const ROUNDS = Number(process.env.ROUNDS ?? 5), RUNS = Number(process.env.RUNS ?? 10);
const js = join(dirname(fileURLToPath(import.meta.url)), '..');
const tmp = mkdtempSync(join(tmpdir(), 'kiln-ab-'));
const libs = [];
for (const [i, d] of dists.entries()) {
  const root = join(tmp, `pkg${i}`);
  mkdirSync(root, { recursive: true });
  cpSync(join(js, 'src'), join(root, 'src'), { recursive: true });
  cpSync(d, join(root, 'dist'), { recursive: true });
  const lib = await import(join(root, 'src', 'index.js'));
  await lib.initWasm();
  libs.push(lib);
}
const { parseNpy } = await import(join(js, 'test', 'npy.mjs'));
function tileRows(t, rows) {
  if (!rows || t.dims.length === 0 || t.dims[0] === 0) return t;
  const per = t.data.length / t.dims[0];
  const data = new t.data.constructor(rows * per);
  for (let r = 0; r < rows; r++) data.set(t.data.subarray((r % t.dims[0]) * per, (r % t.dims[0] + 1) * per), r * per);
  return { ...t, data, dims: [rows, ...t.dims.slice(1)] };
}
for (const spec of models) {
  const [dir, rowsS] = spec.split(':'); const ROWS = Number(rowsS ?? 0);
  const inputs = {};
  if (existsSync(join(dir, 'meta.json'))) {
    const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8'));
    meta.inputs.forEach((inp, k) => { inputs[inp.name] = parseNpy(readFileSync(join(dir, 'test_data_set_0', `input_${k}.npy`))); });
  } else {
    const manifest = JSON.parse(readFileSync(join(dir, '..', 'MANIFEST.json'), 'utf8'));
    const fx = manifest.fixtures.find((f) => f.name === basename(dir));
    for (const inp of fx.inputs) inputs[inp.name] = tileRows(parseNpy(readFileSync(join(dir, inp.file))), ROWS);
  }
  const bytes = new Uint8Array(readFileSync(join(dir, 'model.onnx')));
  const sess = [], feeds = [];
  for (const lib of libs) {
    sess.push(await lib.InferenceSession.create(bytes.slice()));
    const f = {};
    for (const [name, t] of Object.entries(inputs)) f[name] = new lib.Tensor(t.type, t.data, t.dims);
    feeds.push(f);
    for (let w = 0; w < 2; w++) await sess.at(-1).run(f);
  }
  const meds = libs.map(() => []);
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < libs.length; i++) {
      const ms = [];
      for (let k = 0; k < RUNS; k++) { const c = process.cpuUsage(); const t = performance.now(); await sess[i].run(feeds[i]); const w = performance.now() - t; const d = process.cpuUsage(c); ms.push(process.env.WALL ? w : (d.user + d.system) / 1000); }
      ms.sort((a, b) => a - b); meds[i].push(ms[ms.length >> 1]);
    }
  }
  const summ = meds.map((m) => { const s = [...m].sort((a, b) => a - b); return `${s[s.length >> 1].toFixed(2)} [${m.map((x) => x.toFixed(1)).join(' ')}]`; });
  console.log(`${basename(dir)}${ROWS ? ':' + ROWS : ''}: ` + summ.map((s, i) => `${String.fromCharCode(65 + i)} ${s}`).join(' | ') +
    ' | ratio ' + meds.slice(1).map((m) => { const a = [...meds[0]].sort((x, y) => x - y), b = [...m].sort((x, y) => x - y); return (b[b.length >> 1] / a[a.length >> 1]).toFixed(3); }).join(' '));
  for (const s of sess) await s.release();
}
