// Records a hash of the extension's source beside the build, so a test can tell a
// shipped build that no longer matches its source (tests/test_jobs_panel.py computes
// the same hash in Python: sha256 over each file's relative path, a NUL, its bytes, a NUL).
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const here = path.resolve(__dirname, '..');
const out = path.resolve(here, require('../package.json').jupyterlab.outputDir);
const files = ['package.json', 'src', 'style']
  .flatMap(p => (fs.statSync(path.join(here, p)).isDirectory()
    ? fs.readdirSync(path.join(here, p)).sort().map(f => `${p}/${f}`)
    : [p]));
const hash = crypto.createHash('sha256');
for (const f of files) {
  hash.update(f);
  hash.update('\0');
  hash.update(fs.readFileSync(path.join(here, f)));
  hash.update('\0');
}
fs.writeFileSync(path.join(out, 'source-hash.json'), JSON.stringify({ files, sha256: hash.digest('hex') }, null, 1) + '\n');
console.log(`source hash of ${files.length} files written to ${out}/source-hash.json`);
