// HOPX "Streaming execution": Error Handling, JavaScript.
// As the page has it, with baseURL pointed at the server and the Python
// indentation restored.
import { Sandbox } from '@hopx-ai/sdk';

async function handleStreamingErrors() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
print("Starting...")
print(undefined_variable)  # This will cause an error
print("This won't be reached")
`;

  try {
    for await (const message of sandbox.runCodeStream(code)) {
      if (message.type === 'stdout') {
        process.stdout.write(message.data);
      } else if (message.type === 'stderr') {
        process.stderr.write(`ERROR: ${message.data}`);
      } else if (message.type === 'result') {
        if (message.exit_code !== 0) {
          console.log(`\n❌ Execution failed with exit code: ${message.exit_code}`);
        }
      } else if (message.type === 'complete') {
        if (!message.success) {
          console.log('\n❌ Execution completed with errors');
        }
        break;
      }
    }
  } catch (error) {
    console.error(`Streaming error: ${error.message}`);
  } finally {
    await sandbox.kill();
  }
}

handleStreamingErrors();
