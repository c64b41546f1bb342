//! The store: one redb file with the latest state, the Jellyfish Merkle tree, blocks,
//! receipts and transaction indexes, written by one atomic transaction per block.
//!
//! Tables (keys big-endian where numeric, so byte order is numeric order):
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `"format"`, `"latest"`, `"oldest_version"` | layout tag; u64 (big-endian) |
//! | `jmt_nodes` | `version ‖ nibble path ‖ nibble count` ([`crate::codec`]) | `borsh(Node)`; for a leaf then its state key and [`encode_value`] of its value |
//! | `jmt_stale_nodes` | `stale_since ‖ node key` | `()` |
//! | `headers` | height | `borsh(BlockHeader)` |
//! | `bodies` | height | `borsh(Vec<SignedTransaction<C>>)` |
//! | `block_hashes` | header hash | height |
//! | `receipts` | (height, index) | `borsh(Receipt)` |
//! | `tx_index` | tx id | (height, index) of its first inclusion |
//! | `account_txs` | `address ‖ height ‖ index` | tx id |
//! | `batches` | batch index | the batcher's record of that batch (opaque bytes; created on first use) |
//! | `bridge_payouts` | payout index | the bridge payer's record of that payout (opaque bytes; created on first use) |
//!
//! Layout (tag `parabit-storage/2`): the tree's leaves hold the state entries they commit to,
//! so the tree is the latest state and its history at once, and every key a block writes
//! starts with its height: a block's nodes and stale-node entries are appended at the end of
//! their tables, in key order, instead of being scattered over the file (only the transaction
//! and account indexes take random inserts). [`Store::get`] walks the latest tree (about
//! log16(keys) nodes, the upper ones from memory) and [`Store::load_state`] reads all its
//! leaves. The latest tree's upper nodes stay in memory ([`StoreConfig::node_cache_depth`]),
//! so `prepare` reads from the file only the lower nodes on the paths it changes. A file of
//! another layout is refused with [`StoreError::OldLayout`].
//!
//! Invariants:
//! - Tree version = block height; genesis is height 0 and has an all-zero parent hash.
//! - [`Store::commit`] writes the tree nodes (with the state), block, receipts, indexes
//!   and the new latest height in one redb write transaction with immediate durability, after
//!   checking everything it can refuse; a refused or failed commit writes nothing. After a
//!   crash at any instant the store reopens at the last committed block, whole.
//! - The latest header's `state_root` is the root of the latest tree, whose leaves hold the
//!   latest state. Every leaf entry holds a key and value whose hashes are the leaf's (a leaf
//!   the tree moves without a new value is rewritten with its old entry).
//! - With `keep_versions = Some(n)`, trees of the last `n` heights are kept: every node that
//!   only older trees use is deleted in the commit that makes it unnecessary; a query for an
//!   older height is [`StoreError::Pruned`]. (Stale indexes are written only while pruning is
//!   configured, so nodes made stale by blocks committed without it are never reclaimed.)
//! - The store spawns no threads and does no network I/O. It is `Send + Sync`; reads may run
//!   concurrently with a commit (redb's MVCC), and commits are serialised by redb.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use borsh::{BorshDeserialize, BorshSerialize};
use jmt::storage::{LeafNode, NibblePath, Node, NodeKey, StaleNodeIndex, TreeUpdateBatch};
use jmt::{KeyHash, OwnedValue, Sha256Jmt, ValueHash};
use parabit_exec::{Key, KeyMap, Value, WriteSet};
use parabit_primitives::{tx_root, Address, Block, BlockHeader, Receipt, SignedTransaction, TxId};
use parking_lot::{Mutex, RwLock};
use redb::{
    Database, Durability, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    WriteTransaction,
};
use sha2::Sha256;
use std::time::{Duration, Instant};

use crate::codec::{
    account_key, be_u64, decode_entry, encode_value, entry_node, key_hash, node_entry,
    node_key as codec_node_key, stored_value,
};
use crate::error::StoreError;
use crate::tree::{fresh_state_root, tree_error, NodeCache, Proof, RedbTreeReader};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const NODES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("jmt_nodes");
const STALE_NODES: TableDefinition<&[u8], ()> = TableDefinition::new("jmt_stale_nodes");
const HEADERS: TableDefinition<u64, &[u8]> = TableDefinition::new("headers");
const BODIES: TableDefinition<u64, &[u8]> = TableDefinition::new("bodies");
const HASHES: TableDefinition<&[u8; 32], u64> = TableDefinition::new("block_hashes");
const RECEIPTS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("receipts");
const TX_INDEX: TableDefinition<&[u8; 32], (u64, u32)> = TableDefinition::new("tx_index");
const ACCOUNT_TXS: TableDefinition<&[u8; 44], &[u8; 32]> = TableDefinition::new("account_txs");
const BATCHES: TableDefinition<u64, &[u8]> = TableDefinition::new("batches");
const PAYOUTS: TableDefinition<u64, &[u8]> = TableDefinition::new("bridge_payouts");

