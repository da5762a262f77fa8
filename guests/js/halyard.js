// halyard.js: small helpers for Halyard plugins written in JavaScript.
//
// Targets the `halyard:plugin@0.1.0` contract (wit/plugin.wit), whose
// events are plain records: componentize-js (through `jco componentize`)
// maps them to plain JS objects. Import this module from your plugin;
// `jco componentize` bundles it (it follows relative ES module imports).
//
// What the contract looks like from JS:
//   event     {id: {hi, lo}, timeNs, source, kind, value?, unit?, attributes, body?}
//             (`id.hi`, `id.lo` and `timeNs` are BigInt; absent options are undefined)
//   attribute {key, value: {tag: 'str'|'int'|'float'|'boolean', val}}
//   verdict   {tag: 'accept'} | {tag: 'reject', val: reason}
//   action    {tag: 'keep'} | {tag: 'drop'} | {tag: 'rewrite', val: event}
//   init      throw {key, message} (an `init-error`) to refuse the config.

import { get, entries } from 'halyard:plugin/config@0.1.0';
import { write } from 'halyard:plugin/log@0.1.0';
import { nowNs, monotonicNs } from 'halyard:plugin/clock@0.1.0';

/** An `init-error` to throw from `init`: the host refuses the plugin with it. */
export function initError(key, message) {
  return { key, message };
}

/** The plugin's config, read from the host, with typed getters. */
export const config = {
  /** The raw value of `key`, or undefined. */
  get(key) {
    return get(key);
  },
  /** Every [key, value] pair, sorted by key. */
  entries() {
    return entries();
  },
  /** `key` parsed as a finite number; `fallback` when unset or blank. Throws an init-error naming the key otherwise. */
  number(key, fallback) {
    const raw = get(key);
    if (raw === undefined || raw.trim() === '') return fallback;
    const n = Number(raw.trim());
    if (!Number.isFinite(n)) {
      throw initError(key, `${key} = \`${raw}\` is not a finite number`);
    }
    return n;
  },
  /** `key` as a boolean (true/false, yes/no, on/off, 1/0, any case). */
  bool(key, fallback) {
    const raw = get(key);
    if (raw === undefined || raw.trim() === '') return fallback;
    const v = raw.trim().toLowerCase();
    if (['true', 'yes', 'on', '1'].includes(v)) return true;
    if (['false', 'no', 'off', '0'].includes(v)) return false;
    throw initError(key, `${key} = \`${raw}\` is not a boolean (true/false, yes/no, on/off, 1/0)`);
  },
  /** `key` split on commas, items trimmed, empty items dropped. */
  list(key) {
    const raw = get(key);
    if (raw === undefined) return [];
    return raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  },
  /** [suffix, value] for every key starting with `prefix`. */
  withPrefix(prefix) {
    return entries()
      .filter(([k]) => k.startsWith(prefix))
      .map(([k, v]) => [k.slice(prefix.length), v]);
  },
};

/** Writes to the host log (rate-limited there). `fields`: an object of strings. */
export const log = {
  write(level, message, fields = {}) {
    write(level, message, Object.entries(fields).map(([k, v]) => [k, String(v)]));
  },
  debug(message, fields) { log.write('debug', message, fields); },
  info(message, fields) { log.write('info', message, fields); },
  warn(message, fields) { log.write('warn', message, fields); },
  error(message, fields) { log.write('error', message, fields); },
};

/** Host clocks: wall time and monotonic time, in ns (BigInt). */
export const clock = { nowNs, monotonicNs };

/** Verdicts. */
export const ACCEPT = { tag: 'accept' };
export function reject(reason) {
  return { tag: 'reject', val: String(reason) };
}

/** Privacy actions. */
export const KEEP = { tag: 'keep' };
export const DROP = { tag: 'drop' };
export function rewrite(event) {
  return { tag: 'rewrite', val: event };
}

/** The value of attribute `key` as a plain JS value, or undefined. */
export function attr(event, key) {
  const a = event.attributes.find((x) => x.key === key);
  return a === undefined ? undefined : a.value.val;
}

/** Formats a number as Rust's `Display` for f64 does (`5` not `5.0`, `-3.5`). */
export function fmtNumber(n) {
  return String(n);
}
