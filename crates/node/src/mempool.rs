//! The mempool: signed transactions waiting for a block, per-sender nonce queues under a global
//! fee priority, with bounded memory.
//!
//! # Admission
//! Verification is split from insertion so that the expensive part runs outside any lock:
//! [`Mempool::verify`] (or [`Mempool::verify_raw`] for encoded bytes) checks sizes, decodes
//! and verifies BIP-340 signatures in parallel on the current rayon pool and yields
//! [`VerifiedTx`]s (the only way to make one); [`Mempool::insert`] then applies, in this
//! order, each failing with its own [`MempoolError`] and changing nothing:
//! 1. chain id equal to the configured one;
//! 2. encoded size ≤ [`MempoolConfig::max_tx_bytes`], and not a bridge deposit (the block
//!    builder includes those from Bitcoin; [`crate::bridge`]);
//! 3. fee ≥ [`MempoolConfig::min_fee`];
//! 4. not already pooled (same id);
//! 5. nonce ≥ the sender's committed nonce (a lower one is a replay) and below committed +
//!    [`MempoolConfig::nonce_window`]; a nonce above the sender's contiguous run is *held*;
//! 6. same sender and nonce as a pooled transaction: a replacement, accepted only if its fee
//!    is at least the old fee plus [`MempoolConfig::replace_bump_percent`] percent (rounded
//!    up, and at least one satoshi more); otherwise the sender's count must stay within
//!    [`MempoolConfig::max_per_sender`];
//! 7. if [`MempoolConfig::check_fee_balance`]: the sum of the fees of the sender's pooled
//!    transactions (with this one, without the one it replaces) ≤ its BTC balance;
//! 8. the global byte bound [`MempoolConfig::max_bytes`]: if the pool would exceed it,
//!    lower-priority transactions are evicted (below); if not enough of them exist the
//!    transaction is refused with [`MempoolError::Full`].
//!
//! Before the nonce check, `insert` brings the sender up to date with the `state` it is given
//! (its transactions below the committed nonce are dropped as included); this only ever
//! moves a sender forward.
//!
//! # Ready and held
//! A sender's transactions with nonces `committed, committed+1, …` without a gap are *ready*;
//! those above a gap are *held*: they are kept but never selected until the gap fills.
//!
//! # Priority
//! - Block selection ([`Mempool::select`]) repeatedly takes, among each sender's next ready
//!   transaction, the one with the highest fee (absolute, in satoshis; ties: earlier arrival
//!   first; a replacement arrives when it replaces). A sender's transactions therefore always
//!   leave in nonce order, and a high fee behind a low fee waits for it (no package fees).
//! - Eviction takes, among each sender's *last* (highest-nonce) transaction, the one of least
//!   priority: held before ready, then lowest fee, then latest arrival. Evicting only last
//!   transactions never leaves a gap below a kept transaction. A newcomer may only evict
//!   transactions strictly below its own (class, fee), and never its own sender's
//!   transactions at or below its nonce.
//!
//! # Commits
//! [`Mempool::on_committed`] (every sender) or [`Mempool::on_committed_senders`] (those a
//! block touched) drop the transactions below each sender's committed nonce, included or
//! stale, and promote held transactions whose gap is now closed. A transaction the block
//! found `Invalid` does not advance its sender's nonce; the block builder removes it with
//! [`Mempool::remove`] (the sender's later transactions become held).
//!
//! # Invariants (checked by [`Mempool::check_invariants`])
//! - [`Mempool::bytes`] is the sum of the encoded sizes of the pooled transactions and never
//!   exceeds `max_bytes`; [`Mempool::len`] is their count; every id maps to its transaction.
//! - Every pooled nonce is ≥ its sender's committed nonce and below committed + window; no
//!   sender holds more than `max_per_sender` transactions.
//! - The ready run of each sender is exactly the contiguous nonces from its committed nonce;
//!   the selection index holds each sender's ready head and the eviction index each
//!   sender's last transaction, with their current keys.
//! - Costs: insert, replace and remove are O(log n) (plus the evicted transactions and the
//!   walk of a sender's run when a gap fills); selecting k transactions is O(k log n).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use parabit_modules::{Call, SignedTx};
use parabit_primitives::{
    verify_one, Address, Amount, DecodeError, SignatureError, TxId, MAX_TX_SIZE,
};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// What the mempool needs to know of the committed state.
pub trait AccountState {
    /// The account's committed nonce: the nonce its next transaction must carry.
    fn nonce(&self, who: &Address) -> u64;
    /// The account's BTC balance in satoshis, from which fees are paid.
    fn fee_balance(&self, who: &Address) -> Amount;
}

