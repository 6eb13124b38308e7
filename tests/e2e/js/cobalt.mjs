// Starts the Cobalt binary on free ports for a test file and stops it afterwards.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const repo = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
export const ACCOUNT = "devstoreaccount1";
export const BATCH_ACCOUNT = "devbatchaccount1";
export const KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export async function startCobalt() {
  const bin = process.env.COBALT_BIN ?? join(repo, "target", "release", "cobalt");
  const dataDir = mkdtempSync(join(tmpdir(), "cobalt-js-"));
  const proc = spawn(bin, ["serve", "--data-dir", dataDir, "--blob-port", "0", "--batch-port", "0", "--host", "127.0.0.1"], {
    stdio: ["ignore", "ignore", "pipe"],
  });
  let log = "";
  // Resolves once both services have logged their addresses (ANSI colour codes stripped).
  const [url, batchUrl] = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`cobalt did not start:\n${log}`)), 20000);
    proc.stderr.on("data", (chunk) => {
      log += chunk;
      const plain = log.replace(/\x1b\[[0-9;]*m/g, "");
      const blob = /blob service listening on (http:\/\/[^\s"]+)/.exec(plain);
      const batch = /batch service listening on (http:\/\/[^\s"]+)/.exec(plain);
      if (blob && batch) {
        clearTimeout(timer);
        resolve([blob[1], batch[1]]);
      }
    });
    proc.on("exit", (code) => reject(new Error(`cobalt exited with ${code}:\n${log}`)));
  });
  return {
    endpoint: `${url}/${ACCOUNT}`,
    // Batch URL of the dev account (devbatchaccount1), e.g. http://127.0.0.1:PORT
    batchUrl,
    async stop() {
      const exited = new Promise((resolve) => proc.on("exit", resolve));
      proc.kill("SIGTERM");
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
