//! Measures the state root (`prepare`) and the durable commit of blocks of bank transfers in a
//! store of `ACCOUNTS` funded accounts, next to the execution of the same block in the same
//! run, and where the commit's time goes.
//!
//! `cargo run --release -p parabit-storage --example commit_scale -- ACCOUNTS TRANSFERS BLOCKS`
//!
//! Genesis funds `ACCOUNTS` addresses (the bank's genesis state) and is committed as block 0
//! (one prepare and one transaction; `GENESIS_CHUNK=n` splits it into blocks of `n` accounts).
//! Each following block holds `TRANSFERS` BTC transfers between random accounts, executed
//! with `parabit_exec::execute_sequential` on the in-memory state (timed: `exec_ms`), then
//! prepared (`prepare_ms`: the Jellyfish root) and committed with its transactions, receipts
//! and account indexes (`commit_ms`: one redb transaction, fsync). One JSON line per block,
//! with the commit's breakdown ([`parabit_storage::CommitProfile`]) and the bytes the process
//! wrote during the commit (`/proc/self/io`, Linux only).
//!
//! Environment: `PRUNE=n` keeps n versions; `QUICK_REPAIR=0` turns quick repair off;
//! `CACHE_DEPTH=d` sets the tree node cache depth; `FLOOR=1` measures instead the pure
//! in-memory Jellyfish root of each block's writes over a tree held in a `HashMap` (no
//! database: the floor that any layout on top of `jmt` pays). `_cpu_ms` fields are the main
//! thread's CPU time (`getrusage`), which a busy machine inflates less than wall time. At the
//! end, the time to load the whole state back (`Store::load_state`, what a node does when it
//! starts) goes to stderr.

use std::collections::HashMap;
use std::time::Instant;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{KeyHash, OwnedValue, Sha256Jmt, Version};
use parabit_exec::{execute_sequential, KeyMap, Value, WriteSet};
use parabit_modules::{block_txs, genesis_state, BankMsg, Call, Runtime, Tx};
use parabit_primitives::{tx_root, Address, AssetId, Block, BlockHeader, SignedTransaction};
use parabit_storage::{encode_value, key_hash, Store, StoreConfig};

/// Account `i`'s address.
fn address(i: u64) -> Address {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&i.to_le_bytes());
    a[8] = 0xAB;
    Address(a)
}

/// A xorshift stream.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Bytes this process has written (`wchar` of `/proc/self/io`), 0 where unknown.
fn written_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("wchar: ").map(|v| v.trim().parse().ok()))
                .flatten()
        })
        .unwrap_or(0)
}

/// CPU time of the calling thread, in seconds (`getrusage(RUSAGE_THREAD)`): unlike wall time,
/// it does not count waiting for a busy machine's cores (nor for the disk).
fn thread_cpu_s() -> f64 {
    // SAFETY: `getrusage` only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_THREAD, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A Jellyfish tree held in memory (for the floor).
#[derive(Default)]
struct MemTree(HashMap<NodeKey, Node>);

impl TreeReader for MemTree {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.0.get(node_key).cloned())
    }
    fn get_value_option(&self, _: Version, _: KeyHash) -> anyhow::Result<Option<OwnedValue>> {
        anyhow::bail!("values are not kept")
    }
    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        Ok(None)
    }
}

impl MemTree {
    /// Applies `writes` as `version`, returning the seconds the root took.
    fn put(&mut self, writes: &WriteSet, version: Version) -> (f64, f64) {
        let t = Instant::now();
        let c = thread_cpu_s();
        let set: Vec<(KeyHash, OwnedValue)> = writes
            .0
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (key_hash(k), encode_value(v))))
            .collect();
        let (_, batch) = Sha256Jmt::new(&*self)
            .batch_put_value_sets(vec![set], None, version)
            .expect("in-memory root");
        let s = (t.elapsed().as_secs_f64(), thread_cpu_s() - c);
        for (k, n) in batch.node_batch.nodes() {
            self.0.insert(k.clone(), n.clone());
        }
        s
    }
}

