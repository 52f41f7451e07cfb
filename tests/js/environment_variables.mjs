// HOPX "Streaming execution": Environment Variables, JavaScript.
// As the page has it, with baseURL pointed at the server and the Python
// indentation restored.
import { Sandbox } from '@hopx-ai/sdk';

async function streamWithEnv() {
  const sandbox = await Sandbox.create({
    template: 'code-interpreter',
    baseURL: process.env.HOPX_BASE_URL,
  });

  const code = `
import os
print(f"API key: {os.getenv('API_KEY', 'not set')}")
print(f"Debug mode: {os.getenv('DEBUG', 'false')}")
`;

  for await (const message of sandbox.runCodeStream(code, {
    env: { API_KEY: 'sk-123', DEBUG: 'true' }
  })) {
    if (message.type === 'stdout') {
      process.stdout.write(message.data);
    } else if (message.type === 'complete') {
      break;
    }
  }

  await sandbox.kill();
}

streamWithEnv();
