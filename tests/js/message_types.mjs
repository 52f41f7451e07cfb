// HOPX "Streaming execution": Message Types, JavaScript.
// As the page has it, with baseURL pointed at the server and the Python
// indentation restored.
import { Sandbox } from '@hopx-ai/sdk';

async function handleAllMessageTypes() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
import sys
print("This is stdout")
print("This is also stdout", file=sys.stdout)
print("This is stderr", file=sys.stderr)
`;

  for await (const message of sandbox.runCodeStream(code)) {
    const msgType = message.type;

    if (msgType === 'stdout') {
      process.stdout.write(`[STDOUT] ${message.data}`);
    } else if (msgType === 'stderr') {
      process.stderr.write(`[STDERR] ${message.data}`);
    } else if (msgType === 'result') {
      console.log(`\n[RESULT] Exit: ${message.exit_code}, Time: ${message.execution_time}s`);
    } else if (msgType === 'complete') {
      console.log('[COMPLETE] Execution finished');
      break;
    }
  }

  await sandbox.kill();
}

handleAllMessageTypes();