/// The layout tag stored under `meta["format"]`.
const FORMAT: &[u8] = b"parabit-storage/2";
/// Earlier layouts of Parabit stores (refused with [`StoreError::OldLayout`]).
const OLD_FORMATS: &[&[u8]] = &[b"parabit-storage/1"];
const META_FORMAT: &str = "format";
const META_LATEST: &str = "latest";
const META_OLDEST: &str = "oldest_version";

/// How the store behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// Keep the Merkle trees of only the last `n` heights (`n >= 1`); `None` keeps all.
    pub keep_versions: Option<u64>,
    /// Commit with redb's quick-repair (two-phase commit and saved allocator state): commits
    /// are a little slower and reopening after a crash is almost instant instead of a walk
    /// over the whole file. Either way a crash loses nothing committed.
    pub quick_repair: bool,
    /// Keep the latest tree's nodes down to this many nibbles below the root in memory, so
    /// that [`Store::prepare`] need not read them from the file (depth 4, the default: at most
    /// 69,905 nodes, about 70 MB once the tree has a million keys; 0 keeps only the root).
    pub node_cache_depth: usize,
}

impl Default for StoreConfig {
    fn default() -> StoreConfig {
        StoreConfig {
            keep_versions: None,
            quick_repair: true,
            node_cache_depth: 4,
        }
    }
}

/// The tree update for the next block, computed by [`Store::prepare`] and written by
/// [`Store::commit`].
pub struct Prepared {
    height: u64,
    parent_root: Option<[u8; 32]>,
    root: [u8; 32],
    batch: TreeUpdateBatch,
    /// The block's writes, deduplicated and sorted by key hash: key, encoded value or deletion.
    writes: Vec<(KeyHash, Key, Option<OwnedValue>)>,
    /// The state entries of leaves the tree moved without a new value, sorted by key hash.
    moved: Vec<(KeyHash, Key, OwnedValue)>,
    /// Nodes that prepare read from the file and that belong in the node cache.
    cache_fill: Vec<(Vec<u8>, Node)>,
    node_reads: u64,
    cache_hits: u64,
}

impl Prepared {
    /// The state root after the block.
    pub fn state_root(&self) -> [u8; 32] {
        self.root
    }

    /// The height this update is for.
    pub fn height(&self) -> u64 {
        self.height
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("height", &self.height)
            .field("root", &hex::encode(self.root))
            .field("writes", &self.writes.len())
            .finish()
    }
}

/// Sizes of the tree tables (for metrics and tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Tree nodes stored.
    pub nodes: u64,
    /// Leaf nodes stored, of every kept version (each holds its state entry).
    pub values: u64,
    /// Nodes waiting to be pruned.
    pub stale_nodes: u64,
    /// Keys in the latest state.
    pub state_keys: u64,
}

/// Where the last [`Store::prepare`] and [`Store::commit`] spent their time (for benchmarks
/// and metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitProfile {
    /// Tree nodes the last prepare read from the file.
    pub node_reads: u64,
    /// Tree nodes the last prepare found in the node cache.
    pub cache_hits: u64,
    /// Writing the tree nodes (with the leaves' state entries) and the stale index.
    pub nodes: Duration,
    /// Writing the header, body, receipts and transaction indexes.
    pub block: Duration,
    /// Pruning.
    pub prune: Duration,
    /// redb's commit: page writes and fsync.
    pub redb_commit: Duration,
}

/// What the store knows without reading the file.
struct Tip {
    latest: Option<BlockHeader>,
    oldest_version: u64,
}

/// The durable store (see the module doc).
pub struct Store {
    db: Database,
    config: StoreConfig,
    tip: RwLock<Tip>,
    cache: RwLock<NodeCache>,
    profile: Mutex<CommitProfile>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tip = self.tip.read();
        f.debug_struct("Store")
            .field("latest", &tip.latest.as_ref().map(|h| h.height))
            .field("oldest_version", &tip.oldest_version)
            .field("config", &self.config)
            .finish()
    }
}

