//! Integration tests of the execution engine: the parallel executor against the sequential
//! oracle over random blocks, and targeted scenarios (hot keys, chains, panics).

mod oracle;
mod program;
mod scenarios;
