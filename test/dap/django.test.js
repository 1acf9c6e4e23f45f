// krait dap on the Django stack, driven by Microsoft's DebugClient: a
// breakpoint in the orders view of a mod_wsgi daemon, triggered over HTTP;
// the request and the unevaluated QuerySet in variables, expanded, and
// completions in the debug console, with
// PostgreSQL's statement log showing no query meanwhile; other requests
// answered while the thread is stopped; disconnect lets the request finish.
// test/django/dap_test.go starts it with KRAIT_BIN, TARGET_PID, VIEWS_FILE,
// ROWS_LINE, BODY_LINE, URL, PG_LOG and APP_NAME in the environment.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const env = process.env;
const TIMEOUT = 60000;

function get(path) {
  return new Promise((resolve, reject) => {
    const req = http.get(env.URL + path, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(120000, () => req.destroy(new Error(`GET ${path} timed out`)));
  });
}

// The statement log's lines since off that the server logged.
function statements(off) {
  const fd = fs.openSync(env.PG_LOG, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const buf = Buffer.alloc(Math.max(0, size - off));
    fs.readSync(fd, buf, 0, buf.length, off);
    return buf.toString('utf8').split('\n').filter((l) => l.includes(` app=${env.APP_NAME} `));
  } finally {
    fs.closeSync(fd);
  }
}

async function vars(dc, variablesReference) {
  const r = await dc.variablesRequest({ variablesReference });
  const out = {};
  for (const v of r.body.variables) out[v.name] = v;
  return out;
}

test('krait dap on a Django view', { timeout: 10 * TIMEOUT }, async () => {
  const dc = new DebugClient(env.KRAIT_BIN, 'dap', 'krait');
  dc.defaultTimeout = TIMEOUT;
  await dc.start();
  let disconnected = false;
  let orders;
  try {
    await dc.initializeRequest();
    const initialized = dc.waitForEvent('initialized');
    await dc.attachRequest({ processId: Number(env.TARGET_PID) });
    await initialized;
    const set = await dc.setBreakpointsRequest({ source: { path: env.VIEWS_FILE }, breakpoints: [{ line: Number(env.ROWS_LINE) }] });
    assert.ok(set.body.breakpoints[0].verified, JSON.stringify(set.body));
    await dc.configurationDoneRequest();

    const stopped = dc.waitForEvent('stopped');
    orders = get('/orders/?limit=3');
    const ev = await stopped;
    assert.strictEqual(ev.body.reason, 'breakpoint');
    const frames = (await dc.stackTraceRequest({ threadId: ev.body.threadId })).body.stackFrames;
    assert.strictEqual(frames[0].name, 'orders');
    assert.strictEqual(frames[0].line, Number(env.ROWS_LINE));
    dc.assertPath(frames[0].source.path, env.VIEWS_FILE);

    // The daemon's other threads answer while this one is stopped.
    const health = await get('/health/');
    assert.strictEqual(health.body, 'ok\n');

    // From here on, nothing may run a query.
    const off = fs.statSync(env.PG_LOG).size;
    const scopes = (await dc.scopesRequest({ frameId: frames[0].id })).body.scopes;
    const locals = await vars(dc, scopes[0].variablesReference);
    assert.match(locals.queryset.value, /^<QuerySet shop\.Order: not evaluated/);
    assert.match(locals.request.value, /^<WSGIRequest: GET '\/orders\/\?limit=3'>$/);
    assert.strictEqual(locals.limit.value, '3.0');
    // Expand the QuerySet: its attributes, its query, never its rows.
    const qs = await vars(dc, locals.queryset.variablesReference);
    assert.strictEqual(qs._result_cache.value, 'None');
    const query = qs._query || qs.query;
    assert.ok(query && query.variablesReference > 0, JSON.stringify(Object.keys(qs)));
    const q = await vars(dc, query.variablesReference);
    assert.ok('where' in q, JSON.stringify(Object.keys(q)));
    // Expand the request: method, path, its WSGI environ.
    const req = await vars(dc, locals.request.variablesReference);
    assert.strictEqual(req.method.value, "'GET'");
    assert.strictEqual(req.path.value, "'/orders/'");
    const environ = await vars(dc, req.environ.variablesReference);
    assert.strictEqual(environ["'QUERY_STRING'"].value, "'limit=3'");
    // hover and watch render it the same way.
    const hover = (await dc.evaluateRequest({ expression: 'queryset', frameId: frames[0].id, context: 'hover' })).body;
    assert.match(hover.result, /^<QuerySet shop\.Order: not evaluated/);
    await vars(dc, hover.variablesReference);
    // The debug console's completions: a key of request.META, the
    // QuerySet's methods, the lazy user's attributes: none evaluates
    // the QuerySet or loads the user.
    const complete = async (text) => (await dc.send('completions', { frameId: frames[0].id, text, column: text.length + 1 })).body.targets;
    const meta = await complete("request.META['QUERY_");
    assert.deepStrictEqual(meta.map((c) => [c.label, c.type]), [['QUERY_STRING', 'value']]);
    const methods = await complete('queryset.fil');
    assert.deepStrictEqual(methods.map((c) => [c.label, c.type]), [['filter', 'function']]);
    await complete('request.user.');
    await new Promise((r) => setTimeout(r, 500)); // a statement would reach the log by now
    assert.deepStrictEqual(statements(off), [], 'krait ran statements while showing variables');

    // next: list() evaluates the QuerySet; now the SELECT runs.
    const stepped = dc.waitForEvent('stopped');
    await dc.nextRequest({ threadId: ev.body.threadId });
    await stepped;
    const top = (await dc.stackTraceRequest({ threadId: ev.body.threadId, levels: 1 })).body.stackFrames[0];
    assert.strictEqual(top.line, Number(env.BODY_LINE));
    for (let n = 0; !statements(off).some((l) => l.includes('FROM "shop_order"')); n++) {
      assert.ok(n < 100, 'no SELECT in the statement log after next');
      await new Promise((r) => setTimeout(r, 100));
    }

    await dc.disconnectRequest({});
    disconnected = true;
    const res = await orders;
    assert.strictEqual(res.status, 200);
    assert.match(res.body, /<h1>3 orders<\/h1>/);
  } finally {
    if (disconnected) {
      dc.stopAdapter();
    } else {
      await dc.stop();
      if (orders) await orders.catch(() => {});
    }
  }
});