impl<T: AccountState + ?Sized> AccountState for &T {
    fn nonce(&self, who: &Address) -> u64 {
        (**self).nonce(who)
    }
    fn fee_balance(&self, who: &Address) -> Amount {
        (**self).fee_balance(who)
    }
}

/// The mempool's limits and rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolConfig {
    /// Transactions for another chain are refused.
    pub chain_id: u64,
    /// The bound on the sum of the pooled transactions' encoded sizes (default 256 MiB).
    pub max_bytes: usize,
    /// The largest encoded transaction admitted (default [`MAX_TX_SIZE`], which is also the
    /// most that decoding accepts).
    pub max_tx_bytes: usize,
    /// The most transactions one sender may have pooled (default 256).
    pub max_per_sender: usize,
    /// Admitted nonces are `committed .. committed + nonce_window` (default 1024).
    pub nonce_window: u64,
    /// A replacement must pay at least this many percent more than the fee it replaces
    /// (rounded up, and always at least one satoshi more; default 10).
    pub replace_bump_percent: u32,
    /// The lowest fee admitted, in satoshis (default 0).
    pub min_fee: Amount,
    /// Refuse a transaction whose sender cannot pay the fees of all its pooled transactions
    /// from its BTC balance (default true).
    pub check_fee_balance: bool,
}

impl MempoolConfig {
    /// The default limits for `chain_id`.
    pub fn new(chain_id: u64) -> MempoolConfig {
        MempoolConfig {
            chain_id,
            max_bytes: 256 * 1024 * 1024,
            max_tx_bytes: MAX_TX_SIZE,
            max_per_sender: 256,
            nonce_window: 1024,
            replace_bump_percent: 10,
            min_fee: 0,
            check_fee_balance: true,
        }
    }

