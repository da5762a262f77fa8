// {{name}}: a Halyard validator in JavaScript. Rejects events without a
// value and readings above `max` (config, default 100).
import { config, ACCEPT, reject } from './halyard.js';

let max = null;

export function info() {
  return { name: '{{name}}', version: '0.1.0' };
}

// Throwing {key, message} (initError) refuses the config.
export function init() {
  max = config.number('max', 100);
}

export function validate(events) {
  if (max === null) init();
  return events.map((e) => {
    if (e.value === undefined) return reject('missing value');
    if (e.value > max) return reject(`value ${e.value} is above the maximum ${max}`);
    return ACCEPT;
  });
}
