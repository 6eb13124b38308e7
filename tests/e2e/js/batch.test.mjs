// @azure/batch 10.2.0 (api-version 2022-10-01.16.0) against Cobalt's Batch service: pools,
// jobs, job schedules and tasks (create/get/list/delete), addCollection, paging with
// listNext, OData $filter/$select, job and task state operations, task counts, exists,
// conditional headers and the errors the SDK surfaces as RestError.
//
// Compute nodes do not exist yet: pools with targetDedicatedNodes > 0 stay `resizing`, tasks
// stay `active` unless terminated. Nothing here waits for, or fakes, node or task progress.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { BatchServiceClient, BatchSharedKeyCredentials } from "@azure/batch";
import { startCobalt, BATCH_ACCOUNT, KEY } from "./cobalt.mjs";

let server;
let client;
// Every id carries this run's token, so lists can be narrowed to what a test created.
const RUN = `${Date.now().toString(36)}${randomBytes(3).toString("hex")}`;
let serial = 0;
const uid = (kind) => `js-${kind}-${RUN}-${serial++}`;

const IMAGE = {
  imageReference: { publisher: "canonical", offer: "0001-com-ubuntu-server-jammy", sku: "22_04-lts", version: "latest" },
  nodeAgentSKUId: "batch.node.ubuntu 22.04",
};
const poolSpec = (id, targetDedicatedNodes = 0) => ({
  id,
  vmSize: "standard_d2s_v3",
  virtualMachineConfiguration: IMAGE,
  targetDedicatedNodes,
});
const taskSpec = (id) => ({ id, commandLine: `/bin/sh -c 'echo ${id}'` });

// No retry policy: a 5xx must fail the test at once instead of being retried for minutes.
const newClient = (key = KEY) =>
  new BatchServiceClient(new BatchSharedKeyCredentials(BATCH_ACCOUNT, key), server.batchUrl, { noRetryPolicy: true });

before(async () => {
  server = await startCobalt();
  client = newClient();
});
after(async () => server?.stop());

/** Describes a failed SDK call: request line, status and the raw response body. */
function describe(e) {
  const req = e?.request ? `${e.request.method} ${e.request.url}` : "(no request)";
  // RestError keeps the parsed Batch error in .body; without one, .message holds the raw text.
  const body = e?.body !== undefined ? JSON.stringify(e.body) : JSON.stringify(e?.message);
  return `${req} -> ${e?.statusCode} code=${e?.code} body=${body}`;
}

