// An independent ACP client (the TypeScript SDK, @agentclientprotocol/sdk) driving an agent.
//
// Usage: node acp_scenario.mjs CONFIG.json
// CONFIG: {"command": [...argv of the agent], "cwd": DIR, "env": {...}, "draft": PATH,
//          "unsaved": TEXT}
// Runs the scenario of issue 16's "Done when" on one connection and prints one JSON
// object with what it saw; the Python test (tests/test_acp_ts.py) checks it.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { Readable, Writable } from "node:stream";

import { client, methods, ndJsonStream } from "@agentclientprotocol/sdk";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const child = spawn(config.command[0], config.command.slice(1), {
  cwd: config.cwd,
  env: config.env,
  stdio: ["pipe", "pipe", "inherit"],
});
const stream = ndJsonStream(Writable.toWeb(child.stdin), Readable.toWeb(child.stdout));

const seen = {
  updates: [],
  permissions: [],
  reads: [],
  buffers: {},
  stops: [],
};
let answers = [];
let waiter = null;
const buffers = new Map([[config.draft, config.unsaved]]);

function onUpdate(update) {
  seen.updates.push(update);
  if (waiter && waiter.test(update)) {
    const resolve = waiter.resolve;
    waiter = null;
    resolve();
  }
}

function waitFor(test) {
  return new Promise((resolve) => {
    waiter = { test, resolve };
  });
}

const app = client({ name: "hermes-acp-test" })
  .onNotification(methods.client.session.update, ({ params }) => onUpdate(params))
  .onRequest(methods.client.session.requestPermission, ({ params }) => {
    seen.permissions.push({
      title: params.toolCall.title,
      kinds: params.options.map((o) => o.kind),
      diff: (params.toolCall.content || []).some((c) => c.type === "diff"),
    });
    const answer = answers.shift();
    const option = params.options.find((o) => o.kind === answer);
    return option
      ? { outcome: { outcome: "selected", optionId: option.optionId } }
      : { outcome: { outcome: "cancelled" } };
  })
  .onRequest(methods.client.fs.readTextFile, ({ params }) => {
    seen.reads.push(params.path);
    if (buffers.has(params.path)) return { content: buffers.get(params.path) };
    return { content: readFileSync(params.path, "utf8") };
  })
  .onRequest(methods.client.fs.writeTextFile, ({ params }) => {
    buffers.set(params.path, params.content);
    seen.buffers[params.path] = params.content;
    return {};
  });

const text = (sessionId) =>
  seen.updates
    .filter((u) => u.sessionId === sessionId && u.update.sessionUpdate === "agent_message_chunk")
    .map((u) => u.update.content.text)
    .join("");

const result = await app.connectWith(stream, async (ctx) => {
  const out = {};
  const init = await ctx.request(methods.agent.initialize, {
    protocolVersion: 1,
    clientCapabilities: { fs: { readTextFile: true, writeTextFile: true } },
    clientInfo: { name: "ts-test", version: "1" },
  });
  out.protocolVersion = init.protocolVersion;
  out.capabilities = init.agentCapabilities;
  out.authMethods = init.authMethods.map((m) => m.id);
  const { sessionId } = await ctx.request(methods.agent.session.new, {
    cwd: config.cwd,
    mcpServers: [],
  });
  out.sessionId = sessionId;
  const prompt = (words, options) =>
    ctx.request(
      methods.agent.session.prompt,
      { sessionId, prompt: [{ type: "text", text: words }] },
      options,
    );

  answers = ["allow_once"];
  seen.stops.push((await prompt("write notes")).stopReason);
  out.afterApproved = text(sessionId);

  answers = ["reject_once"];
  seen.stops.push((await prompt("change it")).stopReason);

  seen.stops.push((await prompt("read the draft")).stopReason);

  // Cancel by $/cancel_request (an aborted request) while the tool runs.
  const abort = new AbortController();
  const running = prompt("run the long thing", { cancellationSignal: abort.signal });
  await waitFor(
    (u) =>
      u.update.sessionUpdate === "tool_call_update" && JSON.stringify(u.update).includes("started"),
  );
  const began = Date.now();
  abort.abort();
  seen.stops.push((await running).stopReason);
  out.cancelMs = Date.now() - began;

  await ctx.notify(methods.agent.session.cancel, { sessionId }); // Idle: a no-op.
  seen.stops.push((await prompt("still there?")).stopReason);
  out.text = text(sessionId);

  const listed = await ctx.request(methods.agent.session.list, { cwd: config.cwd });
  out.listed = listed.sessions.map((s) => ({ id: s.sessionId, title: s.title, cwd: s.cwd }));
  await ctx.request(methods.agent.session.close, { sessionId });

  const before = seen.updates.length;
  await ctx.request(methods.agent.session.load, {
    sessionId,
    cwd: config.cwd,
    mcpServers: [],
  });
  out.replay = seen.updates.slice(before).map((u) => u.update.sessionUpdate);
  out.replayUser = seen.updates
    .slice(before)
    .filter((u) => u.update.sessionUpdate === "user_message_chunk")
    .map((u) => u.update.content.text);

  await ctx.request(methods.agent.session.delete, { sessionId });
  const after = await ctx.request(methods.agent.session.list, {});
  out.afterDelete = after.sessions.map((s) => s.sessionId);
  out.kinds = [...new Set(seen.updates.map((u) => u.update.sessionUpdate))];
  out.toolKinds = seen.updates
    .filter((u) => u.update.sessionUpdate === "tool_call")
    .map((u) => u.update.kind);
  out.failed = seen.updates
    .filter((u) => u.update.sessionUpdate === "tool_call_update" && u.update.status === "failed")
    .map((u) => JSON.stringify(u.update.content));
  return out;
});

child.stdin.end();
process.stdout.write(JSON.stringify({ ...result, ...seen, updates: undefined }) + "\n");
child.kill();
process.exit(0);
