//! Integration tests of the node: mempool, chain (produce, commit, reopen), JSON-RPC.

mod chain;
mod follower;
mod mempool;
mod pages;
mod rpc;
mod settlement;
