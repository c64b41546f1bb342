//! The chain: blocks are executed, committed and survive a reopen; the node's mempool follows.

use std::sync::Arc;

use parabit_modules::{BankMsg, Call, SignedTx, Tx};
use parabit_node::chain::{Chain, ChainConfig};
use parabit_node::devnet::{devnet_genesis, DevnetGenesis, BTC};
use parabit_node::node::{Node, NodeConfig};
use parabit_primitives::{AssetId, SigningKey, TxStatus};
use parabit_storage::fresh_state_root;

pub fn open(dir: &std::path::Path, threads: usize) -> (Arc<Node>, DevnetGenesis) {
    let g = devnet_genesis(1_700_000_000_000);
    let chain = Chain::open(
        &dir.join("parabit.redb"),
        g.spec.clone(),
        &ChainConfig {
            threads,
            keep_versions: Some(100),
        },
    )
    .expect("open chain");
    let config = NodeConfig::new(chain.chain_id());
    (Node::new(chain, config), g)
}

pub fn transfer(
    from: &SigningKey,
    nonce: u64,
    to: parabit_primitives::Address,
    amount: u128,
    chain_id: u64,
) -> SignedTx {
    let tx = Tx {
        chain_id,
        sender: from.address(),
        nonce,
        fee: 10,
        call: Call::Bank(BankMsg::Transfer {
            to,
            asset: AssetId::BTC,
            amount,
        }),
    };
    from.sign(tx)
}

fn balance(node: &Node, who: &parabit_primitives::Address) -> u128 {
    node.chain()
        .with_state(|s| parabit_modules::balance_of(s, who, AssetId::BTC))
}

#[test]
fn blocks_commit_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 2);
    let chain_id = node.chain().chain_id();
    let alice = &g.accounts[0].key;
    let bob = g.accounts[1].key.address();
    let genesis_root = node.chain().head().state_root;
    assert_eq!(node.chain().head().height, 0);

    // 40 transfers from alice, submitted out of order: the mempool holds the gaps.
    let mut txs: Vec<SignedTx> = (0..40)
        .map(|n| transfer(alice, n, bob, 1_000, chain_id))
        .collect();
    txs.reverse();
    for r in node.submit(txs) {
        r.expect("admitted");
    }
    assert_eq!(node.mempool_size().0, 40);
    let block = node
        .produce_block(1_700_000_000_100, false)
        .expect("produce")
        .expect("a block");
    assert_eq!(block.header.height, 1);
    assert_eq!(block.tx_ids.len(), 40);
    assert!(block.receipts.iter().all(|r| r.status == TxStatus::Success));
    assert_eq!(block.header.fees, 400);
    assert_eq!(node.mempool_size().0, 0);
    assert_eq!(balance(&node, &bob), 10 * BTC + 40_000);
    // Nothing waiting: no empty block unless forced.
    assert!(node
        .produce_block(1_700_000_000_200, false)
        .expect("produce")
        .is_none());

    // A transaction that cannot pay its fee at execution is invalid and leaves the pool.
    let carol = &g.accounts[2].key;
    let everything = balance(&node, &carol.address());
    let drain = transfer(carol, 0, bob, everything - 10, chain_id);
    let too_late = transfer(carol, 1, bob, 1, chain_id);
    for r in node.submit(vec![drain, too_late.clone()]) {
        r.expect("admitted");
    }
    let block = node
        .produce_block(1_700_000_000_300, false)
        .expect("produce")
        .expect("a block");
    assert_eq!(block.receipts[0].status, TxStatus::Success);
    assert!(
        matches!(block.receipts[1].status, TxStatus::Invalid(_)),
        "{:?}",
        block.receipts[1]
    );
    assert!(node.pending(&too_late.id()).is_none());

    // The store agrees with the in-memory state, and with a tree built from scratch.
    let head = node.chain().head();
    let root = node
        .chain()
        .with_state(|s| fresh_state_root(s).expect("root"));
    assert_eq!(head.state_root, root);
    assert_ne!(head.state_root, genesis_root);
    let stored = node.chain().store().load_state().expect("load");
    assert!(node.chain().with_state(|s| *s == stored));
    let id = block.tx_ids[0];
    assert_eq!(
        node.chain().store().tx_location(&id).expect("index"),
        Some((2, 0))
    );
    drop(node);

    // Reopen: same head, same state.
    let (node, _) = open(dir.path(), 1);
    assert_eq!(node.chain().head(), head);
    assert_eq!(balance(&node, &bob), 10 * BTC + 40_000 + everything - 10);
}

#[test]
fn a_data_dir_of_another_genesis_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(open(dir.path(), 1));
    let other = devnet_genesis(42); // another timestamp: same state, so same root: accepted
    assert!(Chain::open(
        &dir.path().join("parabit.redb"),
        other.spec,
        &ChainConfig::default()
    )
    .is_ok());
    let mut changed = devnet_genesis(1).spec;
    changed.balances[0].amount += 1;
    let err = Chain::open(
        &dir.path().join("parabit.redb"),
        changed,
        &ChainConfig::default(),
    )
    .err()
    .expect("refused");
    assert!(
        err.to_string().contains("another chain's data directory"),
        "{err}"
    );
}

#[test]
fn parallel_blocks_equal_a_sequential_replay() {
    // The same transactions through a 1-thread and a 2-thread chain give the same roots.
    let dirs = [
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    ];
    let (one, g) = open(dirs[0].path(), 1);
    let (two, _) = open(dirs[1].path(), 2);
    let chain_id = one.chain().chain_id();
    for round in 0..3u64 {
        let mut txs = Vec::new();
        for (i, from) in g.accounts.iter().enumerate() {
            for n in 0..30 {
                let to = g.accounts[(i + 1 + n as usize) % g.accounts.len()]
                    .key
                    .address();
                txs.push(transfer(
                    &from.key,
                    round * 30 + n,
                    to,
                    7 + n as u128,
                    chain_id,
                ));
            }
        }
        for node in [&one, &two] {
            for r in node.submit(txs.clone()) {
                r.expect("admitted");
            }
            node.produce_block(1_700_000_001_000 + round, false)
                .expect("produce")
                .expect("a block");
        }
        assert_eq!(one.chain().head(), two.chain().head());
    }
}

#[test]
fn a_replay_from_genesis_reaches_the_same_root_and_names_a_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (node, g) = open(dir.path(), 2);
    let chain_id = node.chain().chain_id();
    for round in 0..3u64 {
        let txs: Vec<SignedTx> = g
            .accounts
            .iter()
            .flat_map(|a| (0..20).map(move |n| (a, round * 20 + n)))
            .map(|(a, n)| transfer(&a.key, n, g.admin.key.address(), 3, chain_id))
            .collect();
        for r in node.submit(txs) {
            r.expect("admitted");
        }
        node.produce_block(1_700_000_002_000 + round, false)
            .expect("produce")
            .expect("a block");
    }
    let head = node.chain().head();
    let out = tempfile::tempdir().expect("tempdir");
    let (height, root) = parabit_node::chain::replay(
        &g.spec,
        node.chain().store(),
        &out.path().join("replica.redb"),
        2,
    )
    .expect("replay agrees");
    assert_eq!((height, root), (head.height, head.state_root));

    // Another genesis: the replay names block 0.
    let mut other = g.spec.clone();
    other.balances[0].amount += 1;
    let err = parabit_node::chain::replay(
        &other,
        node.chain().store(),
        &out.path().join("replica2.redb"),
        1,
    )
    .expect_err("differs");
    assert!(err.to_string().starts_with("block 0: state root"), "{err}");
}
