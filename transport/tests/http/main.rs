//! HttpSink and Delivery against a real HTTP server on 127.0.0.1.

mod delivery;
mod server;
mod sink;

use std::io::Read as _;
use std::time::Duration;

use halyard_transport::{HttpConfig, HttpSink, Secret};

pub const KEY: &str = "test-key-0123456789";

/// A config for `url` with an API key and gzip on.
pub fn config(url: &str) -> HttpConfig {
    let mut config = HttpConfig::new(url);
    config.api_key = Some(Secret::new(KEY));
    config.timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_secs(2);
    config
}

pub fn sink(config: &HttpConfig) -> HttpSink {
    HttpSink::new(config).expect("valid config")
}

pub fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("body is gzip");
    out
}