impl Store {
    /// Opens the store at `path`, creating it if the file does not exist (or is empty).
    /// A file that is not a redb database, or a redb database that is not a Parabit store, is
    /// an error.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store, StoreError> {
        if config.keep_versions == Some(0) {
            return Err(StoreError::InvalidConfig(
                "keep_versions must be at least 1".into(),
            ));
        }
        let db = Database::create(path)?;
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(config.quick_repair);
        let fresh = {
            let meta = match txn.open_table(META) {
                Ok(meta) => meta,
                Err(redb::TableError::TableTypeMismatch { .. }) => {
                    return Err(StoreError::Foreign(
                        "its meta table has another layout".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let format = meta.get(META_FORMAT)?.map(|g| g.value().to_vec());
            match format {
                Some(f) if f == FORMAT => false,
                Some(f) if OLD_FORMATS.contains(&f.as_slice()) => {
                    return Err(StoreError::OldLayout {
                        found: String::from_utf8_lossy(&f).into_owned(),
                        expected: String::from_utf8_lossy(FORMAT).into_owned(),
                    })
                }
                Some(f) => {
                    return Err(StoreError::Foreign(format!(
                        "format tag {:?}, expected {:?}",
                        String::from_utf8_lossy(&f),
                        String::from_utf8_lossy(FORMAT)
                    )))
                }
                None => {
                    if !meta.is_empty()? || txn.list_tables()?.count() > 1 {
                        return Err(StoreError::Foreign(
                            "the database holds other tables and no format tag".into(),
                        ));
                    }
                    true
                }
            }
        };
        if fresh {
            txn.open_table(META)?.insert(META_FORMAT, FORMAT)?;
            // Create every table so that readers never meet a missing one.
            txn.open_table(NODES)?;
            txn.open_table(STALE_NODES)?;
            txn.open_table(HEADERS)?;
            txn.open_table(BODIES)?;
            txn.open_table(HASHES)?;
            txn.open_table(RECEIPTS)?;
            txn.open_table(TX_INDEX)?;
            txn.open_table(ACCOUNT_TXS)?;
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        let read = db.begin_read()?;
        let meta = read.open_table(META)?;
        let latest_height = meta_u64(&meta, META_LATEST)?;
        let oldest_version = meta_u64(&meta, META_OLDEST)?.unwrap_or(0);
        let latest =
            match latest_height {
                None => None,
                Some(h) => Some(read_header(&read, h)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("latest height {h} has no header"))
                })?),
            };
        Ok(Store {
            db,
            config: config.clone(),
            tip: RwLock::new(Tip {
                latest,
                oldest_version,
            }),
            cache: RwLock::new(NodeCache::new(config.node_cache_depth)),
            profile: Mutex::new(CommitProfile::default()),
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The latest committed header (`None` before genesis).
    pub fn latest(&self) -> Option<BlockHeader> {
        self.tip.read().latest.clone()
    }

    /// The height the next block must have.
    pub fn next_height(&self) -> u64 {
        self.tip.read().latest.as_ref().map_or(0, |h| h.height + 1)
    }

    /// The oldest height whose Merkle tree (and so proofs) is kept.
    pub fn oldest_version(&self) -> u64 {
        self.tip.read().oldest_version
    }

    /// Computes the tree update and state root of applying `writes` on top of the latest state
    /// as block `height`, without writing anything. If a key appears more than once in
    /// `writes`, its last entry counts (as in [`WriteSet::apply_to`]).
    pub fn prepare(&self, height: u64, writes: &WriteSet) -> Result<Prepared, StoreError> {
        let (expected, parent_root) = {
            let tip = self.tip.read();
            let latest = tip.latest.as_ref();
            (
                latest.map_or(0, |h| h.height + 1),
                latest.map(|h| h.state_root),
            )
        };
        if height != expected {
            return Err(StoreError::WrongHeight {
                expected,
                got: height,
            });
        }
        let mut dedup: BTreeMap<KeyHash, (Key, Option<OwnedValue>)> = BTreeMap::new();
        for (key, value) in &writes.0 {
            dedup.insert(key_hash(key), (*key, value.as_ref().map(encode_value)));
        }
        let writes: Vec<(KeyHash, Key, Option<OwnedValue>)> =
            dedup.into_iter().map(|(h, (k, v))| (h, k, v)).collect();

        let read = self.db.begin_read()?;
        let cache = self.cache.read();
        let reader = RedbTreeReader::new(&read, Some(&cache))?;
        let tree = Sha256Jmt::new(&reader);
        let all_inserts = !writes.is_empty() && writes.iter().all(|w| w.2.is_some());
        let (root, mut batch) = if all_inserts {
            // The batch insertion path is faster but cannot delete (nor take an empty set).
            let set = writes
                .iter()
                .filter_map(|(h, _, v)| v.clone().map(|v| (*h, v)))
                .collect();
            let (roots, batch) = tree
                .batch_put_value_sets(vec![set], None, height)
                .map_err(tree_error)?;
            let root = roots
                .first()
                .copied()
                .ok_or_else(|| StoreError::Tree("no root computed".into()))?;
            (root, batch)
        } else {
            let set = writes.iter().map(|(h, _, v)| (*h, v.clone()));
            tree.put_value_set(set, height).map_err(tree_error)?
        };
        if height > 0 {
            // Every version has its own root node; the previous one is used by no later tree.
            // (jmt records it as stale only when the root's contents changed.)
            batch.stale_node_index_batch.insert(StaleNodeIndex {
                stale_since_version: height,
                node_key: NodeKey::new(height - 1, std::iter::empty().collect::<NibblePath>()),
            });
        }
        // A new leaf's entry is the block's write of its key or, for a leaf the tree only moved,
        // its entry in the previous tree.
        let mut moved = Vec::new();
        let mut stale_paths: Option<HashMap<Vec<u8>, u64>> = None;
        for (node_key, node) in batch.node_batch.nodes() {
            let Node::Leaf(leaf) = node else { continue };
            let hash = leaf.key_hash();
            if node_key.version() != height {
                return Err(StoreError::Tree(format!(
                    "new leaf has version {}, expected {height}",
                    node_key.version()
                )));
            }
            match writes.binary_search_by(|w| w.0.cmp(&hash)) {
                Ok(i) if writes[i].2.is_some() => {}
                Ok(_) => return Err(StoreError::Tree("a deleted key has a new leaf".into())),
                Err(_) if height > 0 => {
                    let stale = stale_paths.get_or_insert_with(|| {
                        batch
                            .stale_node_index_batch
                            .iter()
                            .filter(|s| s.stale_since_version == height)
                            .map(|s| {
                                let key = codec_node_key(&s.node_key);
                                (key[8..].to_vec(), s.node_key.version())
                            })
                            .collect::<HashMap<_, _>>()
                    });
                    let entry = match reader.stale_leaf_entry(stale, &hash)? {
                        Some(entry) => Some(entry),
                        None => reader.entry_at(height - 1, &hash)?,
                    };
                    let (key, value) = entry.ok_or_else(|| {
                        StoreError::Corrupt("a moved leaf is not in the previous tree".into())
                    })?;
                    moved.push((hash, key, value));
                }
                Err(_) => return Err(StoreError::Tree("genesis leaf without a write".into())),
            }
        }
        moved.sort_unstable_by_key(|m| m.0);
        let cache_fill = reader.misses.take();
        let (node_reads, cache_hits) = (reader.reads.get(), reader.hits.get());
        Ok(Prepared {
            height,
            parent_root,
            root: root.0,
            batch,
            writes,
            moved,
            cache_fill,
            node_reads,
            cache_hits,
        })
    }

    /// Writes block `block` with the prepared state update, its receipts (one per transaction)
    /// and its index entries, atomically and durably. `extra_accounts` is empty or has one list
    /// per transaction: accounts besides the sender whose history should list it.
    ///
    /// Refused (and nothing written) when the height is not the next one, the prepared update
    /// was computed on another parent, the header's state root is not the prepared root, its
    /// parent hash is not the previous header's hash (zeros for genesis), its `tx_root` or
    /// `tx_count` do not match the transactions, or a list has the wrong length.
    pub fn commit<C: BorshSerialize>(
        &self,
        prepared: Prepared,
        block: &Block<C>,
        receipts: &[Receipt],
        extra_accounts: &[Vec<Address>],
    ) -> Result<(), StoreError> {
        let header = &block.header;
        let height = header.height;
        let ntx = block.txs.len();
        if receipts.len() != ntx {
            return Err(StoreError::CountMismatch {
                what: "receipts",
                got: receipts.len(),
                txs: ntx,
            });
        }
        if !extra_accounts.is_empty() && extra_accounts.len() != ntx {
            return Err(StoreError::CountMismatch {
                what: "extra accounts",
                got: extra_accounts.len(),
                txs: ntx,
            });
        }
        let ids = block.tx_ids();
        if u32::try_from(ntx) != Ok(header.tx_count) || tx_root(&ids) != header.tx_root {
            return Err(StoreError::TxsMismatch);
        }
        if header.state_root != prepared.root {
            return Err(StoreError::StateRootMismatch {
                block: hex::encode(header.state_root),
                prepared: hex::encode(prepared.root),
            });
        }
        let header_bytes = encode(header)?;
        let body_bytes = encode(&block.txs)?;
        let hash = header.hash();

        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(self.config.quick_repair);

        // Checks against the committed chain, inside the transaction that extends it.
        let (latest, oldest) = {
            let meta = txn.open_table(META)?;
            (
                meta_u64(&meta, META_LATEST)?,
                meta_u64(&meta, META_OLDEST)?.unwrap_or(0),
            )
        };
        let expected = latest.map_or(0, |h| h + 1);
        if height != expected || prepared.height != expected {
            return Err(StoreError::WrongHeight {
                expected,
                got: if height != expected {
                    height
                } else {
                    prepared.height
                },
            });
        }
        let parent = match latest {
            None => None,
            Some(h) => {
                let headers = txn.open_table(HEADERS)?;
                let bytes = headers.get(h)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("latest height {h} has no header"))
                })?;
                Some(decode::<BlockHeader>(bytes.value(), "header")?)
            }
        };
        if parent.as_ref().map(|p| p.state_root) != prepared.parent_root {
            return Err(StoreError::StalePrepared);
        }
        let parent_hash = parent.as_ref().map_or([0; 32], BlockHeader::hash);
        if header.parent_hash != parent_hash {
            return Err(StoreError::ParentMismatch {
                expected: hex::encode(parent_hash),
                got: hex::encode(header.parent_hash),
            });
        }

        let mut profile = CommitProfile {
            node_reads: prepared.node_reads,
            cache_hits: prepared.cache_hits,
            ..CommitProfile::default()
        };
        write_tree(
            &txn,
            &prepared,
            self.config.keep_versions.is_some(),
            &mut profile,
        )?;
        let t = Instant::now();
        {
            txn.open_table(HEADERS)?
                .insert(height, header_bytes.as_slice())?;
            txn.open_table(BODIES)?
                .insert(height, body_bytes.as_slice())?;
            txn.open_table(HASHES)?.insert(&hash, height)?;
            let mut receipts_table = txn.open_table(RECEIPTS)?;
            let mut tx_index = txn.open_table(TX_INDEX)?;
            let mut accounts = txn.open_table(ACCOUNT_TXS)?;
            for (i, ((tx, id), receipt)) in block.txs.iter().zip(&ids).zip(receipts).enumerate() {
                // `ntx` fits in u32 (checked against tx_count above).
                let index = u32::try_from(i).map_err(|_| StoreError::TxsMismatch)?;
                receipts_table.insert((height, index), encode(receipt)?.as_slice())?;
                if tx_index.get(&id.0)?.is_none() {
                    tx_index.insert(&id.0, (height, index))?;
                }
                accounts.insert(&account_key(&tx.tx.sender.0, height, index), &id.0)?;
                for account in extra_accounts.get(i).into_iter().flatten() {
                    accounts.insert(&account_key(&account.0, height, index), &id.0)?;
                }
            }
        }

        profile.block = t.elapsed();
        let t = Instant::now();
        let new_oldest = match self.config.keep_versions {
            Some(n) => (height + 1).saturating_sub(n).max(oldest),
            None => oldest,
        };
        if new_oldest > oldest {
            prune(&txn, new_oldest)?;
        }
        {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_LATEST, height.to_be_bytes().as_slice())?;
            meta.insert(META_OLDEST, new_oldest.to_be_bytes().as_slice())?;
        }
        profile.prune = t.elapsed();
        let t = Instant::now();
        txn.commit()?;
        profile.redb_commit = t.elapsed();
        *self.profile.lock() = profile;

        {
            let mut tip = self.tip.write();
            tip.latest = Some(header.clone());
            tip.oldest_version = new_oldest;
        }
        let mut cache = self.cache.write();
        for (key, node) in &prepared.cache_fill {
            cache.insert(key, node);
        }
        for (node_key, node) in prepared.batch.node_batch.nodes() {
            if node_key.nibble_path().num_nibbles() <= self.config.node_cache_depth {
                cache.insert(&codec_node_key(node_key), node);
            }
        }
        Ok(())
    }

