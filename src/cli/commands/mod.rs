//! One module per subcommand: each turns its arguments into library calls and prints the result.

pub mod analyze;
pub mod ask;
pub mod demo;
pub mod extract;
pub mod report;
pub mod scan;
pub mod steer;
pub mod stimuli;
pub mod store;
