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
// The same two modes as bench/fhirpath_bench.cc: sweep (next bundle each time) or warm (each
// bundle 20 times in a row).
const mode = process.argv[4] || 'sweep';
const repeat = mode === 'warm' ? 20 : 1;
for (const e of expressions) {
  // fhirpath.js resolves references only asynchronously, by fetching them: no comparison there.
  if (e.engines && !e.engines.includes('fhirpath.js')) continue;
  const compiled = fhirpath.compile(e.expression, r4);
  let evaluations = 0, results = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < seconds) {
    for (const b of bundles) {
      for (let rep = 0; rep < repeat; ++rep) results += compiled(b).length;
    }
    evaluations += bundles.length * repeat;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  console.log(JSON.stringify({engine: 'fhirpath.js', mode, class: e.class, evaluations_per_second: evaluations / elapsed,
                              results_per_evaluation: results / evaluations}));
}