    /// The latest value of `key`.
    pub fn get(&self, key: &Key) -> Result<Option<Value>, StoreError> {
        let read = self.db.begin_read()?;
        let Some(latest) = meta_u64(&read.open_table(META)?, META_LATEST)? else {
            return Ok(None);
        };
        let cache = self.cache.read();
        let reader = RedbTreeReader::new(&read, Some(&cache))?;
        match reader.entry_at(latest, &key_hash(key))? {
            None => Ok(None),
            Some((_, v)) => Ok(Some(stored_value(&v, "state")?)),
        }
    }

    /// The whole latest state (the leaves of the latest tree).
    pub fn load_state(&self) -> Result<KeyMap<Value>, StoreError> {
        let read = self.db.begin_read()?;
        let mut out = KeyMap::default();
        let Some(latest) = meta_u64(&read.open_table(META)?, META_LATEST)? else {
            return Ok(out);
        };
        let reader = RedbTreeReader::new(&read, None)?;
        reader.for_each_leaf(latest, |k, v| {
            out.insert(k, stored_value(v, "state")?);
            Ok(())
        })?;
        Ok(out)
    }

    /// The header at `height`.
    pub fn header(&self, height: u64) -> Result<Option<BlockHeader>, StoreError> {
        read_header(&self.db.begin_read()?, height)
    }

