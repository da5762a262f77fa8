// {{name}}: a Halyard privacy policy in JavaScript. Removes the attributes
// listed in `drop_keys` (default `user`) and drops events whose source is
// listed in `block_sources`.
import { config, KEEP, DROP, rewrite } from './halyard.js';

let policy = null;

export function info() {
  return { name: '{{name}}', version: '0.1.0' };
}

export function init() {
  policy = {
    drop: config.get('drop_keys') === undefined ? ['user'] : config.list('drop_keys'),
    block: config.list('block_sources'),
  };
}

export function redact(events) {
  if (policy === null) init();
  return events.map((e) => {
    if (policy.block.includes(e.source)) return DROP;
    const kept = e.attributes.filter((a) => !policy.drop.includes(a.key));
    if (kept.length === e.attributes.length) return KEEP;
    return rewrite({ ...e, attributes: kept });
  });
}
