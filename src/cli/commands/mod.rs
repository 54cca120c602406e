//! One module per subcommand: each turns its arguments into library calls and prints the result.

pub mod extract;
pub mod steer;
pub mod stimuli;
pub mod store;
