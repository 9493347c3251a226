// The official Node.js SDK driven by the Python tests (tests/node_client.py): one JSON request per line on
// stdin, one JSON answer per line on stdout, in order.
//   {"config": {...Config's fields}, "action": "addImage", "request": {...the request model's fields}}
//   -> {"body": the response model's toMap()} or {"error": {"code", "message", "statusCode"}}
//   {"types": "DetailResponseBody"} -> {"types": {Field: type, nested models' types in place}}
"use strict";

const readline = require("readline");
const models = require("@alicloud/imagesearch20201214");
const Client = models.default;
const { $OpenApiUtil } = require("@alicloud/openapi-core");

const clients = new Map(); // by config, so that each config's client is made once

function clientFor(config) {
  const key = JSON.stringify(config);
  if (!clients.has(key)) {
    clients.set(key, new Client(new $OpenApiUtil.Config(config)));
  }
  return clients.get(key);
}

// A model's declared types by wire name: "string", "number", "boolean", {nested}, or [element].
function declared(model) {
  const names = model.names();
  const types = model.types();
  const out = {};
  for (const [field, type] of Object.entries(types)) {
    out[names[field]] = typeOf(type);
  }
  return out;
}

function typeOf(type) {
  if (typeof type === "function") {
    return declared(type);
  }
  if (type && type.type === "array") {
    return [typeOf(type.itemType)];
  }
  if (type && type.type === "map") {
    return { "*": typeOf(type.valueType) };
  }
  return type;
}

async function answer(line) {
  const order = JSON.parse(line);
  if (order.types) {
    return { types: declared(models[order.types]) };
  }
  const Request = models[order.action[0].toUpperCase() + order.action.slice(1) + "Request"];
  try {
    const response = await clientFor(order.config)[order.action](new Request(order.request));
    return { body: response.body.toMap(), statusCode: response.statusCode };
  } catch (error) {
    return { error: { code: error.code || error.name, message: error.message, statusCode: error.statusCode } };
  }
}

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => process.stdout.write(JSON.stringify(await answer(line)) + "\n"));
});
