//! Breaker and delivery loop under paused tokio time: exact, instant, and
//! independent of machine load.

mod breaker;
mod delivery;
