#!/usr/bin/env node
// Rewrites an AsyncAPI 3.0 document as onex-gen emits it (asyncapi.yaml in
// every generated crate) into the AsyncAPI 2.6 form that
// @asyncapi/nodejs-template reads:
//
//   - servers: `host` + `protocol` become `url` + `protocol`;
//   - channels: keyed by their address (the Kafka topic), as 2.x keys them;
//   - operations: a `receive` operation becomes the channel's `publish`
//     operation (2.x describes what others do: they publish, the application
//     receives) and a `send` operation its `subscribe` operation; the
//     operation's key becomes its operationId; several messages become oneOf;
//   - components (messages, schemas, message traits) are kept as they are;
//     message `$ref`s into a channel's messages point at the component.
//
// Usage: node to-v2.js IN.yaml OUT.yaml
'use strict';
const fs = require('fs');
const yaml = require('js-yaml');

function resolveMessage(doc, ref) {
  // "#/channels/<key>/messages/<name>" or "#/components/messages/<name>"
  const parts = ref.replace(/^#\//, '').split('/');
  let node = doc;
  for (const p of parts) node = node[p];
  if (node && node.$ref) return { $ref: node.$ref };
  return { $ref: ref };
}

function convert(doc) {
  if (!String(doc.asyncapi || '').startsWith('3.')) {
    throw new Error(`expected an AsyncAPI 3.x document, got ${doc.asyncapi}`);
  }
  const out = { asyncapi: '2.6.0', info: doc.info };
  if (doc.defaultContentType) out.defaultContentType = doc.defaultContentType;
  out.servers = {};
  for (const [name, s] of Object.entries(doc.servers || {})) {
    out.servers[name] = { url: s.host, protocol: s.protocol };
    if (s.description) out.servers[name].description = s.description;
  }
  out.channels = {};
  const byKey = {};
  for (const [key, ch] of Object.entries(doc.channels || {})) {
    const c = {};
    if (ch.description) c.description = ch.description;
    out.channels[ch.address] = c;
    byKey[key] = c;
  }
  for (const [opId, op] of Object.entries(doc.operations || {})) {
    const key = op.channel.$ref.replace('#/channels/', '');
    const channel = byKey[key];
    if (!channel) throw new Error(`operation ${opId}: unknown channel ${key}`);
    const messages = (op.messages || []).map((m) => resolveMessage(doc, m.$ref));
    const v2 = { operationId: opId };
    if (op.summary) v2.summary = op.summary;
    v2.message = messages.length === 1 ? messages[0] : { oneOf: messages };
    channel[op.action === 'receive' ? 'publish' : 'subscribe'] = v2;
  }
  out.components = doc.components;
  return out;
}

if (require.main === module) {
  const [input, output] = process.argv.slice(2);
  if (!input || !output) {
    console.error('usage: node to-v2.js IN.yaml OUT.yaml');
    process.exit(2);
  }
  const doc = yaml.load(fs.readFileSync(input, 'utf8'));
  fs.writeFileSync(output, yaml.dump(convert(doc), { noRefs: true, lineWidth: -1 }));
}

module.exports = { convert };
