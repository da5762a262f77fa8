// {{name}}: a Halyard sampler in JavaScript. Keeps events whose kind is
// listed in `kinds` (unset keeps every kind).
import { config, initError } from './halyard.js';

let kinds = null;

export function info() {
  return { name: '{{name}}', version: '0.1.0' };
}

export function init() {
  kinds = config.list('kinds');
  if (config.get('kinds') !== undefined && kinds.length === 0) {
    throw initError('kinds', 'kinds is set but lists no kind');
  }
}

export function sample(events) {
  if (kinds === null) init();
  return events.map((e) => kinds.length === 0 || kinds.includes(e.kind));
}