    /// The block at `height`.
    pub fn block<C: BorshDeserialize>(&self, height: u64) -> Result<Option<Block<C>>, StoreError> {
        let read = self.db.begin_read()?;
        let Some(header) = read_header(&read, height)? else {
            return Ok(None);
        };
        let bodies = read.open_table(BODIES)?;
        let bytes = bodies
            .get(height)?
            .ok_or_else(|| StoreError::Corrupt(format!("block {height} has no body")))?;
        let txs: Vec<SignedTransaction<C>> = decode(bytes.value(), "block body")?;
        Ok(Some(Block { header, txs }))
    }

    /// The height of the block whose header hash is `hash`.
    pub fn height_of(&self, hash: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read()?;
        let hashes = read.open_table(HASHES)?;
        Ok(hashes.get(hash)?.map(|g| g.value()))
    }

    /// Where a transaction was first included: (height, index in block).
    pub fn tx_location(&self, id: &TxId) -> Result<Option<(u64, u32)>, StoreError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(TX_INDEX)?;
        Ok(index.get(&id.0)?.map(|g| g.value()))
    }

    /// The receipt of a transaction (at its first inclusion).
    pub fn receipt(&self, id: &TxId) -> Result<Option<Receipt>, StoreError> {
        let read = self.db.begin_read()?;
        let index = read.open_table(TX_INDEX)?;
        let Some(location) = index.get(&id.0)?.map(|g| g.value()) else {
            return Ok(None);
        };
        let receipts = read.open_table(RECEIPTS)?;
        let bytes = receipts.get(location)?.ok_or_else(|| {
            StoreError::Corrupt(format!("transaction {id} indexed without a receipt"))
        })?;
        Ok(Some(decode(bytes.value(), "receipt")?))
    }

    /// Up to `limit` transactions that involve `account` (as sender or as an extra account),
    /// newest first.
    pub fn account_txs(&self, account: &Address, limit: usize) -> Result<Vec<TxId>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(ACCOUNT_TXS)?;
        let low = account_key(&account.0, 0, 0);
        let high = account_key(&account.0, u64::MAX, u32::MAX);
        let mut out = Vec::new();
        for entry in table.range::<&[u8; 44]>(&low..=&high)?.rev().take(limit) {
            let (_, id) = entry?;
            out.push(TxId(*id.value()));
        }
        Ok(out)
    }

    /// The value of `key` after block `height`, with a proof against that block's state root.
    pub fn get_with_proof(
        &self,
        key: &Key,
        height: u64,
    ) -> Result<(Option<Value>, Proof), StoreError> {
        let read = self.db.begin_read()?;
        // Read the tip from the same snapshot as the tree.
        let meta = read.open_table(META)?;
        let latest = meta_u64(&meta, META_LATEST)?;
        let oldest = meta_u64(&meta, META_OLDEST)?.unwrap_or(0);
        if latest.is_none_or(|l| height > l) {
            return Err(StoreError::UnknownHeight(height));
        }
        if height < oldest {
            return Err(StoreError::Pruned { height, oldest });
        }
        let cache = self.cache.read();
        let reader = RedbTreeReader::new(&read, Some(&cache))?;
        let (value, proof) = Sha256Jmt::new(&reader)
            .get_with_proof(key_hash(key), height)
            .map_err(tree_error)?;
        let value = match value {
            None => None,
            Some(bytes) => Some(stored_value(&bytes, "tree value")?),
        };
        Ok((value, Proof::new(proof)))
    }

    /// Where the last prepare and commit spent their time.
    pub fn last_profile(&self) -> CommitProfile {
        *self.profile.lock()
    }

    /// Sizes of the tree tables (counts the leaves: slow on a big store).
    pub fn tree_stats(&self) -> Result<TreeStats, StoreError> {
        let read = self.db.begin_read()?;
        let nodes = read.open_table(NODES)?;
        let mut leaves = 0;
        for entry in nodes.iter()? {
            let (_, bytes) = entry?;
            if matches!(entry_node(bytes.value())?, Node::Leaf(_)) {
                leaves += 1;
            }
        }
        let mut state_keys = 0;
        if let Some(latest) = meta_u64(&read.open_table(META)?, META_LATEST)? {
            RedbTreeReader::new(&read, None)?.for_each_leaf(latest, |_, _| {
                state_keys += 1;
                Ok(())
            })?;
        }
        Ok(TreeStats {
            nodes: nodes.len()?,
            values: leaves,
            stale_nodes: read.open_table(STALE_NODES)?.len()?,
            state_keys,
        })
    }

    /// Writes (or replaces) the record of batch `index`, durably. The store does not interpret
    /// the bytes: the batcher owns their format.
    pub fn put_batch(&self, index: u64, record: &[u8]) -> Result<(), StoreError> {
        self.put_record(BATCHES, index, record)
    }

    /// The record of batch `index`.
    pub fn batch_record(&self, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
        self.record(BATCHES, index)
    }

    /// The highest batch index with a record (`None` when no batch was recorded).
    pub fn latest_batch_index(&self) -> Result<Option<u64>, StoreError> {
        self.last_record_index(BATCHES)
    }

    /// Writes (or replaces) the record of bridge payout `index`, durably. The store does not
    /// interpret the bytes: the bridge's payer owns their format.
    pub fn put_payout(&self, index: u64, record: &[u8]) -> Result<(), StoreError> {
        self.put_record(PAYOUTS, index, record)
    }

    /// Removes the bridge payout records from index `from` on, durably (a full node forgets
    /// payouts a Bitcoin reorg took away).
    pub fn truncate_payouts(&self, from: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(self.config.quick_repair);
        {
            let mut table = txn.open_table(PAYOUTS)?;
            table.retain(|k, _| k < from)?;
        }
        txn.commit()?;
        Ok(())
    }

    /// Every bridge payout record, by index.
    pub fn payout_records(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(PAYOUTS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (k, v) = entry?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn put_record(
        &self,
        table: TableDefinition<u64, &[u8]>,
        index: u64,
        record: &[u8],
    ) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate);
        txn.set_quick_repair(self.config.quick_repair);
        txn.open_table(table)?.insert(index, record)?;
        txn.commit()?;
        Ok(())
    }

    fn record(
        &self,
        table: TableDefinition<u64, &[u8]>,
        index: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(table.get(index)?.map(|g| g.value().to_vec()))
    }

    fn last_record_index(
        &self,
        table: TableDefinition<u64, &[u8]>,
    ) -> Result<Option<u64>, StoreError> {
        let read = self.db.begin_read()?;
        let table = match read.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let last = table.last()?.map(|(k, _)| k.value());
        Ok(last)
    }

    /// Checks the whole file: redb's own integrity check (which repairs what it can), every
    /// header decodes and links to its parent and its hash index, every tree node decodes and
    /// every leaf holds a state entry matching its hashes, and the latest state rebuilt from
    /// scratch has the latest header's root. Slow on a big store.
    pub fn check(&mut self) -> Result<(), StoreError> {
        self.db.check_integrity()?;
        let read = self.db.begin_read()?;
        let meta = read.open_table(META)?;
        let latest = meta_u64(&meta, META_LATEST)?;
        let hashes = read.open_table(HASHES)?;
        let mut parent_hash = [0u8; 32];
        for height in latest.map(|l| 0..=l).into_iter().flatten() {
            let header = read_header(&read, height)?
                .ok_or_else(|| StoreError::Corrupt(format!("no header at height {height}")))?;
            if header.height != height || header.parent_hash != parent_hash {
                return Err(StoreError::Corrupt(format!(
                    "header at height {height} does not link to its parent"
                )));
            }
            parent_hash = header.hash();
            if hashes.get(&parent_hash)?.map(|g| g.value()) != Some(height) {
                return Err(StoreError::Corrupt(format!(
                    "hash index is wrong for height {height}"
                )));
            }
        }
        // Every node decodes, and every leaf's state entry has the leaf's key and value hashes.
        let nodes = read.open_table(NODES)?;
        for entry in nodes.iter()? {
            let (key, bytes) = entry?;
            if let (Node::Leaf(leaf), Some((k, v))) = decode_entry(bytes.value())? {
                let expected = LeafNode::new(key_hash(&k), ValueHash::with::<Sha256>(v));
                if expected.hash::<Sha256>() != leaf.hash::<Sha256>() {
                    return Err(StoreError::Corrupt(format!(
                        "leaf {} holds a state entry of another key or value",
                        hex::encode(key.value())
                    )));
                }
            }
        }
        drop((nodes, read));
        let root = fresh_state_root(&self.load_state()?)?;
        let expected = self
            .latest()
            .map_or(crate::tree::EMPTY_ROOT, |h| h.state_root);
        if root != expected {
            return Err(StoreError::Corrupt(format!(
                "state table root {} differs from the latest header's {}",
                hex::encode(root),
                hex::encode(expected)
            )));
        }
        Ok(())
    }
}