    /// The least fee that replaces a pooled transaction paying `old_fee`:
    /// `old_fee + max(1, ceil(old_fee × replace_bump_percent / 100))`, saturating.
    pub fn replacement_fee(&self, old_fee: Amount) -> Amount {
        let bump = old_fee
            .saturating_mul(Amount::from(self.replace_bump_percent))
            .div_ceil(100)
            .max(1);
        old_fee.saturating_add(bump)
    }
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    /// The bytes are not a signed transaction.
    #[error("cannot decode transaction: {0}")]
    Decode(#[from] DecodeError),
    /// The encoded transaction is over the size limit.
    #[error("transaction too large: {size} bytes > {max}")]
    TooLarge {
        /// Its encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The signature does not verify.
    #[error("bad signature: {0}")]
    Signature(#[from] SignatureError),
    /// The transaction is for another chain.
    #[error("wrong chain id: {got} != {expected}")]
    WrongChainId {
        /// The transaction's chain id.
        got: u64,
        /// This chain's.
        expected: u64,
    },
    /// The fee is below the configured minimum.
    #[error("fee too low: {fee} < minimum {min}")]
    FeeBelowMinimum {
        /// The fee offered.
        fee: Amount,
        /// The minimum.
        min: Amount,
    },
    /// The same transaction is already pooled.
    #[error("transaction {0} is already in the mempool")]
    AlreadyKnown(TxId),
    /// The nonce was already used (a replay).
    #[error("nonce too low: {nonce} < {committed}")]
    NonceTooLow {
        /// The transaction's nonce.
        nonce: u64,
        /// The sender's committed nonce.
        committed: u64,
    },
    /// The nonce is too far beyond the committed one.
    #[error("nonce too high: {nonce} >= {limit} (committed nonce {committed} + window)")]
    NonceTooHigh {
        /// The transaction's nonce.
        nonce: u64,
        /// The sender's committed nonce.
        committed: u64,
        /// The first nonce outside the window.
        limit: u64,
    },
    /// Same sender and nonce as a pooled transaction, without enough extra fee.
    #[error("fee too low to replace: {fee} needs at least {required}")]
    ReplacementUnderpriced {
        /// The fee offered.
        fee: Amount,
        /// The least fee that replaces the pooled transaction.
        required: Amount,
    },
    /// The sender already has the most transactions allowed.
    #[error("too many pending transactions from this sender: limit {limit}")]
    SenderLimit {
        /// The per-sender limit.
        limit: usize,
    },
    /// The sender's balance cannot pay the fees of its pooled transactions and this one.
    #[error("cannot pay fees: {need} sats needed for pending transactions, balance {have}")]
    CannotPayFee {
        /// The sum of the fees (saturating).
        need: Amount,
        /// The sender's BTC balance.
        have: Amount,
    },
    /// A bridge deposit: only the block builder includes those, from Bitcoin.
    #[error("bridge deposits are not submitted: the sequencer includes them from Bitcoin")]
    DepositSubmitted,
    /// No room, and nothing of lower priority to evict.
    #[error("mempool full: no room for {size} bytes at fee {fee}")]
    Full {
        /// The transaction's encoded size.
        size: usize,
        /// Its fee.
        fee: Amount,
    },
}

/// A transaction whose size and signature were checked, with its id and encoded size.
/// Made only by [`Mempool::verify`] and [`Mempool::verify_raw`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTx {
    tx: SignedTx,
    id: TxId,
    size: usize,
}

impl VerifiedTx {
    /// The transaction id.
    pub fn id(&self) -> TxId {
        self.id
    }
    /// The signed transaction.
    pub fn tx(&self) -> &SignedTx {
        &self.tx
    }
    /// Its encoded size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
    /// The signed transaction, by value.
    pub fn into_inner(self) -> SignedTx {
        self.tx
    }
}

/// Held transactions are evicted before ready ones.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Class {
    Held,
    Ready,
}

/// Eviction order: ascending keys are evicted first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct EvictKey {
    class: Class,
    fee: Amount,
    newer_first: Reverse<u64>,
}

/// Selection order: ascending keys are selected first.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
struct SelectKey {
    fee: Reverse<Amount>,
    seq: u64,
}

/// A pooled transaction.
#[derive(Debug)]
struct Entry {
    tx: SignedTx,
    id: TxId,
    size: usize,
    /// Arrival order, unique across the pool.
    seq: u64,
}

impl Entry {
    fn fee(&self) -> Amount {
        self.tx.tx.fee
    }
    fn select_key(&self) -> SelectKey {
        SelectKey {
            fee: Reverse(self.fee()),
            seq: self.seq,
        }
    }
}

/// One sender's pooled transactions.
#[derive(Debug)]
struct SenderQueue {
    txs: BTreeMap<u64, Entry>,
    /// The committed nonce last seen; every key of `txs` is ≥ it.
    committed: u64,
    /// The first nonce ≥ `committed` missing from `txs`: `committed..ready_end` is ready.
    ready_end: u64,
    /// Sum of the fees of `txs` (wrapping; exact whenever the fee balance check is on).
    fee_sum: Amount,
    /// This sender's key in the selection index (its ready head), if any.
    head: Option<SelectKey>,
    /// This sender's key in the eviction index (its last transaction).
    tail: Option<EvictKey>,
}

impl SenderQueue {
    fn new(committed: u64) -> SenderQueue {
        SenderQueue {
            txs: BTreeMap::new(),
            committed,
            ready_end: committed,
            fee_sum: 0,
            head: None,
            tail: None,
        }
    }

    fn class_of(&self, nonce: u64) -> Class {
        if nonce < self.ready_end {
            Class::Ready
        } else {
            Class::Held
        }
    }

    fn evict_key(&self, nonce: u64, e: &Entry) -> EvictKey {
        EvictKey {
            class: self.class_of(nonce),
            fee: e.fee(),
            newer_first: Reverse(e.seq),
        }
    }

    /// Extends the ready run over the nonces present after it.
    fn extend_ready(&mut self) {
        while self.txs.contains_key(&self.ready_end) {
            match self.ready_end.checked_add(1) {
                Some(n) => self.ready_end = n,
                None => break,
            }
        }
    }
}

