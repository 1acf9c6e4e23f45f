// krait dap driven by Microsoft's DebugClient (@vscode/debugadapter-testsupport),
// a DAP client nobody on this project wrote, against a live fixture process
// (testdata/fixtures/dap_target.py) that test/dap/dap_test.go starts and
// names in the environment: KRAIT_BIN, TARGET_PID, TARGET_FILE.
'use strict';

const test = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const { DebugClient } = require('@vscode/debugadapter-testsupport');

const KRAIT = process.env.KRAIT_BIN;
const PID = process.env.TARGET_PID;
const FILE = process.env.TARGET_FILE;
const TIMEOUT = 60000; // a loaded machine: generous

function lineOf(marker) {
  const lines = fs.readFileSync(FILE, 'utf8').split('\n');
  const i = lines.findIndex((l) => l.includes(marker));
  assert.ok(i >= 0, `no line with ${marker}`);
  return i + 1;
}

const WORK = lineOf('# LINE work');
const FAIL = lineOf('# LINE fail');
const CALL_FAIL = lineOf('# LINE call fail');

async function top(dc, threadId) {
  const st = await dc.stackTraceRequest({ threadId, startFrame: 0, levels: 1 });
  return st.body.stackFrames[0];
}

async function evaluate(dc, frameId, expression, context = 'watch') {
  return (await dc.evaluateRequest({ expression, frameId, context })).body;
}

async function vars(dc, variablesReference) {
  const r = await dc.variablesRequest({ variablesReference });
  const out = {};
  for (const v of r.body.variables) out[v.name] = v;
  return out;
}