/** Awaits `promise`, which must fail with a RestError of `status` carrying Batch error `code`. */
async function rejectsWith(promise, status, code) {
  let err;
  try {
    const res = await promise;
    const r = res?._response;
    assert.fail(`expected ${status} ${code}, got success ${r?.status} for ${r?.request?.method} ${r?.request?.url}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  const detail = describe(err);
  assert.equal(err.constructor?.name, "RestError", detail);
  assert.equal(err.statusCode, status, detail);
  if (code !== undefined) {
    assert.equal(err.code, code, detail);
    assert.equal(err.body?.code, code, detail);
    assert.equal(typeof err.body?.message?.value, "string", detail);
    assert.ok(err.body.message.value.length > 0, detail);
    assert.equal(err.body.message.lang?.toLowerCase(), "en-us", detail);
  }
  return err;
}

/** Polls `get` until `done(value)` holds; fails with the last value after `ms`. */
async function waitFor(what, get, done, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await get();
    if (done(last)) return last;
    if (Date.now() > deadline) assert.fail(`${what}: still not there after ${ms} ms, last value ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Every item of a list, following odata.nextLink with listNext; returns [items, page sizes, links]. */
async function drain(first, next) {
  const items = [...first];
  const sizes = [first.length];
  const links = [];
  let link = first.odatanextLink;
  while (link) {
    links.push(link);
    assert.ok(links.length <= 100, "odata.nextLink never ends");
    const page = await next(link);
    items.push(...page);
    sizes.push(page.length);
    link = page.odatanextLink;
  }
  return [items, sizes, links];
}

const notFound = (op) => op.then(() => "present", (e) => (e.statusCode === 404 ? "gone" : Promise.reject(e)));

// ---------------------------------------------------------------------------------- pools

test("pool: add, get, $select, list with $filter/$select, exists, delete", async () => {
  const id = uid("pool");
  const added = await client.pool.add(poolSpec(id));
  assert.equal(added._response.status, 201);

  // Azure reports a new pool as `resizing` until its (here: empty) allocation is done.
  const pool = await waitFor(`pool ${id} steady`, () => client.pool.get(id), (p) => p.allocationState === "steady");
  assert.equal(pool._response.status, 200);
  assert.equal(pool.id, id);
  assert.equal(pool.vmSize, "standard_d2s_v3");
  assert.equal(pool.state, "active");
  assert.equal(pool.targetDedicatedNodes, 0);
  assert.equal(pool.currentDedicatedNodes, 0);
  assert.equal(pool.virtualMachineConfiguration?.nodeAgentSKUId, IMAGE.nodeAgentSKUId);
  for (const [k, v] of Object.entries(IMAGE.imageReference)) {
    assert.equal(pool.virtualMachineConfiguration.imageReference?.[k], v, `imageReference.${k}`);
  }
  assert.ok(pool.eTag, "eTag");
  assert.ok(pool.lastModified instanceof Date && !isNaN(pool.lastModified), `lastModified ${pool.lastModified}`);
  assert.ok(pool.creationTime instanceof Date && !isNaN(pool.creationTime), `creationTime ${pool.creationTime}`);
  assert.ok(pool.url?.endsWith(`/pools/${id}`), `url ${pool.url}`);

  const slim = await client.pool.get(id, { poolGetOptions: { select: "id,state" } });
  assert.equal(slim.id, id);
  assert.equal(slim.state, "active");
  assert.equal(slim.vmSize, undefined, "$select=id,state must leave vmSize out");
  assert.equal(slim.allocationState, undefined, "$select=id,state must leave allocationState out");

  const other = uid("pool");
  await client.pool.add(poolSpec(other));
  await waitFor(`pool ${other} steady`, () => client.pool.get(other), (p) => p.allocationState === "steady");
  const listed = await client.pool.list({
    poolListOptions: { filter: `startswith(id, 'js-pool-${RUN}')`, select: "id,allocationState" },
  });
  assert.equal(listed._response.status, 200);
  assert.deepEqual(listed.map((p) => p.id).sort(), [id, other].sort());
  for (const p of listed) {
    assert.equal(p.allocationState, "steady");
    assert.equal(p.vmSize, undefined, "$select on list must leave vmSize out");
  }
  const exact = await client.pool.list({ poolListOptions: { filter: `id eq '${other}'` } });
  assert.deepEqual(exact.map((p) => p.id), [other]);

  const exists = await client.pool.exists(id);
  assert.equal(exists._response.status, 200);
  assert.equal(exists.body, true);
  const missing = await client.pool.exists(uid("nopool"));
  assert.equal(missing._response.status, 404);
  assert.equal(missing.body, false);

  const del = await client.pool.deleteMethod(id);
  assert.equal(del._response.status, 202);
  // Azure moves the pool to `deleting`, then removes it.
  const afterDelete = await client.pool.get(id).then((p) => p.state, (e) => (e.statusCode === 404 ? "gone" : Promise.reject(e)));
  assert.ok(["deleting", "gone"].includes(afterDelete), `state after delete: ${afterDelete}`);
  await waitFor(`pool ${id} removed`, async () => (await client.pool.exists(id)).body, (present) => present === false);
  await rejectsWith(client.pool.get(id), 404, "PoolNotFound");
  await client.pool.deleteMethod(other);
});

test("pool: targetDedicatedNodes > 0 gets local nodes that go idle", async () => {
  const id = uid("pool");
  await client.pool.add(poolSpec(id, 2));
  const pool = await waitFor("steady pool", () => client.pool.get(id), (p) => p.allocationState === "steady");
  assert.equal(pool.targetDedicatedNodes, 2);
  assert.equal(pool.currentDedicatedNodes, 2);
  const idle = async () => [...(await client.computeNode.list(id))].filter((n) => n.state === "idle");
  const nodes = await waitFor("two idle nodes", idle, (ns) => ns.length === 2, 20000);
  for (const n of nodes) {
    assert.match(n.id, /^tvm-/);
    assert.equal(n.schedulingState, "enabled");
  }
  const steady = await client.pool.list({ poolListOptions: { filter: `startswith(id,'js-pool-${RUN}') and allocationState eq 'steady' and id eq '${id}'` } });
  assert.deepEqual(steady.map((p) => p.id), [id]);
  await client.pool.deleteMethod(id);
});

test("pool errors: 409 PoolExists, 404 PoolNotFound, 400 InvalidPropertyValue", async () => {
  const id = uid("pool");
  await client.pool.add(poolSpec(id));
  await rejectsWith(client.pool.add(poolSpec(id)), 409, "PoolExists");
  // Ids are case-insensitive in Batch.
  await rejectsWith(client.pool.add(poolSpec(id.toUpperCase())), 409, "PoolExists");
  const ghost = uid("nopool");
  await rejectsWith(client.pool.get(ghost), 404, "PoolNotFound");
  await rejectsWith(client.pool.deleteMethod(ghost), 404, "PoolNotFound");
  await rejectsWith(client.computeNode.list(ghost), 404, "PoolNotFound");
  // Valid for the SDK's client-side checks, invalid for the service: ids are [A-Za-z0-9_-]{1,64}.
  const bad = await rejectsWith(client.pool.add(poolSpec("bad pool id!")), 400, "InvalidPropertyValue");
  assert.ok(
    (bad.body.values ?? []).some((v) => v.key === "PropertyName" && v.value === "id"),
    `expected values to name the id property: ${describe(bad)}`,
  );
  await rejectsWith(client.pool.add(poolSpec("x".repeat(65))), 400, "InvalidPropertyValue");
  await client.pool.deleteMethod(id);
});

test("wrong key: 403 AuthenticationFailed as RestError", async () => {
  const wrong = newClient(Buffer.from("definitely not the account key").toString("base64"));
  const e = await rejectsWith(wrong.pool.list(), 403, "AuthenticationFailed");
  assert.ok(
    (e.body.values ?? []).some((v) => v.key === "AuthenticationErrorDetail" && v.value),
    `expected an AuthenticationErrorDetail value: ${describe(e)}`,
  );
  await rejectsWith(wrong.job.get(uid("job")), 403, "AuthenticationFailed");
  await rejectsWith(wrong.pool.add(poolSpec(uid("pool"))), 403, "AuthenticationFailed");
  await rejectsWith(wrong.job.deleteMethod(uid("job")), 403, "AuthenticationFailed");
  // The same client with the right key works: the failure was the signature, nothing else.
  assert.equal((await client.pool.list()).constructor, Array);
});

// ----------------------------------------------------------------------------------- jobs

test("job: add, get, list with $filter/$select, disable/enable, terminate, delete", async () => {
  const poolId = uid("pool");
  await client.pool.add(poolSpec(poolId));
  const id = uid("job");
  const added = await client.job.add({ id, poolInfo: { poolId }, priority: 100, displayName: "js job" });
  assert.equal(added._response.status, 201);

  const job = await client.job.get(id);
  assert.equal(job.id, id);
  assert.equal(job.state, "active");
  assert.equal(job.priority, 100);
  assert.equal(job.displayName, "js job");
  assert.equal(job.poolInfo?.poolId, poolId);
  assert.ok(job.eTag && job.creationTime instanceof Date && job.lastModified instanceof Date);
  assert.ok(job.executionInfo?.startTime instanceof Date, `executionInfo.startTime ${JSON.stringify(job.executionInfo)}`);

  const other = uid("job");
  await client.job.add({ id: other, poolInfo: { poolId } });
  const listed = await client.job.list({
    jobListOptions: { filter: `startswith(id,'js-job-${RUN}') and state eq 'active'`, select: "id,state" },
  });
  assert.deepEqual(listed.map((j) => j.id).sort(), [id, other].sort());
  for (const j of listed) {
    assert.equal(j.state, "active");
    assert.equal(j.poolInfo, undefined, "$select=id,state must leave poolInfo out");
  }

  // disable -> disabling -> disabled
  const dis = await client.job.disable(id, "requeue");
  assert.equal(dis._response.status, 202);
  await waitFor(`job ${id} disabled`, async () => (await client.job.get(id)).state, (s) => s === "disabled");
  const onlyDisabled = await client.job.list({ jobListOptions: { filter: `startswith(id,'js-job-${RUN}') and state eq 'disabled'` } });
  assert.deepEqual(onlyDisabled.map((j) => j.id), [id]);

  // enable -> enabling -> active
  const en = await client.job.enable(id);
  assert.equal(en._response.status, 202);
  await waitFor(`job ${id} active again`, async () => (await client.job.get(id)).state, (s) => s === "active");

  // terminate (default reason) -> terminating -> completed
  const term = await client.job.terminate(id);
  assert.equal(term._response.status, 202);
  const done = await waitFor(`job ${id} completed`, () => client.job.get(id), (j) => j.state === "completed");
  assert.equal(done.executionInfo?.terminateReason, "UserTerminate");
  assert.ok(done.executionInfo?.endTime instanceof Date, `endTime ${JSON.stringify(done.executionInfo)}`);
  // A completed job takes no new tasks.
  await rejectsWith(client.task.add(id, taskSpec("late")), 409, "JobCompleted");

  // terminate with a reason of our own
  await client.job.terminate(other, { terminateReason: "js-finished" });
  const doneOther = await waitFor(`job ${other} completed`, () => client.job.get(other), (j) => j.state === "completed");
  assert.equal(doneOther.executionInfo?.terminateReason, "js-finished");

  const del = await client.job.deleteMethod(id);
  assert.equal(del._response.status, 202);
  await waitFor(`job ${id} removed`, () => notFound(client.job.get(id)), (s) => s === "gone");
  await rejectsWith(client.job.get(id), 404, "JobNotFound");
  await client.job.deleteMethod(other);
  await client.pool.deleteMethod(poolId);
});

test("job errors: 409 JobExists, 404 JobNotFound", async () => {
  const poolId = uid("pool");
  const id = uid("job");
  await client.job.add({ id, poolInfo: { poolId } });
  await rejectsWith(client.job.add({ id, poolInfo: { poolId } }), 409, "JobExists");
  const ghost = uid("nojob");
  await rejectsWith(client.job.get(ghost), 404, "JobNotFound");
  await rejectsWith(client.job.deleteMethod(ghost), 404, "JobNotFound");
  await rejectsWith(client.job.terminate(ghost), 404, "JobNotFound");
  await rejectsWith(client.job.disable(ghost, "requeue"), 404, "JobNotFound");
  await rejectsWith(client.job.enable(ghost), 404, "JobNotFound");
  await rejectsWith(client.job.getTaskCounts(ghost), 404, "JobNotFound");
  await rejectsWith(client.task.add(ghost, taskSpec("t")), 404, "JobNotFound");
  await rejectsWith(client.task.addCollection(ghost, [taskSpec("t")]), 404, "JobNotFound");
  await rejectsWith(client.task.list(ghost), 404, "JobNotFound");
  await client.job.deleteMethod(id);
});

test("conditional headers: If-Match with a stale ETag is 412 ConditionNotMet", async () => {
  const id = uid("job");
  await client.job.add({ id, poolInfo: { poolId: uid("pool") } });
  const { eTag } = await client.job.get(id);
  await rejectsWith(
    client.job.deleteMethod(id, { jobDeleteMethodOptions: { ifMatch: "0x8D0000000000000" } }),
    412,
    "ConditionNotMet",
  );
  assert.equal((await client.job.get(id)).state, "active", "a failed If-Match must not delete");
  const del = await client.job.deleteMethod(id, { jobDeleteMethodOptions: { ifMatch: eTag } });
  assert.equal(del._response.status, 202);
});

// -------------------------------------------------------------------------- job schedules

test("job schedule: add, get, exists, list, disable/enable, terminate, delete; 409/404", async () => {
  const poolId = uid("pool");
  const id = uid("sched");
  const spec = {
    id,
    displayName: "js schedule",
    // Far in the future, so the schedule never creates a job during the test.
    schedule: { doNotRunUntil: new Date(Date.now() + 7 * 24 * 3600 * 1000), recurrenceInterval: "PT1H" },
    jobSpecification: { poolInfo: { poolId }, priority: 5 },
  };
  const added = await client.jobSchedule.add(spec);
  assert.equal(added._response.status, 201);
  await rejectsWith(client.jobSchedule.add(spec), 409, "JobScheduleExists");

  const js = await client.jobSchedule.get(id);
  assert.equal(js.id, id);
  assert.equal(js.state, "active");
  assert.equal(js.displayName, "js schedule");
  assert.equal(js.schedule?.recurrenceInterval, "PT1H");
  assert.equal(js.jobSpecification?.poolInfo?.poolId, poolId);
  assert.equal(js.jobSpecification?.priority, 5);
  assert.ok(js.eTag && js.creationTime instanceof Date);

  const exists = await client.jobSchedule.exists(id);
  assert.equal(exists._response.status, 200);
  assert.equal(exists.body, true);
  const ghost = uid("nosched");
  const missing = await client.jobSchedule.exists(ghost);
  assert.equal(missing._response.status, 404);
  assert.equal(missing.body, false);
  await rejectsWith(client.jobSchedule.get(ghost), 404, "JobScheduleNotFound");
  await rejectsWith(client.jobSchedule.deleteMethod(ghost), 404, "JobScheduleNotFound");

  const listed = await client.jobSchedule.list({
    jobScheduleListOptions: { filter: `id eq '${id}'`, select: "id,state" },
  });
  assert.deepEqual(listed.map((s) => [s.id, s.state]), [[id, "active"]]);
  assert.equal(listed[0].jobSpecification, undefined, "$select=id,state must leave jobSpecification out");

  const dis = await client.jobSchedule.disable(id);
  assert.equal(dis._response.status, 204);
  assert.equal((await client.jobSchedule.get(id)).state, "disabled");
  const en = await client.jobSchedule.enable(id);
  assert.equal(en._response.status, 204);
  assert.equal((await client.jobSchedule.get(id)).state, "active");

  const term = await client.jobSchedule.terminate(id);
  assert.equal(term._response.status, 202);
  await waitFor(`schedule ${id} completed`, async () => (await client.jobSchedule.get(id)).state, (s) => s === "completed");

  const del = await client.jobSchedule.deleteMethod(id);
  assert.equal(del._response.status, 202);
  await waitFor(`schedule ${id} removed`, async () => (await client.jobSchedule.exists(id)).body, (b) => b === false);
  await rejectsWith(client.jobSchedule.get(id), 404, "JobScheduleNotFound");
});

// ---------------------------------------------------------------------------------- tasks

test("task: add, get, $select, list, terminate (completed), delete, task counts; 409/404", async () => {
  const jobId = uid("job");
  await client.job.add({ id: jobId, poolInfo: { poolId: uid("pool") } });
  const added = await client.task.add(jobId, { ...taskSpec("t1"), displayName: "first" });
  assert.equal(added._response.status, 201);
  await client.task.add(jobId, taskSpec("t2"));
  await client.task.add(jobId, taskSpec("t3"));
  await rejectsWith(client.task.add(jobId, taskSpec("t1")), 409, "TaskExists");

  const t1 = await client.task.get(jobId, "t1");
  assert.equal(t1.id, "t1");
  assert.equal(t1.displayName, "first");
  assert.equal(t1.commandLine, taskSpec("t1").commandLine);
  assert.equal(t1.state, "active");
  assert.ok(t1.eTag && t1.creationTime instanceof Date && t1.stateTransitionTime instanceof Date);
  assert.ok(t1.url?.endsWith(`/jobs/${jobId}/tasks/t1`), `url ${t1.url}`);

  const slim = await client.task.get(jobId, "t1", { taskGetOptions: { select: "id,state" } });
  assert.deepEqual([slim.id, slim.state, slim.commandLine], ["t1", "active", undefined]);

  const all = await client.task.list(jobId);
  assert.deepEqual(all.map((t) => t.id).sort(), ["t1", "t2", "t3"]);
  assert.ok(!all.odatanextLink, `no next page expected, got ${all.odatanextLink}`);

  let counts = await client.job.getTaskCounts(jobId);
  assert.equal(counts._response.status, 200);
  assert.deepEqual(counts.taskCounts, { active: 3, running: 0, completed: 0, succeeded: 0, failed: 0 });

  const term = await client.task.terminate(jobId, "t2");
  assert.equal(term._response.status, 204);
  const t2 = await client.task.get(jobId, "t2");
  assert.equal(t2.state, "completed");
  assert.equal(t2.previousState, "active");
  // Terminating a completed task again is refused.
  await rejectsWith(client.task.terminate(jobId, "t2"), 409, "TaskCompleted");

  counts = await client.job.getTaskCounts(jobId);
  assert.equal(counts.taskCounts.active, 2);
  assert.equal(counts.taskCounts.running, 0);
  assert.equal(counts.taskCounts.completed, 1);
  assert.equal(counts.taskCounts.succeeded + counts.taskCounts.failed, 1, JSON.stringify(counts.taskCounts));

  const del = await client.task.deleteMethod(jobId, "t3");
  assert.equal(del._response.status, 200);
  await rejectsWith(client.task.get(jobId, "t3"), 404, "TaskNotFound");
  await rejectsWith(client.task.deleteMethod(jobId, "t3"), 404, "TaskNotFound");
  await rejectsWith(client.task.terminate(jobId, "t3"), 404, "TaskNotFound");
  assert.deepEqual((await client.task.list(jobId)).map((t) => t.id).sort(), ["t1", "t2"]);
  counts = await client.job.getTaskCounts(jobId);
  assert.equal(counts.taskCounts.active, 1);
  assert.equal(counts.taskCounts.completed, 1);

  await client.job.deleteMethod(jobId);
});

test("task.addCollection: 100 tasks, then a duplicate id is clienterror TaskExists", async () => {
  const jobId = uid("job");
  await client.job.add({ id: jobId, poolInfo: { poolId: uid("pool") } });
  const ids = Array.from({ length: 100 }, (_, i) => `task-${String(i).padStart(3, "0")}`);
  const res = await client.task.addCollection(jobId, ids.map(taskSpec));
  assert.equal(res._response.status, 200);
  assert.equal(res.value.length, 100);
  for (const r of res.value) assert.equal(r.status, "success", JSON.stringify(r));
  assert.deepEqual(res.value.map((r) => r.taskId).sort(), ids);
  for (const r of res.value) assert.ok(r.eTag && r.lastModified instanceof Date, JSON.stringify(r));

  const listed = await client.task.list(jobId);
  assert.deepEqual(listed.map((t) => t.id).sort(), ids);
  assert.equal((await client.job.getTaskCounts(jobId)).taskCounts.active, 100);

  // One new task and one that exists: per-task results, the request itself succeeds.
  const mixed = await client.task.addCollection(jobId, [taskSpec("task-new"), taskSpec("task-042")]);
  assert.equal(mixed._response.status, 200);
  const byId = Object.fromEntries(mixed.value.map((r) => [r.taskId, r]));
  assert.deepEqual(Object.keys(byId).sort(), ["task-042", "task-new"]);
  assert.equal(byId["task-new"].status, "success");
  const dup = byId["task-042"];
  assert.equal(dup.status, "clienterror", JSON.stringify(dup));
  assert.equal(dup.error?.code, "TaskExists", JSON.stringify(dup));
  assert.ok(dup.error?.message?.value, JSON.stringify(dup));
  // The failed entry did not replace the existing task.
  assert.equal((await client.task.get(jobId, "task-042")).commandLine, taskSpec("task-042").commandLine);
  assert.equal((await client.job.getTaskCounts(jobId)).taskCounts.active, 101);
  await client.job.deleteMethod(jobId);
});

test("paging over 2,500 tasks with list + listNext, $filter and $select across pages", async () => {
  const jobId = uid("job");
  await client.job.add({ id: jobId, poolInfo: { poolId: uid("pool") } });
  const ids = Array.from({ length: 2500 }, (_, i) => `p${String(i).padStart(4, "0")}`);
  const chunks = Array.from({ length: 25 }, (_, c) => ids.slice(c * 100, c * 100 + 100));
  for (let i = 0; i < chunks.length; i += 5) {
    const results = await Promise.all(chunks.slice(i, i + 5).map((c) => client.task.addCollection(jobId, c.map(taskSpec))));
    for (const r of results) {
      const bad = r.value.filter((x) => x.status !== "success");
      assert.deepEqual(bad, [], "every task of the chunk is added");
    }
  }

  // Explicit maxResults 1000: 1000 + 1000 + 500, absolute nextLinks that listNext follows verbatim.
  const first = await client.task.list(jobId, { taskListOptions: { maxResults: 1000 } });
  const [items, sizes, links] = await drain(first, (l) => client.task.listNext(l));
  assert.deepEqual(sizes, [1000, 1000, 500]);
  assert.equal(items.length, 2500);
  assert.deepEqual(items.map((t) => t.id).sort(), ids);
  const base = new URL(server.batchUrl);
  for (const l of links) {
    const u = new URL(l); // throws on a relative link
    assert.equal(u.origin, base.origin, `nextLink ${l}`);
    assert.equal(u.pathname, `/jobs/${jobId}/tasks`, `nextLink ${l}`);
    assert.ok(u.searchParams.get("api-version"), `nextLink must carry api-version: ${l}`);
  }

  // No maxResults: the service default page is 1000.
  const dflt = await client.task.list(jobId);
  assert.equal(dflt.length, 1000);
  assert.ok(dflt.odatanextLink, "a first page of 1000 out of 2500 has a nextLink");

  // Small pages: maxResults survives listNext.
  const small = await client.task.list(jobId, { taskListOptions: { maxResults: 400 } });
  const [smallItems, smallSizes] = await drain(small, (l) => client.task.listNext(l));
  assert.deepEqual(smallSizes, [400, 400, 400, 400, 400, 400, 100]);
  assert.equal(new Set(smallItems.map((t) => t.id)).size, 2500);

  // Complete a few tasks, then filter on state; $filter and $select must hold on every page.
  const completed = ["p0007", "p1500", "p2499"];
  for (const t of completed) await client.task.terminate(jobId, t);

  const active = await client.task.list(jobId, {
    taskListOptions: { filter: "state eq 'active'", select: "id,state", maxResults: 1000 },
  });
  const [activeItems, activeSizes] = await drain(active, (l) => client.task.listNext(l));
  assert.deepEqual(activeSizes, [1000, 1000, 497]);
  assert.equal(activeItems.length, 2497);
  assert.deepEqual(
    activeItems.map((t) => t.id).sort(),
    ids.filter((i) => !completed.includes(i)),
  );
  for (const t of activeItems) {
    assert.equal(t.state, "active", JSON.stringify(t));
    assert.deepEqual(
      Object.keys(t).filter((k) => t[k] !== undefined).sort(),
      ["id", "state"],
      `$select=id,state returned ${JSON.stringify(t)}`,
    );
  }

  const done = await client.task.list(jobId, {
    taskListOptions: { filter: "state eq 'completed'", select: "id,state,commandLine", maxResults: 2 },
  });
  const [doneItems, doneSizes] = await drain(done, (l) => client.task.listNext(l));
  assert.deepEqual(doneSizes, [2, 1]);
  assert.deepEqual(doneItems.map((t) => t.id).sort(), completed);
  for (const t of doneItems) {
    assert.equal(t.state, "completed");
    assert.equal(t.commandLine, taskSpec(t.id).commandLine);
    assert.equal(t.eTag, undefined, "$select must leave eTag out");
  }

  const counts = await client.job.getTaskCounts(jobId);
  assert.equal(counts.taskCounts.active, 2497);
  assert.equal(counts.taskCounts.completed, 3);
  assert.equal(counts.taskCounts.running, 0);
  await client.job.deleteMethod(jobId);
});
