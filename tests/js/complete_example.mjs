// HOPX "Streaming execution": Complete Example, JavaScript.
// As the page has it, with baseURL pointed at the server, the Python
// indentation restored, the sleep shortened, and the `import sys` the
// page's code lacks added (its warnings go to sys.stderr).
import { Sandbox } from '@hopx-ai/sdk';

async function completeStreamingExample() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
import sys
import time
import random

print("Starting data processing...")

total_items = 100
for i in range(total_items):
    # Simulate processing
    time.sleep(0.002)

    # Generate some output
    if i % 10 == 0:
        print(f"Processed {i}/{total_items} items")

    # Simulate occasional errors
    if random.random() < 0.05:
        print(f"Warning: Issue with item {i}", file=sys.stderr)

print("Processing complete!")
print(f"Total items processed: {total_items}")
`;

  console.log('🚀 Starting streaming execution...\n');

  for await (const message of sandbox.runCodeStream(code, {
    language: 'python',
    timeout: 120,
    env: { BATCH_SIZE: '10' }
  })) {
    if (message.type === 'stdout') {
      process.stdout.write(message.data);
    } else if (message.type === 'stderr') {
      process.stderr.write(`⚠️ ${message.data}`);
    } else if (message.type === 'result') {
      console.log(`\n\n📊 Execution Summary:`);
      console.log(` Exit code: ${message.exit_code}`);
      console.log(` Execution time: ${message.execution_time.toFixed(2)}s`);
    } else if (message.type === 'complete') {
      console.log('\n✅ Streaming completed');
      break;
    }
  }

  await sandbox.kill();
}

completeStreamingExample();