// other threads run while one is stopped: the fixture's ticker counts on.
async function othersRun(dc, frameId) {
  const t0 = Number((await evaluate(dc, frameId, 'ticks')).result);
  const deadline = Date.now() + 30000;
  for (;;) {
    const t1 = Number((await evaluate(dc, frameId, 'ticks')).result);
    if (t1 > t0 + 5) return;
    assert.ok(Date.now() < deadline, `ticks did not move while a thread was stopped (${t0}, ${t1})`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('krait dap with DebugClient', { timeout: 5 * TIMEOUT }, async (t) => {
  const dc = new DebugClient(KRAIT, 'dap', 'krait');
  dc.defaultTimeout = TIMEOUT;
  await dc.start();
  let disconnected = false;
  try {
    const init = await dc.initializeRequest();
    assert.ok(init.body.supportsConfigurationDoneRequest);
    assert.deepStrictEqual(init.body.exceptionBreakpointFilters.map((f) => f.filter), ['raised', 'uncaught']);

    // attach (processId as VS Code's process picker gives it: a string)
    // and the configuration: a conditional breakpoint.
    const initialized = dc.waitForEvent('initialized');
    await dc.attachRequest({ processId: String(PID), justMyCode: true });
    await initialized;
    const stoppedAtBP = dc.waitForEvent('stopped'); // it may stop before configurationDone
    const set = await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: WORK, condition: 'i % 4 == 0' }] });
    assert.strictEqual(set.body.breakpoints.length, 1);
    assert.ok(set.body.breakpoints[0].verified);
    await dc.configurationDoneRequest();

    let ev = await stoppedAtBP;
    assert.strictEqual(ev.body.reason, 'breakpoint');
    const th = ev.body.threadId;
    let frame = await top(dc, th);
    assert.strictEqual(frame.name, 'work');
    assert.strictEqual(frame.line, WORK);
    dc.assertPath(frame.source.path, FILE);

    await t.test('stack, paging', async () => {
      const all = (await dc.stackTraceRequest({ threadId: th })).body;
      assert.ok(all.stackFrames.length >= 2);
      assert.strictEqual(all.stackFrames[1].name, 'worker');
      const page = (await dc.stackTraceRequest({ threadId: th, startFrame: 1, levels: 1 })).body;
      assert.strictEqual(page.stackFrames.length, 1);
      assert.strictEqual(page.stackFrames[0].name, 'worker');
      assert.strictEqual(page.totalFrames, all.stackFrames.length);
    });

    await t.test('conditional breakpoint held', async () => {
      const i = await evaluate(dc, frame.id, 'i');
      assert.strictEqual(Number(i.result) % 4, 0);
    });

    await t.test('scopes and lazy variables', async () => {
      const scopes = (await dc.scopesRequest({ frameId: frame.id })).body.scopes;
      assert.deepStrictEqual(scopes.map((s) => s.name), ['Locals', 'Globals']);
      const locals = await vars(dc, scopes[0].variablesReference);
      const i = (await evaluate(dc, frame.id, 'i')).result;
      assert.strictEqual(locals.i.value, i);
      assert.ok(locals.data.variablesReference > 0);
      const data = await vars(dc, locals.data.variablesReference);
      assert.strictEqual(data["'items'"].value, '[1, 2, 3]');
      const items = await vars(dc, data["'items'"].variablesReference);
      assert.deepStrictEqual(Object.keys(items), ['[0]', '[1]', '[2]']);
      // Point's __repr__ raises: never called for display.
      assert.match(data["'p'"].value, /Point object at 0x/);
      const p = await vars(dc, data["'p'"].variablesReference);
      assert.strictEqual(p.x.value, i);
      assert.strictEqual(p.y.value, "'y'");
      const globals = await vars(dc, scopes[1].variablesReference);
      assert.ok('ticks' in globals && 'Point' in globals);
    });

    await t.test('evaluate: hover safe, repl runs repr', async () => {
      const h = await evaluate(dc, frame.id, "data['p']", 'hover');
      assert.match(h.result, /Point object at 0x/);
      await assert.rejects(dc.evaluateRequest({ expression: "data['p']", frameId: frame.id, context: 'repl' }), /user __repr__ ran/);
      const r = await evaluate(dc, frame.id, "data['items'] + [4]", 'repl');
      assert.strictEqual(r.result, '[1, 2, 3, 4]');
    });

    await t.test('completions: a dict key, attributes (no code of the process runs)', async () => {
      assert.ok(init.body.supportsCompletionsRequest);
      const keys = (await dc.send('completions', { frameId: frame.id, text: "data['it", column: 9 })).body.targets;
      assert.deepStrictEqual(keys.map((c) => [c.label, c.type, c.start, c.length]), [['items', 'value', 7, 2]]);
      const attrs = (await dc.send('completions', { frameId: frame.id, text: "data['p'].", column: 11 })).body.targets;
      assert.deepStrictEqual(attrs.map((c) => c.label), ['x', 'y']);
    });

    await t.test('setVariable', async () => {
      const scopes = (await dc.scopesRequest({ frameId: frame.id })).body.scopes;
      const r = await dc.setVariableRequest({ variablesReference: scopes[0].variablesReference, name: 'total', value: '-7' });
      assert.strictEqual(r.body.value, '-7');
      assert.strictEqual((await evaluate(dc, frame.id, 'total')).result, '-7');
    });

    await t.test('other threads keep running', async () => {
      await othersRun(dc, frame.id);
    });

    await t.test('step: next, stepIn, stepOut', async () => {
      let stopped = dc.waitForEvent('stopped');
      await dc.nextRequest({ threadId: th });
      ev = await stopped;
      assert.strictEqual(ev.body.reason, 'step');
      assert.strictEqual((await top(dc, th)).line, WORK + 1);
      stopped = dc.waitForEvent('stopped');
      await dc.stepOutRequest({ threadId: th });
      await stopped;
      assert.strictEqual((await top(dc, th)).name, 'worker');
      // clear the breakpoint; next to the call of fail(), stepIn into it
      await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [] });
      frame = await top(dc, th);
      for (let n = 0; n < 10 && frame.name !== 'fail'; n++) {
        stopped = dc.waitForEvent('stopped');
        if (frame.name !== 'worker') {
          await dc.stepOutRequest({ threadId: th });
        } else if (frame.line === CALL_FAIL) {
          await dc.stepInRequest({ threadId: th });
        } else {
          await dc.nextRequest({ threadId: th });
        }
        await stopped;
        frame = await top(dc, th);
      }
      assert.strictEqual(frame.name, 'fail');
      assert.strictEqual(frame.line, FAIL);
    });

    await t.test('exception breakpoint (raised) and exceptionInfo', async () => {
      await dc.setExceptionBreakpointsRequest({ filters: ['raised'] });
      const stopped = dc.waitForEvent('stopped');
      await dc.continueRequest({ threadId: th });
      ev = await stopped;
      assert.strictEqual(ev.body.reason, 'exception');
      const info = (await dc.exceptionInfoRequest({ threadId: ev.body.threadId })).body;
      assert.strictEqual(info.exceptionId, 'ValueError');
      assert.match(info.description, /^ValueError\('bad \d+'\)$/);
      assert.strictEqual(info.breakMode, 'always');
      assert.strictEqual((await top(dc, ev.body.threadId)).line, FAIL);
      await dc.setExceptionBreakpointsRequest({ filters: [] });
      await dc.continueRequest({ threadId: ev.body.threadId });
    });

    await t.test('function breakpoint', async () => {
      const stopped = dc.waitForEvent('stopped');
      const r = await dc.setFunctionBreakpointsRequest({ breakpoints: [{ name: 'spin_step' }] });
      assert.ok(r.body.breakpoints[0].verified);
      ev = await stopped;
      assert.strictEqual(ev.body.reason, 'breakpoint');
      assert.strictEqual((await top(dc, ev.body.threadId)).name, 'spin_step');
      await dc.setFunctionBreakpointsRequest({ breakpoints: [] });
      await dc.continueRequest({ threadId: ev.body.threadId });
    });

    await t.test('pause one running thread', async () => {
      const threads = (await dc.threadsRequest()).body.threads;
      const spinner = threads.find((x) => x.name === 'spinner');
      assert.ok(spinner, JSON.stringify(threads));
      const stopped = dc.waitForEvent('stopped');
      await dc.pauseRequest({ threadId: spinner.id });
      ev = await stopped;
      assert.strictEqual(ev.body.reason, 'pause');
      assert.strictEqual(ev.body.threadId, spinner.id);
      const f = await top(dc, spinner.id);
      await othersRun(dc, f.id);
      await dc.continueRequest({ threadId: spinner.id });
    });

    await t.test('logpoint: a message, safely rendered, the thread not stopped', async () => {
      let stops = 0;
      const onStop = () => { stops++; };
      dc.on('stopped', onStop);
      const got = new Promise((resolve) => {
        const on = (e) => {
          if (e.body.output.startsWith('work ')) {
            dc.removeListener('output', on);
            resolve(e.body);
          }
        };
        dc.on('output', on);
      });
      const r = await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: WORK, logMessage: "work {i} items={data['items']} p={data['p']}" }] });
      assert.ok(r.body.breakpoints[0].verified);
      const out = await got;
      assert.match(out.output, /^work \d+ items=\[1, 2, 3\] p=<\S*Point object at 0x[0-9a-f]+> \{x = \d+, y = 'y'\}\n$/);
      assert.strictEqual(out.line, WORK);
      dc.assertPath(out.source.path, FILE);
      await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [] });
      dc.removeListener('stopped', onStop);
      assert.strictEqual(stops, 0);
    });

    await t.test('disconnect detaches, the process runs on', async () => {
      // a thread held at a breakpoint as we go: it must be let go too.
      const stopped = dc.waitForEvent('stopped');
      await dc.setBreakpointsRequest({ source: { path: FILE }, breakpoints: [{ line: WORK }] });
      await stopped;
      await dc.disconnectRequest({ terminateDebuggee: true });
      disconnected = true;
      process.kill(Number(PID), 0); // still there
    });
  } finally {
    if (disconnected) {
      dc.stopAdapter(); // krait dap exits after disconnect: nothing to ask
    } else {
      await dc.stop();
    }
  }
});
