// Turns the JSON lines of bench/run-fhirpath.sh into a Markdown table: evaluations per second of
// each engine, mode and class, and taproot's ratio to fhirpath.js.
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map(l => JSON.parse(l));
const rate = (engine, mode, cls) => {
  const r = rows.find(x => x.engine === engine && x.mode === mode && x.class === cls);
  return r ? r.evaluations_per_second : null;
};
const fmt = n => n === null ? 'n/a' : Math.round(n).toLocaleString('en-GB');
console.log('| mode | class | taproot (evaluations/s) | fhirpath.js | ratio |');
console.log('|---|---|---|---|---|');
for (const r of rows.filter(x => x.engine === 'taproot')) {
  const js = rate('fhirpath.js', r.mode, r.class);
  const ratio = js ? (r.evaluations_per_second / js).toFixed(1) + 'x' : 'n/a';
  console.log(`| ${r.mode} | ${r.class} | ${fmt(r.evaluations_per_second)} | ${fmt(js)} | ${ratio} |`);
}