/// The pool of pending transactions (see the module doc for its rules).
#[derive(Debug)]
pub struct Mempool {
    config: MempoolConfig,
    senders: HashMap<Address, SenderQueue>,
    by_id: HashMap<TxId, (Address, u64)>,
    /// Each sender's ready head, best first.
    heads: BTreeMap<SelectKey, Address>,
    /// Each sender's last transaction, first to evict first.
    tails: BTreeMap<EvictKey, Address>,
    bytes: usize,
    next_seq: u64,
}

impl Mempool {
    /// An empty pool with these rules.
    pub fn new(config: MempoolConfig) -> Mempool {
        Mempool {
            config,
            senders: HashMap::new(),
            by_id: HashMap::new(),
            heads: BTreeMap::new(),
            tails: BTreeMap::new(),
            bytes: 0,
            next_seq: 0,
        }
    }

    /// The rules in force.
    pub fn config(&self) -> &MempoolConfig {
        &self.config
    }

    /// Checks the size (≤ [`MAX_TX_SIZE`]) and signature of each transaction in parallel on
    /// the current rayon pool; one result per transaction, in order. Needs no pool (and so
    /// no lock on one).
    pub fn verify(txs: Vec<SignedTx>) -> Vec<Result<VerifiedTx, MempoolError>> {
        txs.into_par_iter()
            .with_min_len(16)
            .map(verify_signed)
            .collect()
    }

    /// Decodes (refusing over [`MAX_TX_SIZE`] bytes before parsing) and verifies encoded
    /// transactions in parallel; one result per input, in order.
    pub fn verify_raw<B: AsRef<[u8]> + Sync>(raw: &[B]) -> Vec<Result<VerifiedTx, MempoolError>> {
        raw.par_iter()
            .with_min_len(16)
            .map(|b| verify_bytes(b.as_ref()))
            .collect()
    }

    /// Decodes one encoded transaction without checking its signature.
    pub fn decode(bytes: &[u8]) -> Result<SignedTx, MempoolError> {
        Ok(SignedTx::decode(bytes)?)
    }

