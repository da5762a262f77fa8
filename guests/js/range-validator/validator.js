// range-validator in JavaScript: the same checks and reject reasons as the
// Rust `guests/range-validator` for the keys it supports:
//   min, max            bounds for every kind (unset: unbounded)
//   min.KIND, max.KIND  bounds for one kind (override the defaults)
//   require_value       reject events without a value (default true)
import { config, initError, ACCEPT, reject } from '../halyard.js';

let bounds = null;

export function info() {
  return { name: 'js-range-validator', version: '0.1.0' };
}

export function init() {
  const dflt = { min: config.number('min', undefined), max: config.number('max', undefined) };
  const perKind = new Map();
  for (const [kind] of config.withPrefix('min.')) {
    const b = perKind.get(kind) ?? { ...dflt };
    b.min = config.number(`min.${kind}`, undefined);
    perKind.set(kind, b);
  }
  for (const [kind] of config.withPrefix('max.')) {
    const b = perKind.get(kind) ?? { ...dflt };
    b.max = config.number(`max.${kind}`, undefined);
    perKind.set(kind, b);
  }
  const order = (b, key, kind) => {
    if (b.min !== undefined && b.max !== undefined && b.min > b.max) {
      const what = kind === '' ? '' : ` for ${kind}`;
      throw initError(key, `minimum ${b.min} is above the maximum ${b.max}${what}`);
    }
  };
  order(dflt, 'min', '');
  for (const [kind, b] of perKind) order(b, `min.${kind}`, kind);
  bounds = { dflt, perKind, requireValue: config.bool('require_value', true) };
}

function check(event) {
  if (event.source === '') return reject('missing source');
  if (event.kind === '') return reject('missing kind');
  const v = event.value;
  if (v === undefined) {
    return bounds.requireValue ? reject('missing value') : ACCEPT;
  }
  if (!Number.isFinite(v)) return reject('value is not finite');
  const b = bounds.perKind.get(event.kind) ?? bounds.dflt;
  if (b.min !== undefined && v < b.min) {
    return reject(`value ${v} is below the minimum ${b.min} for ${event.kind}`);
  }
  if (b.max !== undefined && v > b.max) {
    return reject(`value ${v} is above the maximum ${b.max} for ${event.kind}`);
  }
  return ACCEPT;
}

export function validate(events) {
  if (bounds === null) init();
  return events.map(check);
}