/// Writes the tree nodes of `prepared` (leaves with their state entries) and its stale index,
/// each in key order (all keys start with the new version: appends).
///
/// The stale index that pruning needs is written only when `prune_index` (the store prunes):
/// an archive store pays nothing for it. Nodes that became stale while a store did not prune
/// are therefore never pruned later (they stay, unused).
fn write_tree(
    txn: &WriteTransaction,
    prepared: &Prepared,
    prune_index: bool,
    profile: &mut CommitProfile,
) -> Result<(), StoreError> {
    let t = Instant::now();
    let mut nodes: Vec<(Vec<u8>, Vec<u8>)> =
        Vec::with_capacity(prepared.batch.node_batch.nodes().len());
    for (node_key, node) in prepared.batch.node_batch.nodes() {
        let leaf = match node {
            Node::Leaf(leaf) => {
                let hash = leaf.key_hash();
                let entry = match prepared.writes.binary_search_by(|w| w.0.cmp(&hash)) {
                    Ok(i) => prepared.writes[i]
                        .2
                        .as_ref()
                        .map(|v| (&prepared.writes[i].1, v.as_slice())),
                    Err(_) => prepared
                        .moved
                        .binary_search_by(|m| m.0.cmp(&hash))
                        .ok()
                        .map(|i| (&prepared.moved[i].1, prepared.moved[i].2.as_slice())),
                };
                Some(
                    entry
                        .ok_or_else(|| StoreError::Tree("a new leaf has no state entry".into()))?,
                )
            }
            _ => None,
        };
        nodes.push((codec_node_key(node_key), node_entry(node, leaf)?));
    }
    nodes.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    {
        let mut table = txn.open_table(NODES)?;
        for (key, node) in &nodes {
            table.insert(key.as_slice(), node.as_slice())?;
        }
    }
    if prune_index {
        let mut stale: Vec<Vec<u8>> = prepared
            .batch
            .stale_node_index_batch
            .iter()
            .map(|s| {
                let mut key = s.stale_since_version.to_be_bytes().to_vec();
                key.extend_from_slice(&codec_node_key(&s.node_key));
                key
            })
            .collect();
        stale.sort_unstable();
        let mut stale_nodes = txn.open_table(STALE_NODES)?;
        for key in &stale {
            stale_nodes.insert(key.as_slice(), ())?;
        }
    }
    profile.nodes = t.elapsed();
    Ok(())
}

