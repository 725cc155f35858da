// Builds the prebuilt extension into ../qnb/labextension with @jupyterlab/builder,
// against the installed JupyterLab's core packages (its "staging" folder), the way
// `jupyter labextension build` does; run by `jlpm build`.
const { execFileSync } = require('child_process');
const path = require('path');

const python = process.env.PYTHON || 'python';
const core = execFileSync(python, ['-c',
  'import jupyterlab, os; print(os.path.join(os.path.dirname(jupyterlab.__file__), "staging"))'])
  .toString().trim();
const builder = require.resolve('@jupyterlab/builder/lib/build-labextension.js');
const args = [builder, '--core-path', core];
if (process.argv.includes('--development')) args.push('--development');
args.push(path.resolve(__dirname, '..'));
execFileSync(process.execPath, args, { stdio: 'inherit' });
require('fs').copyFileSync(path.join(__dirname, '..', 'install.json'),
  path.resolve(__dirname, '..', require('../package.json').jupyterlab.outputDir, 'install.json'));
