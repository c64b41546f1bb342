//! Measures `prepare` and `commit` of blocks that each change `--writes` keys (balances of a
//! transfer block: two per transfer) in a store of `--accounts` keys.
//!
//! `cargo run --release -p parabit-storage --example commit_scale -- ACCOUNTS WRITES BLOCKS`
//! prints one JSON line per block size.

use std::time::Instant;

use parabit_exec::{Key, Value, WriteSet};
use parabit_primitives::{tx_root, Block, BlockHeader};
use parabit_storage::{Store, StoreConfig};

fn account_key(i: u64) -> Key {
    Key::from_parts(&[&[1u8], &i.to_be_bytes(), &[0u8; 24]]).expect("short key")
}

fn commit(store: &Store, ws: &WriteSet) -> (f64, f64) {
    let h = store.next_height();
    let t = Instant::now();
    let prepared = store.prepare(h, ws).expect("prepare");
    let prepare_s = t.elapsed().as_secs_f64();
    let latest = store.latest();
    let block: Block<u64> = Block {
        header: BlockHeader {
            height: h,
            parent_hash: latest.as_ref().map_or([0; 32], BlockHeader::hash),
            timestamp_ms: h,
            tx_root: tx_root(&[]),
            state_root: prepared.state_root(),
            bitcoin_height: 0,
            fees: 0,
            tx_count: 0,
        },
        txs: vec![],
    };
    let t = Instant::now();
    store.commit(prepared, &block, &[], &[]).expect("commit");
    (prepare_s, t.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let accounts = args.first().copied().unwrap_or(1_000_000);
    let writes = args.get(1).copied().unwrap_or(20_000);
    let blocks = args.get(2).copied().unwrap_or(5);
    let dir = tempfile::tempdir().expect("tempdir");
    // PRUNE=n keeps n versions; QUICK_REPAIR=0 turns quick repair off.
    let config = StoreConfig {
        keep_versions: std::env::var("PRUNE").ok().and_then(|v| v.parse().ok()),
        quick_repair: std::env::var("QUICK_REPAIR").as_deref() != Ok("0"),
    };
    let store = Store::open(dir.path().join("scale.redb"), config).expect("open");
    // Genesis in chunks of 200k keys.
    let t = Instant::now();
    let mut next = 0;
    while next < accounts {
        let end = (next + 200_000).min(accounts);
        let ws = WriteSet(
            (next..end)
                .map(|i| (account_key(i), Some(Value::Num(1_000_000))))
                .collect(),
        );
        commit(&store, &ws);
        next = end;
    }
    let genesis_s = t.elapsed().as_secs_f64();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in 0..blocks {
        let ws = WriteSet(
            (0..writes)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (
                        account_key(x % accounts),
                        Some(Value::Num(u128::from(x % 1000))),
                    )
                })
                .collect(),
        );
        let (p, c) = commit(&store, &ws);
        println!(
            "{{\"accounts\":{accounts},\"writes\":{writes},\"block\":{b},\"prepare_ms\":{:.1},\"commit_ms\":{:.1},\"genesis_s\":{genesis_s:.1}}}",
            p * 1e3,
            c * 1e3
        );
    }
    let stats = store.tree_stats().expect("stats");
    eprintln!("{stats:?}");
}