/// Deletes every tree node that no tree at `oldest` or later uses.
fn prune(txn: &WriteTransaction, oldest: u64) -> Result<(), StoreError> {
    let bound = oldest.saturating_add(1).to_be_bytes();
    let mut stale_nodes = txn.open_table(STALE_NODES)?;
    let mut done = Vec::new();
    for entry in stale_nodes.range::<&[u8]>(..bound.as_slice())? {
        let (k, _) = entry?;
        done.push(k.value().to_vec());
    }
    // In node key order (the stale index is in order of staleness).
    let mut node_keys: Vec<&[u8]> = Vec::with_capacity(done.len());
    for key in &done {
        node_keys.push(
            key.get(8..)
                .filter(|k| k.len() >= 9)
                .ok_or_else(|| StoreError::Corrupt("stale node index key too short".into()))?,
        );
    }
    node_keys.sort_unstable();
    {
        let mut nodes = txn.open_table(NODES)?;
        for key in node_keys {
            nodes.remove(key)?;
        }
    }
    for key in &done {
        stale_nodes.remove(key.as_slice())?;
    }
    Ok(())
}

fn meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
) -> Result<Option<u64>, StoreError> {
    match meta.get(name)? {
        None => Ok(None),
        Some(bytes) => be_u64(bytes.value(), 0)
            .filter(|_| bytes.value().len() == 8)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("meta {name} is not a u64"))),
    }
}