    /// Admits a verified transaction (the checks of the module doc, in order); on success
    /// returns its id. A refusal changes nothing (beyond bringing the sender up to date with
    /// `state`).
    pub fn insert(
        &mut self,
        vtx: VerifiedTx,
        state: &impl AccountState,
    ) -> Result<TxId, MempoolError> {
        let VerifiedTx { tx, id, size } = vtx;
        let (sender, nonce, fee) = (tx.tx.sender, tx.tx.nonce, tx.tx.fee);
        let cfg = &self.config;
        if tx.tx.chain_id != cfg.chain_id {
            return Err(MempoolError::WrongChainId {
                got: tx.tx.chain_id,
                expected: cfg.chain_id,
            });
        }
        if size > cfg.max_tx_bytes {
            return Err(MempoolError::TooLarge {
                size,
                max: cfg.max_tx_bytes,
            });
        }
        if matches!(&tx.tx.call, Call::Bridge(m) if parabit_modules::bridge::is_deposit(m)) {
            return Err(MempoolError::DepositSubmitted);
        }
        if fee < cfg.min_fee {
            return Err(MempoolError::FeeBelowMinimum {
                fee,
                min: cfg.min_fee,
            });
        }
        if self.by_id.contains_key(&id) {
            return Err(MempoolError::AlreadyKnown(id));
        }
        let state_nonce = state.nonce(&sender);
        self.advance_sender(&sender, state_nonce);

        let cfg = &self.config;
        let queue = self.senders.get(&sender);
        let committed = queue.map_or(state_nonce, |q| q.committed);
        let ready_end = queue.map_or(committed, |q| q.ready_end);
        if nonce < committed {
            return Err(MempoolError::NonceTooLow { nonce, committed });
        }
        let limit = committed.saturating_add(cfg.nonce_window);
        if nonce >= limit {
            return Err(MempoolError::NonceTooHigh {
                nonce,
                committed,
                limit,
            });
        }
        let replaced = queue.and_then(|q| q.txs.get(&nonce));
        let is_replacement = replaced.is_some();
        let (replaced_fee, replaced_size) = replaced.map_or((0, 0), |e| (e.fee(), e.size));
        if let Some(old) = replaced {
            let required = cfg.replacement_fee(old.fee());
            if fee < required || fee <= old.fee() {
                return Err(MempoolError::ReplacementUnderpriced { fee, required });
            }
        } else if queue.map_or(0, |q| q.txs.len()) >= cfg.max_per_sender {
            return Err(MempoolError::SenderLimit {
                limit: cfg.max_per_sender,
            });
        }
        if cfg.check_fee_balance {
            let have = state.fee_balance(&sender);
            let others = queue.map_or(0, |q| q.fee_sum).wrapping_sub(replaced_fee);
            match others.checked_add(fee) {
                Some(need) if need <= have => {}
                need => {
                    return Err(MempoolError::CannotPayFee {
                        need: need.unwrap_or(Amount::MAX),
                        have,
                    })
                }
            }
        }
        let after = self.bytes - replaced_size + size;
        let evict = if after > cfg.max_bytes {
            let class = if nonce <= ready_end {
                Class::Ready
            } else {
                Class::Held
            };
            self.plan_evictions(after - cfg.max_bytes, (class, fee), &sender, nonce)
                .ok_or(MempoolError::Full { size, fee })?
        } else {
            Vec::new()
        };

        // Every check passed: from here on nothing fails.
        for (addr, n) in evict {
            self.remove_at(&addr, n);
        }
        if is_replacement {
            self.remove_at(&sender, nonce);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let q = self
            .senders
            .entry(sender)
            .or_insert_with(|| SenderQueue::new(committed));
        q.txs.insert(nonce, Entry { tx, id, size, seq });
        q.fee_sum = q.fee_sum.wrapping_add(fee);
        q.extend_ready();
        self.by_id.insert(id, (sender, nonce));
        self.bytes += size;
        self.reindex(&sender);
        Ok(id)
    }

    /// Admits many verified transactions in order (e.g. [`Mempool::verify`]'s output), one
    /// result per input; an input that is already an error is passed through.
    pub fn insert_all(
        &mut self,
        verified: impl IntoIterator<Item = Result<VerifiedTx, MempoolError>>,
        state: &impl AccountState,
    ) -> Vec<Result<TxId, MempoolError>> {
        verified
            .into_iter()
            .map(|v| v.and_then(|vtx| self.insert(vtx, state)))
            .collect()
    }

    /// Up to `max_txs` ready transactions for a block, best fee first across senders, each
    /// sender's in nonce order starting at its nonce in `state` with no gap.
    pub fn select(&self, max_txs: usize, state: &impl AccountState) -> Vec<SignedTx> {
        let mut out = Vec::with_capacity(max_txs.min(self.len()));
        let mut heads = self.heads.iter().peekable();
        let mut next: BinaryHeap<Reverse<(SelectKey, Address, u64)>> = BinaryHeap::new();
        while out.len() < max_txs {
            let from_index = match (heads.peek(), next.peek()) {
                (Some((k, _)), Some(Reverse((h, _, _)))) => *k < h,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if from_index {
                let Some((_, addr)) = heads.next() else { break };
                let Some(q) = self.senders.get(addr) else {
                    continue;
                };
                // Normally the state's nonce is `q.committed`, and the head's key is the
                // index key; a pool behind the state starts the sender at the state's nonce.
                let n = state.nonce(addr);
                if let Some(e) = q.txs.get(&n) {
                    next.push(Reverse((e.select_key(), *addr, n)));
                }
            } else {
                let Some(Reverse((_, addr, n))) = next.pop() else {
                    break;
                };
                let Some(q) = self.senders.get(&addr) else {
                    continue;
                };
                if let Some(e) = q.txs.get(&n) {
                    out.push(e.tx.clone());
                }
                if let Some(succ) = n.checked_add(1) {
                    if let Some(e) = q.txs.get(&succ) {
                        next.push(Reverse((e.select_key(), addr, succ)));
                    }
                }
            }
        }
        out
    }

    /// After a block: brings every sender up to date with `state` (drops transactions below
    /// its committed nonce, promotes held ones); returns the ids dropped. O(senders); prefer
    /// [`Mempool::on_committed_senders`] with the block's senders.
    pub fn on_committed(&mut self, state: &impl AccountState) -> Vec<TxId> {
        let senders: Vec<Address> = self.senders.keys().copied().collect();
        self.on_committed_senders(&senders, state)
    }

    /// After a block: brings the given senders up to date with `state`; returns the ids
    /// dropped.
    pub fn on_committed_senders<'a>(
        &mut self,
        senders: impl IntoIterator<Item = &'a Address>,
        state: &impl AccountState,
    ) -> Vec<TxId> {
        let mut dropped = Vec::new();
        for addr in senders {
            let n = state.nonce(addr);
            dropped.extend(self.advance_sender(addr, n));
        }
        dropped
    }

    /// Removes one transaction (e.g. one a block found invalid); the sender's later ones stay,
    /// held until the gap fills.
    pub fn remove(&mut self, id: &TxId) -> Option<SignedTx> {
        let (addr, nonce) = *self.by_id.get(id)?;
        self.remove_at(&addr, nonce).map(|e| e.tx)
    }

    /// The number of pooled transactions, ready and held.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the pool is empty.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The sum of the pooled transactions' encoded sizes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The number of ready transactions (O(senders)).
    pub fn ready_len(&self) -> usize {
        self.senders
            .values()
            .map(|q| usize::try_from(q.ready_end - q.committed).unwrap_or(usize::MAX))
            .sum()
    }

    /// The number of senders with pooled transactions.
    pub fn senders_len(&self) -> usize {
        self.senders.len()
    }

    /// A pooled transaction by id.
    pub fn get(&self, id: &TxId) -> Option<&SignedTx> {
        let (addr, nonce) = self.by_id.get(id)?;
        Some(&self.senders.get(addr)?.txs.get(nonce)?.tx)
    }

    /// Whether a transaction is pooled.
    pub fn contains(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether a pooled transaction is ready (`Some(true)`), held (`Some(false)`) or absent.
    pub fn is_ready(&self, id: &TxId) -> Option<bool> {
        let (addr, nonce) = self.by_id.get(id)?;
        Some(self.senders.get(addr)?.class_of(*nonce) == Class::Ready)
    }

    /// A sender's pooled transactions in nonce order, ready then held.
    pub fn pending_of(&self, who: &Address) -> impl Iterator<Item = &SignedTx> + '_ {
        self.senders
            .get(who)
            .into_iter()
            .flat_map(|q| q.txs.values().map(|e| &e.tx))
    }

    /// The nonce a sender's next transaction should carry to be ready: the end of its ready
    /// run, or `None` if it has nothing pooled (then it is its committed nonce).
    pub fn pending_nonce(&self, who: &Address) -> Option<u64> {
        self.senders.get(who).map(|q| q.ready_end)
    }

    /// Every pooled transaction: senders in no particular order, each in nonce order.
    pub fn iter(&self) -> impl Iterator<Item = &SignedTx> + '_ {
        self.senders
            .values()
            .flat_map(|q| q.txs.values().map(|e| &e.tx))
    }

