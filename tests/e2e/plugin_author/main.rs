//! Issue 16, as a plugin author meets it: `halyard plugin new` projects that
//! build outside the repository, `halyard plugin test` expectation files
//! (the example guests' own), `halyard plugin check` listing every import
//! and export with its verdict and measuring cost, and call deadlines that
//! grow with the batch so a slow guest keeps its batches.

mod cases;
mod check;
mod deadline;
mod new_project;
mod support;
