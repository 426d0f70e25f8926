// Peer: node:http + onnxruntime-node serving the same V2 JSON infer endpoint.
const http = require('node:http');
const ort = require('onnxruntime-node');
const [model, port] = [process.argv[2], Number(process.argv[3])];
ort.InferenceSession.create(model, { intraOpNumThreads: 1 }).then((sess) => {
  http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks));
        const inp = body.inputs[0];
        const x = new ort.Tensor('float32', Float32Array.from(inp.data.flat(Infinity)), inp.shape);
        const out = await sess.run({ X: x });
        const outputs = Object.entries(out).map(([name, t]) => ({
          name, datatype: t.type === 'int64' ? 'INT64' : 'FP32', shape: t.dims,
          data: Array.from(t.data, (v) => Number(v)),
        }));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ model_name: 'iris', model_version: '1', outputs }));
      } catch (e) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: String(e) }));
      }
    });
  }).listen(port, '127.0.0.1');
});
