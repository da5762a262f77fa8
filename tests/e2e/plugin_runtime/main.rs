//! End-to-end tests of the plugin runtime with real compiled guests:
//! every example guest's exact behaviour on fixed input, every hostile guest
//! contained, and the compile cache.

mod cache;
mod contain;
mod examples;
mod hostile;
mod support;