fn header(store: &Store, root: [u8; 32], txs: &[SignedTransaction<Call>]) -> BlockHeader {
    let latest = store.latest();
    let h = store.next_height();
    let ids: Vec<_> = txs.iter().map(SignedTransaction::id).collect();
    BlockHeader {
        height: h,
        parent_hash: latest.as_ref().map_or([0; 32], BlockHeader::hash),
        timestamp_ms: h,
        tx_root: tx_root(&ids),
        state_root: root,
        bitcoin_height: 0,
        fees: 0,
        tx_count: txs.len() as u32,
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers"))
        .collect();
    let accounts = args.first().copied().unwrap_or(1_000_000).max(2);
    let transfers = args.get(1).copied().unwrap_or(10_000);
    let blocks = args.get(2).copied().unwrap_or(3);
    let floor = std::env::var("FLOOR").as_deref() == Ok("1");
    let mut config = StoreConfig {
        keep_versions: std::env::var("PRUNE").ok().and_then(|v| v.parse().ok()),
        quick_repair: std::env::var("QUICK_REPAIR").as_deref() != Ok("0"),
        ..StoreConfig::default()
    };
    if let Some(d) = std::env::var("CACHE_DEPTH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.node_cache_depth = d;
    }
    let runtime = Runtime::new(1, address(u64::MAX));
    let t = Instant::now();
    let balances: Vec<_> = (0..accounts)
        .map(|i| (address(i), AssetId::BTC, 1_000_000_000))
        .collect();
    let mut state: KeyMap<Value> = genesis_state(&balances);
    drop(balances);
    let build_s = t.elapsed().as_secs_f64();

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path().join("scale.redb"), config).expect("open");
    let mut mem = MemTree::default();
    let t = Instant::now();
    let chunk = std::env::var("GENESIS_CHUNK")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX)
        .max(1);
    let mut entries: Vec<_> = state.iter().map(|(k, v)| (*k, Some(v.clone()))).collect();
    entries.sort_unstable_by_key(|e| e.0);
    let mut version = 0;
    for part in entries.chunks(chunk) {
        let ws = WriteSet(part.to_vec());
        if floor {
            mem.put(&ws, version);
            version += 1;
        } else {
            let prepared = store.prepare(store.next_height(), &ws).expect("prepare");
            let block: Block<Call> = Block {
                header: header(&store, prepared.state_root(), &[]),
                txs: vec![],
            };
            store.commit(prepared, &block, &[], &[]).expect("commit");
        }
    }
    drop(entries);
    let genesis_s = t.elapsed().as_secs_f64();
    eprintln!("genesis state built in {build_s:.1} s, committed in {genesis_s:.1} s");

    let mut nonces: HashMap<Address, u64> = HashMap::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for b in 0..blocks {
        let txs: Vec<SignedTransaction<Call>> = (0..transfers)
            .map(|_| {
                let from = address(rng.next() % accounts);
                let to = address(rng.next() % accounts);
                let nonce = nonces.entry(from).or_default();
                let tx = Tx {
                    chain_id: 1,
                    sender: from,
                    nonce: *nonce,
                    fee: 10,
                    call: Call::Bank(BankMsg::Transfer {
                        to,
                        asset: AssetId::BTC,
                        amount: u128::from(1 + rng.next() % 1000),
                    }),
                };
                *nonce += 1;
                SignedTransaction {
                    tx,
                    signature: [0; 64],
                }
            })
            .collect();
        let engine_txs = block_txs(Vec::new(), txs.iter().map(|s| s.tx.clone()).collect());
        let height = if floor { version } else { store.next_height() };
        let rt = runtime.at_height(height);
        let t = Instant::now();
        let c = thread_cpu_s();
        let out = execute_sequential(&rt, &engine_txs, &state);
        let exec_s = t.elapsed().as_secs_f64();
        let exec_cpu = thread_cpu_s() - c;
        let failed = out
            .outputs
            .iter()
            .filter(|r| !r.status.is_success())
            .count();
        assert_eq!(failed, 0, "every transfer succeeds");
        let writes = out.writes;
        let receipts = out.outputs[..txs.len()].to_vec();
        let extra: Vec<Vec<Address>> = txs
            .iter()
            .map(|s| match &s.tx.call {
                Call::Bank(BankMsg::Transfer { to, .. }) => vec![*to],
                _ => vec![],
            })
            .collect();
        if floor {
            let (root_s, root_cpu) = mem.put(&writes, version);
            version += 1;
            println!(
                "{{\"accounts\":{accounts},\"transfers\":{transfers},\"writes\":{},\"block\":{b},\"exec_ms\":{:.1},\"exec_cpu_ms\":{:.1},\"memory_root_ms\":{:.1},\"memory_root_cpu_ms\":{:.1}}}",
                writes.0.len(),
                exec_s * 1e3,
                exec_cpu * 1e3,
                root_s * 1e3,
                root_cpu * 1e3,
            );
        } else {
            let t = Instant::now();
            let c = thread_cpu_s();
            let prepared = store.prepare(height, &writes).expect("prepare");
            let prepare_s = t.elapsed().as_secs_f64();
            let prepare_cpu = thread_cpu_s() - c;
            let block = Block {
                header: header(&store, prepared.state_root(), &txs),
                txs,
            };
            let w0 = written_bytes();
            let t = Instant::now();
            let c = thread_cpu_s();
            store
                .commit(prepared, &block, &receipts, &extra)
                .expect("commit");
            let commit_s = t.elapsed().as_secs_f64();
            let commit_cpu = thread_cpu_s() - c;
            let mb = (written_bytes().saturating_sub(w0)) as f64 / 1e6;
            let p = store.last_profile();
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            println!(
                "{{\"accounts\":{accounts},\"transfers\":{transfers},\"writes\":{},\"block\":{b},\"exec_ms\":{:.1},\"prepare_ms\":{:.1},\"commit_ms\":{:.1},\"ratio\":{:.1},\"exec_cpu_ms\":{:.1},\"prepare_cpu_ms\":{:.1},\"commit_cpu_ms\":{:.1},\"cpu_ratio\":{:.1},\"written_mb\":{mb:.1},\"node_reads\":{},\"cache_hits\":{},\"nodes_ms\":{:.1},\"block_ms\":{:.1},\"prune_ms\":{:.1},\"redb_commit_ms\":{:.1},\"genesis_s\":{genesis_s:.1}}}",
                writes.0.len(),
                exec_s * 1e3,
                prepare_s * 1e3,
                commit_s * 1e3,
                (prepare_s + commit_s) / exec_s,
                exec_cpu * 1e3,
                prepare_cpu * 1e3,
                commit_cpu * 1e3,
                (prepare_cpu + commit_cpu) / exec_cpu.max(1e-9),
                p.node_reads,
                p.cache_hits,
                ms(p.nodes),
                ms(p.block),
                ms(p.prune),
                ms(p.redb_commit),
            );
        }
        writes.apply_to(&mut state);
    }
    if !floor {
        let t = Instant::now();
        let loaded = store.load_state().expect("load");
        assert_eq!(loaded.len(), state.len(), "the store holds the state");
        eprintln!(
            "load_state of {} keys: {:.2} s; file {:.0} MB",
            loaded.len(),
            t.elapsed().as_secs_f64(),
            std::fs::metadata(dir.path().join("scale.redb")).map_or(0, |m| m.len()) as f64 / 1e6
        );
    }
}
