//! One module per subcommand; each owns its `Args` and an async `run`.

pub mod catalog;
pub mod crds;
pub mod plan;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod simulate;
