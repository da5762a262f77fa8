//! End-to-end tests of hot reload and the plugin supply chain, against the
//! real binary with real guests under continuous, bounded load: a v1 → v2
//! swap with exact counts, refused deploys while the old version serves,
//! signatures, rollback of a trapping version (kept across restarts), remote
//! rollout and what refuses to let it be steered, and the data directory at
//! rest (authenticated compile cache, owner-only permissions).

mod at_rest;
mod config;
mod files;
mod hub;
mod ledger;
mod manifest;
mod rollout;
mod support;
mod swap;
mod workers;

/// The pipeline tests' helpers, shared rather than copied.
#[allow(dead_code)]
#[path = "../pipeline/support.rs"]
mod pipeline_support;

/// The operator tests' helpers (free ports, client, receiver).
#[allow(dead_code)]
#[path = "../operate/support.rs"]
mod operate_support;
