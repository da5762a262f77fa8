//! Tests of the durable buffer against real SQLite files in temporary
//! directories. One test binary (modules below) keeps link time down.

mod chunks;
mod commit;
mod common;
mod consumers;
mod damage;
mod dead_letters;
mod delivery;
mod durability;
mod full_policy;
mod kv;
mod model;
mod pages;
mod staging;
mod usage;
