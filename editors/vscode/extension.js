// krait's VS Code extension: the `krait` debug type, whose adapter is
// `krait dap` on stdin/stdout, and a process picker fed by `krait ps --json`.
'use strict';

const vscode = require('vscode');
const cp = require('child_process');

function kraitPath() {
  return vscode.workspace.getConfiguration('krait').get('path') || 'krait';
}

// pickProcess lists the host's Python processes as krait ps sees them and
// returns the chosen pid (as a string, as VS Code's pickers do).
async function pickProcess() {
  let list;
  try {
    const out = cp.execFileSync(kraitPath(), ['ps', '--json'], { encoding: 'utf8', maxBuffer: 16 << 20 });
    list = JSON.parse(out).processes || [];
  } catch (e) {
    // krait ps exits 4 when some processes could not be read; its JSON is still there.
    try {
      list = JSON.parse(e.stdout || '').processes || [];
    } catch (_) {
      vscode.window.showErrorMessage(`krait ps failed: ${e.message}`);
      return undefined;
    }
  }
  const items = list
    .filter((p) => p.python_version)
    .map((p) => ({
      label: `${p.pid}: ${p.server || 'python'}${p.group ? ' ' + p.group : ''}`,
      description: `Python ${p.python_version}${p.django_settings ? ', ' + p.django_settings : ''} (${p.user})`,
      detail: p.command,
      pid: String(p.pid),
    }));
  const chosen = await vscode.window.showQuickPick(items, { placeHolder: 'The Python process to attach krait to', matchOnDetail: true });
  return chosen ? chosen.pid : undefined;
}

class Factory {
  createDebugAdapterDescriptor() {
    return new vscode.DebugAdapterExecutable(kraitPath(), ['dap']);
  }
}

function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('krait.pickProcess', pickProcess),
    vscode.debug.registerDebugAdapterDescriptorFactory('krait', new Factory()),
  );
}

function deactivate() {}

module.exports = { activate, deactivate };