    /// Checks every invariant of the module doc (O(n); for tests and debugging).
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut bytes = 0usize;
        let mut count = 0usize;
        for (addr, q) in &self.senders {
            if q.txs.is_empty() {
                return Err(format!("sender {addr} kept with no transactions"));
            }
            if q.txs.len() > self.config.max_per_sender {
                return Err(format!("sender {addr} holds {} > limit", q.txs.len()));
            }
            let mut ready_end = q.committed;
            while q.txs.contains_key(&ready_end) {
                match ready_end.checked_add(1) {
                    Some(n) => ready_end = n,
                    None => break,
                }
            }
            if ready_end != q.ready_end {
                return Err(format!(
                    "sender {addr}: ready_end {} but the run ends at {ready_end}",
                    q.ready_end
                ));
            }
            let mut fee_sum: Amount = 0;
            for (&n, e) in &q.txs {
                if n < q.committed || n - q.committed >= self.config.nonce_window {
                    return Err(format!("sender {addr}: nonce {n} outside window"));
                }
                if e.tx.tx.nonce != n || e.tx.tx.sender != *addr {
                    return Err(format!("sender {addr}: entry at {n} is misfiled"));
                }
                if self.by_id.get(&e.id) != Some(&(*addr, n)) {
                    return Err(format!("id {} not indexed", e.id));
                }
                if e.size != e.tx.encode().len() || e.id != e.tx.id() {
                    return Err(format!("id {}: wrong size or id", e.id));
                }
                bytes += e.size;
                count += 1;
                fee_sum = fee_sum.wrapping_add(e.fee());
            }
            if fee_sum != q.fee_sum {
                return Err(format!("sender {addr}: fee sum {} != {fee_sum}", q.fee_sum));
            }
            let head = q.txs.get(&q.committed).map(Entry::select_key);
            if head != q.head || head.is_some_and(|k| self.heads.get(&k) != Some(addr)) {
                return Err(format!("sender {addr}: selection index out of date"));
            }
            let tail = q.txs.last_key_value().map(|(&n, e)| q.evict_key(n, e));
            if tail != q.tail || tail.is_some_and(|k| self.tails.get(&k) != Some(addr)) {
                return Err(format!("sender {addr}: eviction index out of date"));
            }
        }
        if count != self.by_id.len() {
            return Err(format!("{} ids indexed for {count} txs", self.by_id.len()));
        }
        if self.heads.len() != self.senders.values().filter(|q| q.head.is_some()).count() {
            return Err("stale entries in the selection index".into());
        }
        if self.tails.len() != self.senders.len() {
            return Err("stale entries in the eviction index".into());
        }
        if bytes != self.bytes {
            return Err(format!("bytes {} != sum of sizes {bytes}", self.bytes));
        }
        if self.bytes > self.config.max_bytes {
            return Err(format!("bytes {} over the bound", self.bytes));
        }
        Ok(())
    }

    /// Moves a sender's committed nonce forward to `committed` (never back): drops its
    /// transactions below it and extends its ready run. Returns the dropped ids.
    fn advance_sender(&mut self, sender: &Address, committed: u64) -> Vec<TxId> {
        let Some(q) = self.senders.get_mut(sender) else {
            return Vec::new();
        };
        if committed <= q.committed {
            return Vec::new();
        }
        let keep = q.txs.split_off(&committed);
        let gone = std::mem::replace(&mut q.txs, keep);
        let mut dropped = Vec::with_capacity(gone.len());
        for e in gone.into_values() {
            q.fee_sum = q.fee_sum.wrapping_sub(e.fee());
            self.by_id.remove(&e.id);
            self.bytes -= e.size;
            dropped.push(e.id);
        }
        q.committed = committed;
        q.ready_end = q.ready_end.max(committed);
        q.extend_ready();
        self.reindex(sender);
        dropped
    }

    /// Removes the transaction at (sender, nonce); later ones of the sender become held.
    fn remove_at(&mut self, sender: &Address, nonce: u64) -> Option<Entry> {
        let q = self.senders.get_mut(sender)?;
        let e = q.txs.remove(&nonce)?;
        q.fee_sum = q.fee_sum.wrapping_sub(e.fee());
        if nonce < q.ready_end {
            q.ready_end = nonce;
        }
        self.by_id.remove(&e.id);
        self.bytes -= e.size;
        self.reindex(sender);
        Some(e)
    }

    /// Refreshes a sender's entries in the selection and eviction indexes; forgets a sender
    /// with nothing pooled.
    fn reindex(&mut self, sender: &Address) {
        let Some(q) = self.senders.get_mut(sender) else {
            return;
        };
        if let Some(k) = q.head.take() {
            self.heads.remove(&k);
        }
        if let Some(k) = q.tail.take() {
            self.tails.remove(&k);
        }
        if q.txs.is_empty() {
            self.senders.remove(sender);
            return;
        }
        if let Some(e) = q.txs.get(&q.committed) {
            let k = e.select_key();
            q.head = Some(k);
            self.heads.insert(k, *sender);
        }
        if let Some((&n, e)) = q.txs.last_key_value() {
            let k = q.evict_key(n, e);
            q.tail = Some(k);
            self.tails.insert(k, *sender);
        }
    }

    /// The transactions to evict, in order, to free `need` bytes for a newcomer of
    /// `incoming` (class, fee) from `sender` at `nonce`; `None` if not enough of them are of
    /// strictly lower priority. Simulates repeatedly evicting the lowest current last
    /// transaction without changing anything.
    fn plan_evictions(
        &self,
        need: usize,
        incoming: (Class, Amount),
        sender: &Address,
        nonce: u64,
    ) -> Option<Vec<(Address, u64)>> {
        let mut freed = 0usize;
        let mut plan = Vec::new();
        let mut tails = self.tails.iter().peekable();
        // The transaction before each evicted one becomes its sender's last.
        let mut exposed: BinaryHeap<Reverse<(EvictKey, Address, u64)>> = BinaryHeap::new();
        while freed < need {
            let from_index = match (tails.peek(), exposed.peek()) {
                (Some((k, _)), Some(Reverse((h, _, _)))) => *k < h,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => return None,
            };
            let (key, addr, n) = if from_index {
                let (k, a) = tails.next()?;
                let (&n, _) = self.senders.get(a)?.txs.last_key_value()?;
                (*k, *a, n)
            } else {
                let Reverse(c) = exposed.pop()?;
                c
            };
            if (key.class, key.fee) >= incoming {
                // Every remaining candidate ranks at least as high.
                return None;
            }
            if addr == *sender && n <= nonce {
                // The newcomer's own earlier nonces (and the one it replaces) stay.
                continue;
            }
            let q = self.senders.get(&addr)?;
            freed += q.txs.get(&n)?.size;
            plan.push((addr, n));
            if let Some((&pn, pe)) = q.txs.range(..n).next_back() {
                exposed.push(Reverse((q.evict_key(pn, pe), addr, pn)));
            }
        }
        Some(plan)
    }
}

