//! Parabit's parallel execution engine (work in progress: API first).

mod executor;
mod sequential;
mod types;

pub use executor::{ExecStats, ParallelExecutor};
pub use sequential::execute_sequential;
pub use types::*;
