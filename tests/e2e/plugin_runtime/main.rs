//! End-to-end tests of the plugin runtime with real compiled guests:
//! every example guest's exact behaviour on fixed input, every hostile guest
//! contained, guest output over a cap refused per frame or event (never a
//! trap), the compile cache, the choice of call mechanism, and the benchmark's
//! synchronous baseline.

mod baseline;
mod cache;
mod call_mode;
mod contain;
mod contract;
mod examples;
mod hostile;
mod refusals;
mod support;
