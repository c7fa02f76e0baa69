#!/usr/bin/env node
// AsyncAPI Generator over many documents in one Node.js process (the
// counterpart of one `onex-gen new` call over many contracts): each document
// DIR/NAME.yaml is generated with @asyncapi/nodejs-template into OUT/NAME/.
//
// Usage: node batch.js DOCS_DIR OUT_DIR
'use strict';
const fs = require('fs');
const path = require('path');
const Generator = require('@asyncapi/generator');

async function main() {
  const [docs, out] = process.argv.slice(2);
  if (!docs || !out) {
    console.error('usage: node batch.js DOCS_DIR OUT_DIR');
    process.exit(2);
  }
  const template = path.dirname(require.resolve('@asyncapi/nodejs-template/package.json'));
  const files = fs.readdirSync(docs).filter((f) => f.endsWith('.yaml')).sort();
  for (const f of files) {
    const generator = new Generator(template, path.join(out, path.basename(f, '.yaml')), {
      templateParams: { server: 'local' },
      forceWrite: true,
    });
    await generator.generateFromFile(path.join(docs, f));
  }
  console.error(`generated ${files.length} services`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
