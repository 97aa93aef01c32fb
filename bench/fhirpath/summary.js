// Turns the JSON lines of bench/run-fhirpath.sh into a Markdown table: evaluations per second of
// each engine, mode and class (the median over rounds), and taproot's ratio to fhirpath.js (the
// median of the ratios within each round, with their range).
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map(l => JSON.parse(l));
const median = xs => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const rates = (engine, mode, cls) =>
  rows.filter(x => x.engine === engine && x.mode === mode && x.class === cls);
const fmt = n => n === null ? 'n/a' : Math.round(n).toLocaleString('en-GB');
console.log('| mode | class | taproot (evaluations/s) | fhirpath.js | ratio | range |');
console.log('|---|---|---|---|---|---|');
const seen = new Set();
for (const r of rows.filter(x => x.engine === 'taproot')) {
  const key = r.mode + '|' + r.class;
  if (seen.has(key)) continue;
  seen.add(key);
  const ours = rates('taproot', r.mode, r.class);
  const theirs = rates('fhirpath.js', r.mode, r.class);
  const ratios = ours.flatMap(o => {
    const t = theirs.find(x => x.round === o.round);
    return t ? [o.evaluations_per_second / t.evaluations_per_second] : [];
  });
  const js = theirs.length ? median(theirs.map(x => x.evaluations_per_second)) : null;
  const ratio = ratios.length ? median(ratios).toFixed(1) + 'x' : 'n/a';
  const range = ratios.length ?
      Math.min(...ratios).toFixed(1) + '-' + Math.max(...ratios).toFixed(1) + 'x' : 'n/a';
  console.log(`| ${r.mode} | ${r.class} | ${fmt(median(ours.map(x => x.evaluations_per_second)))}` +
              ` | ${fmt(js)} | ${ratio} | ${range} |`);
}
