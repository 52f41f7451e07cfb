// HOPX "Streaming execution": Progress Monitoring, JavaScript.
// As the page has it, with baseURL pointed at the server, the Python
// indentation restored and the sleeps shortened.
import { Sandbox } from '@hopx-ai/sdk';

async function monitorProgress() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
import time
total_steps = 20
for i in range(total_steps):
    progress = (i + 1) / total_steps * 100
    print(f"Progress: {progress:.1f}% ({i+1}/{total_steps})")
    time.sleep(0.01)
print("All steps completed!")
`;

  for await (const message of sandbox.runCodeStream(code)) {
    if (message.type === 'stdout') {
      // Display progress in real-time
      process.stdout.write(message.data);
    } else if (message.type === 'complete') {
      console.log('\n✅ Task completed successfully');
      break;
    }
  }

  await sandbox.kill();
}

monitorProgress();
