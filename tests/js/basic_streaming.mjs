// HOPX "Streaming execution": Basic Streaming, JavaScript.
// As the page has it, with baseURL pointed at the server, the Python
// indentation restored and the sleeps shortened.
import { Sandbox } from '@hopx-ai/sdk';

async function streamExecution() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
import time
for i in range(5):
    print(f"Step {i+1}/5")
    time.sleep(0.01)
print("Done!")
`;

  for await (const message of sandbox.runCodeStream(code)) {
    if (message.type === 'stdout') {
      process.stdout.write(message.data);
    } else if (message.type === 'stderr') {
      process.stderr.write(`ERROR: ${message.data}`);
    } else if (message.type === 'result') {
      console.log(`\nExit code: ${message.exit_code}`);
      console.log(`Execution time: ${message.execution_time}s`);
    } else if (message.type === 'complete') {
      console.log('\n✅ Execution completed');
      break;
    }
  }

  await sandbox.kill();
}

streamExecution();