fn read_header(read: &ReadTransaction, height: u64) -> Result<Option<BlockHeader>, StoreError> {
    let headers = read.open_table(HEADERS)?;
    match headers.get(height)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(decode(bytes.value(), "header")?)),
    }
}

fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    borsh::to_vec(value).map_err(|e| StoreError::Encoding(e.to_string()))
}

fn decode<T: BorshDeserialize>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    borsh::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_records_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, StoreConfig::default()).expect("open");
            assert_eq!(store.latest_batch_index().expect("latest"), None);
            assert_eq!(store.batch_record(0).expect("get"), None);
            store.put_batch(0, b"zero").expect("put");
            store.put_batch(2, b"two").expect("put");
            store.put_batch(0, b"zero again").expect("replace");
        }
        let store = Store::open(&path, StoreConfig::default()).expect("reopen");
        assert_eq!(store.latest_batch_index().expect("latest"), Some(2));
        assert_eq!(
            store.batch_record(0).expect("get").as_deref(),
            Some(&b"zero again"[..])
        );
        assert_eq!(store.batch_record(1).expect("get"), None);
        assert_eq!(
            store.batch_record(2).expect("get").as_deref(),
            Some(&b"two"[..])
        );
    }

    #[test]
    fn payout_records_are_apart_from_batch_records_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.redb");
        {
            let store = Store::open(&path, StoreConfig::default()).expect("open");
            assert!(store.payout_records().expect("list").is_empty());
            store.put_payout(1, b"one").expect("put");
            store.put_payout(0, b"zero").expect("put");
            store.put_payout(1, b"one again").expect("replace");
            store.put_batch(0, b"batch").expect("put");
        }
        let store = Store::open(&path, StoreConfig::default()).expect("reopen");
        assert_eq!(
            store.payout_records().expect("list"),
            vec![(0, b"zero".to_vec()), (1, b"one again".to_vec())]
        );
        store.truncate_payouts(1).expect("truncate");
        assert_eq!(
            store.payout_records().expect("list"),
            vec![(0, b"zero".to_vec())]
        );
        assert_eq!(
            store.batch_record(0).expect("get").as_deref(),
            Some(&b"batch"[..])
        );
    }

    #[test]
    fn store_and_prepared_can_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Store>();
        send::<Prepared>();
    }
}
