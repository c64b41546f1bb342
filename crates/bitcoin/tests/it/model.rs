//! Random sequences of chain operations (mining, wallet payments, reorgs, evictions, restarts)
//! keep the chain's invariants: wallet-built payments are always admitted, the UTXO set holds
//! exactly the subsidies of the active chain (every block claims its fees), disconnecting and
//! reconnecting is exact, and a reopened chain equals the one that was closed.

use parabit_bitcoin::bitcoin::{Amount, Txid};
use parabit_bitcoin::regtest::subsidy;
use parabit_bitcoin::{RegtestChain, TaprootWallet};
use proptest::prelude::*;

use crate::{pay, rate, utxos, wallet};

#[derive(Clone, Debug)]
enum Op {
    Mine(u32),
    Pay {
        from: usize,
        to: usize,
        sats: u64,
        rate: u32,
    },
    Invalidate(u32),
    Evict(usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..3).prop_map(Op::Mine),
        5 => (0usize..3, 0usize..3, 1_000u64..3_000_000_000, 1u32..6)
            .prop_map(|(from, to, sats, rate)| Op::Pay { from, to, sats, rate }),
        1 => (1u32..4).prop_map(Op::Invalidate),
        1 => any::<usize>().prop_map(Op::Evict),
        1 => Just(Op::Reopen),
    ]
}

fn subsidies(height: u32) -> Amount {
    (1..=height).map(subsidy).sum()
}

/// Everything observable that a restart must preserve.
fn snapshot(chain: &RegtestChain, wallets: &[TaprootWallet]) -> impl PartialEq + std::fmt::Debug {
    let mut mempool: Vec<Txid> = chain.mempool().iter().map(|t| t.compute_txid()).collect();
    mempool.sort();
    let unspent: Vec<_> = wallets.iter().map(|w| utxos(chain, w)).collect();
    (chain.stats(), mempool, unspent)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_invariants(ops in proptest::collection::vec(op(), 1..14)) {
        let dir = tempfile::tempdir().unwrap();
        let wallets = [wallet(1), wallet(2), wallet(3)];
        let mut chain = RegtestChain::open(dir.path()).unwrap();
        chain.mine(101, wallets[0].script_pubkey()).unwrap();
        for op in ops {
            match op {
                Op::Mine(n) => {
                    let before = chain.stats();
                    chain.mine(n, wallets[2].script_pubkey()).unwrap();
                    let after = chain.stats();
                    prop_assert_eq!(after.height, before.height + n);
                    // Everything in the mempool fits a block here, so it is all confirmed.
                    prop_assert_eq!(after.mempool_txs, 0);
                }
                Op::Pay { from, to, sats, rate: r } => {
                    let coins = utxos(&chain, &wallets[from]);
                    if let Ok(f) = wallets[from].build_payment(&coins, pay(&wallets[to], sats), rate(r)) {
                        // A wallet-built payment from listed coins is always admitted.
                        let id = chain.send_raw_transaction(&f.tx);
                        prop_assert!(id.is_ok(), "{:?}", id);
                    }
                }
                Op::Invalidate(d) => {
                    let before = chain.stats();
                    if d < before.height {
                        chain.invalidate(d).unwrap();
                        prop_assert_eq!(chain.height(), before.height - d);
                    }
                }
                Op::Evict(i) => {
                    let pool = chain.mempool();
                    if !pool.is_empty() {
                        let id = pool[i % pool.len()].compute_txid();
                        let removed = chain.remove_from_mempool(&id).unwrap();
                        prop_assert!(removed.contains(&id));
                        prop_assert!(!chain.in_mempool(&id));
                    }
                }
                Op::Reopen => {
                    let before = snapshot(&chain, &wallets);
                    drop(chain);
                    chain = RegtestChain::open(dir.path()).unwrap();
                    prop_assert_eq!(snapshot(&chain, &wallets), before);
                }
            }
            let stats = chain.stats();
            prop_assert_eq!(stats.utxo_value, subsidies(stats.height));
        }
        // Disconnecting everything and reconnecting the same blocks restores the same state.
        let stats = chain.stats();
        let blocks: Vec<_> = (1..=stats.height).map(|h| chain.block_at(h).unwrap()).collect();
        let fresh = RegtestChain::in_memory();
        for b in blocks {
            fresh.submit_block(b).unwrap();
        }
        let mut replayed = fresh.stats();
        replayed.mempool_txs = stats.mempool_txs;
        prop_assert_eq!(replayed, stats.clone());
        let before = snapshot(&chain, &wallets);
        drop(chain);
        let chain = RegtestChain::open(dir.path()).unwrap();
        prop_assert_eq!(snapshot(&chain, &wallets), before);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A journal damaged anywhere (a byte changed, the file cut): opening never panics, keeps a
    /// prefix of the history, and a second open gives the same chain.
    #[test]
    fn damaged_journal_opens_to_a_prefix(pos: usize, byte: u8, cut: bool) {
        let dir = tempfile::tempdir().unwrap();
        let alice = wallet(1);
        let heights = {
            let chain = RegtestChain::open(dir.path()).unwrap();
            chain.mine(4, alice.script_pubkey()).unwrap();
            chain.height()
        };
        let path = dir.path().join(parabit_bitcoin::regtest::JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = 8 + pos % (bytes.len() - 8);
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= byte | 1;
        }
        std::fs::write(&path, &bytes).unwrap();
        let first = RegtestChain::open(dir.path()).unwrap().stats();
        prop_assert!(first.height <= heights);
        prop_assert_eq!(first.utxo_value, subsidies(first.height));
        let second = RegtestChain::open(dir.path()).unwrap().stats();
        prop_assert_eq!(first, second);
    }
}
