// @azure/storage-blob against Cobalt: containers, block uploads, ranged and parallel
// downloads, listing with prefixes, metadata, SAS, conditional requests and errors.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import {
  BlobServiceClient,
  StorageSharedKeyCredential,
  ContainerSASPermissions,
  generateBlobSASQueryParameters,
  ContainerClient,
} from "@azure/storage-blob";
import { startCobalt, ACCOUNT, KEY } from "./cobalt.mjs";

let server;
let service;
const credential = new StorageSharedKeyCredential(ACCOUNT, KEY);
const sha = (b) => createHash("sha256").update(b).digest("hex");

before(async () => {
  server = await startCobalt();
  service = new BlobServiceClient(server.endpoint, credential, { retryOptions: { maxTries: 1 } });
});
after(async () => server?.stop());

test("container lifecycle and errors", async () => {
  const c = service.getContainerClient("js-lifecycle");
  await c.create({ metadata: { owner: "js" } });
  await assert.rejects(c.create(), (e) => e.statusCode === 409 && e.code === "ContainerAlreadyExists");
  const props = await c.getProperties();
  assert.equal(props.metadata.owner, "js");
  const names = [];
  for await (const item of service.listContainers({ prefix: "js-" })) names.push(item.name);
  assert.deepEqual(names, ["js-lifecycle"]);
  await c.delete();
  await assert.rejects(c.getProperties(), (e) => e.statusCode === 404);
});

test("uploads, ranged and parallel downloads of several sizes", async () => {
  const c = service.getContainerClient("js-data");
  await c.create();
  for (const size of [0, 1024, 9 * 1024 * 1024]) {
    const data = randomBytes(size);
    const blob = c.getBlockBlobClient(`blob-${size}`);
    // 2 MiB blocks so the 9 MiB blob goes up as Put Block + Put Block List.
    await blob.uploadData(data, { blockSize: 2 * 1024 * 1024, maxSingleShotSize: 4 * 1024 * 1024, concurrency: 4 });
    const whole = await blob.downloadToBuffer(0, undefined, { concurrency: 4, blockSize: 1024 * 1024 });
    assert.equal(sha(whole), sha(data), `size ${size}`);
    if (size > 100) {
      const part = await blob.downloadToBuffer(100, 50);
      assert.deepEqual(part, data.subarray(100, 150));
    }
    const props = await blob.getProperties();
    assert.equal(props.contentLength, size);
  }
  const names = [];
  for await (const item of c.listBlobsByHierarchy("/", { prefix: "blob-" })) names.push(item.name);
  assert.deepEqual(names.sort(), ["blob-0", "blob-1024", "blob-9437184"]);
  await c.delete();
});

test("metadata, conditions, SAS", async () => {
  const c = service.getContainerClient("js-sas");
  await c.create();
  const blob = c.getBlockBlobClient("note.txt");
  const up = await blob.upload("hello", 5, { metadata: { kind: "greeting" } });
  await assert.rejects(
    blob.upload("again", 5, { conditions: { ifNoneMatch: "*" } }),
    (e) => e.statusCode === 409 && e.code === "BlobAlreadyExists",
  );
  await assert.rejects(
    blob.setMetadata({ x: "y" }, { conditions: { ifMatch: '"0x1"' } }),
    (e) => e.statusCode === 412,
  );
  await blob.setMetadata({ x: "y" }, { conditions: { ifMatch: up.etag } });
  assert.deepEqual((await blob.getProperties()).metadata, { x: "y" });

  const expiresOn = new Date(Date.now() + 3600 * 1000);
  const read = generateBlobSASQueryParameters(
    { containerName: "js-sas", permissions: ContainerSASPermissions.parse("rl"), expiresOn },
    credential,
  ).toString();
  const viaSas = new ContainerClient(`${server.endpoint}/js-sas?${read}`, undefined, { retryOptions: { maxTries: 1 } });
  const text = (await viaSas.getBlockBlobClient("note.txt").downloadToBuffer()).toString();
  assert.equal(text, "hello");
  await assert.rejects(
    viaSas.getBlockBlobClient("other.txt").upload("x", 1),
    (e) => e.statusCode === 403 && e.code === "AuthorizationPermissionMismatch",
  );
  const wrong = new BlobServiceClient(
    server.endpoint,
    new StorageSharedKeyCredential(ACCOUNT, Buffer.alloc(64, 7).toString("base64")),
    { retryOptions: { maxTries: 1 } },
  );
  await assert.rejects(
    wrong.getContainerClient("js-sas").getProperties(),
    (e) => e.statusCode === 403,
  );
  await c.delete();
});