/// Size and signature checks of one transaction.
fn verify_signed(tx: SignedTx) -> Result<VerifiedTx, MempoolError> {
    let bytes = tx.encode();
    if bytes.len() > MAX_TX_SIZE {
        return Err(MempoolError::TooLarge {
            size: bytes.len(),
            max: MAX_TX_SIZE,
        });
    }
    verify_one(&tx)?;
    Ok(VerifiedTx {
        id: TxId(Sha256::digest(&bytes).into()),
        size: bytes.len(),
        tx,
    })
}

/// Decoding and signature check of one encoded transaction. Decoding is canonical, so the
/// input bytes are the transaction's encoding and their hash its id.
fn verify_bytes(bytes: &[u8]) -> Result<VerifiedTx, MempoolError> {
    let tx = SignedTx::decode(bytes)?;
    verify_one(&tx)?;
    Ok(VerifiedTx {
        id: TxId(Sha256::digest(bytes).into()),
        size: bytes.len(),
        tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacement_fee_rounds_up_and_bumps_at_least_one() {
        let cfg = MempoolConfig::new(1);
        assert_eq!(cfg.replacement_fee(100), 110);
        assert_eq!(cfg.replacement_fee(101), 112);
        assert_eq!(cfg.replacement_fee(0), 1);
        assert_eq!(cfg.replacement_fee(5), 6);
        assert_eq!(cfg.replacement_fee(Amount::MAX), Amount::MAX);
        let zero = MempoolConfig {
            replace_bump_percent: 0,
            ..cfg
        };
        assert_eq!(zero.replacement_fee(100), 101);
    }

    #[test]
    fn eviction_order_is_held_then_fee_then_newest() {
        let held = EvictKey {
            class: Class::Held,
            fee: 1_000,
            newer_first: Reverse(1),
        };
        let ready_low = EvictKey {
            class: Class::Ready,
            fee: 1,
            newer_first: Reverse(1),
        };
        let ready_low_newer = EvictKey {
            newer_first: Reverse(2),
            ..ready_low
        };
        assert!(held < ready_low);
        assert!(ready_low_newer < ready_low);
        let best = SelectKey {
            fee: Reverse(10),
            seq: 5,
        };
        let earlier_same_fee = SelectKey {
            fee: Reverse(10),
            seq: 4,
        };
        let lower = SelectKey {
            fee: Reverse(9),
            seq: 0,
        };
        assert!(earlier_same_fee < best && best < lower);
    }
}
