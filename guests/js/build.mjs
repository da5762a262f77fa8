// Builds a Halyard plugin written in JavaScript into a WebAssembly component
// with componentize-js's API (the same engine `jco componentize` drives).
//
//   node build.mjs SOURCE.js WORLD OUT.wasm [WIT]
//
// WORLD is the plugin kind (validator, privacy, sampler, decoder, source);
// WIT defaults to the 0.1.0 contract beside this file's repo (wit/plugin.wit).
// NODE_PATH (or a node_modules above this file) must hold
// @bytecodealliance/componentize-js.
import { writeFile } from 'node:fs/promises';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { join, delimiter } from 'node:path';
import { pathToFileURL } from 'node:url';

const [source, world, out, wit] = process.argv.slice(2);
if (!source || !world || !out) {
  console.error('usage: node build.mjs SOURCE.js WORLD OUT.wasm [WIT]');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
// Find componentize-js on NODE_PATH or in a node_modules above the working
// directory (ES module imports alone ignore NODE_PATH).
function findComponentizeJs() {
  const dirs = (process.env.NODE_PATH ?? '').split(delimiter).filter(Boolean);
  for (let d = process.cwd(); ; d = dirname(d)) {
    dirs.push(join(d, 'node_modules'));
    if (dirname(d) === d) break;
  }
  for (const d of dirs) {
    const entry = join(d, '@bytecodealliance/componentize-js/src/componentize.js');
    if (existsSync(entry)) return pathToFileURL(entry).href;
  }
  console.error('cannot find @bytecodealliance/componentize-js: npm install it, or set NODE_PATH');
  process.exit(2);
}
const { componentize } = await import(findComponentizeJs());
const started = Date.now();
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(wit ?? resolve(here, '../../wit/plugin.wit')),
  worldName: world,
  // The host's log and clock imports replace WASI's; keep stdio so that
  // console.log and uncaught errors reach the host log.
  disableFeatures: ['random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);
console.error(`${out}: ${component.length} bytes in ${Date.now() - started} ms`);
