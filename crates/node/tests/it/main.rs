//! Integration tests of the node: mempool, chain (produce, commit, reopen), JSON-RPC.

mod bridge;
mod chain;
mod follower;
mod mempool;
mod pages;
mod rpc;
mod settlement;
