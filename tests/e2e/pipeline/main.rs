//! End-to-end tests of `halyard run`: the real binary, real guests, a real
//! SQLite buffer, and a real peer (a file transport or the receiver on
//! 127.0.0.1), with exact counts.

mod buffer_cap;
mod file_transport;
mod flaky_hub;
mod http_auth;
mod http_hostile;
mod http_input;
mod http_support;
mod in_flight;
mod receiver;
mod retry;
mod support;
