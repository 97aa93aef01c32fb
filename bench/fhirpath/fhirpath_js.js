// Evaluations per second of fhirpath.js (compiled expressions) over the Synthea bundles, for
// bench/run-fhirpath.sh. Prints one JSON line per expression.
const fs = require('fs');
const path = require('path');
const fhirpath = require('fhirpath');
const r4 = require('fhirpath/fhir-context/r4');

const dir = process.argv[2];
const expressions = JSON.parse(fs.readFileSync(path.join(__dirname, 'expressions.json'), 'utf8'));
const bundles = fs.readdirSync(dir).filter(f => f.endsWith('.json'))
  .map(f => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')));
const seconds = Number(process.argv[3] || 3);
for (const e of expressions) {
  const compiled = fhirpath.compile(e.expression, r4);
  let evaluations = 0, results = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds) {
    for (const b of bundles) results += compiled(b).length;
    evaluations += bundles.length;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  console.log(JSON.stringify({engine: 'fhirpath.js', class: e.class, evaluations_per_second: evaluations / elapsed,
                              results_per_evaluation: results / evaluations}));
}
