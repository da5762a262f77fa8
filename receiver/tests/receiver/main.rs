//! End-to-end tests of the receiver: a real server on 127.0.0.1:0, a real
//! SQLite file in a tempdir, exact counts.

mod auth;
mod batches;
mod common;
mod concurrency;
mod encoding;
mod malformed;
mod restart;
mod store_failure;
