//! Integration tests.

mod mempool;
