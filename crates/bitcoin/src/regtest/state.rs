//! In-memory state of the embedded regtest chain: the active chain of blocks, the UTXO set with
//! undo data, a transaction index, stale blocks, and the mempool; the consensus and mempool
//! rules that change them.
//!
//! Every change is two-phase: `validate_*`/`check_*` computes the change without touching
//! anything (so the caller can journal it first), then `apply_*` makes it. Hence a rejected block
//! or transaction changes nothing.
//!
//! Invariants:
//! - `blocks[h]` is the active chain's block at height `h`, `blocks[0]` regtest's genesis;
//!   `undo[h]` holds the coins block `h` spent, so disconnecting restores the UTXO set exactly.
//! - `utxos` is exactly the unspent outputs of the active chain (genesis' coinbase and
//!   provably unspendable outputs excluded, as in Bitcoin Core).
//! - Every mempool transaction is valid on top of the tip together with the mempool
//!   transactions before it (`seq` order); no two spend the same outpoint (`spent_by`).
//! - Blocks: version ≥ 2 with BIP 34 height, proof of work at regtest's fixed target, time above
//!   the median of the last 11, merkle root, witness commitment, weight, one coinbase paying at
//!   most subsidy (regtest halving every 150 blocks) plus fees, and every transaction valid.
//! - Transactions: context-free checks, inputs unspent, coinbase maturity 100, inputs ≥ outputs,
//!   absolute and relative (BIP 68) lock times, and scripts by libbitcoinconsensus.

use std::collections::{BTreeMap, HashMap, HashSet};

use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::blockdata::constants::{genesis_block, COINBASE_MATURITY};
use bitcoin::blockdata::script::{Builder, PushBytesBuf};
use bitcoin::hashes::Hash;
use bitcoin::transaction::Version;
use bitcoin::{
    absolute, Amount, Block, BlockHash, CompactTarget, FeeRate, Network, OutPoint, Script,
    ScriptBuf, Sequence, Transaction, TxIn, TxMerkleNode, TxOut, Txid, Weight, Witness,
};

use crate::verify::{
    check_transaction, verify_scripts, ScriptError, TxCheckError, MAX_STANDARD_TX_WEIGHT,
};
use crate::wallet::fee_for;

/// Regtest blocks halve their subsidy every 150 blocks.
pub const REGTEST_HALVING_INTERVAL: u32 = 150;

/// Weight kept free for the coinbase when filling a block.
const COINBASE_RESERVE: u64 = 8_000;

/// Incremental relay fee for replacements (Bitcoin Core's default, 1 sat/vB).
const INCREMENTAL_RELAY: FeeRate = FeeRate::from_sat_per_vb_u32(1);

/// The block subsidy at `height` on regtest.
pub fn subsidy(height: u32) -> Amount {
    let halvings = height / REGTEST_HALVING_INTERVAL;
    if halvings >= 64 {
        Amount::ZERO
    } else {
        Amount::from_sat((50 * 100_000_000u64) >> halvings)
    }
}

/// Why a transaction is refused. The messages start with Bitcoin Core's reject reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// Fails a context-free rule.
    #[error(transparent)]
    Check(#[from] TxCheckError),
    /// A coinbase outside a block.
    #[error("coinbase: a coinbase transaction is only valid as a block's first")]
    Coinbase,
    /// Heavier than the standard limit.
    #[error("tx-size: weight {0} above 400000")]
    TooHeavy(u64),
    /// Already in the mempool.
    #[error("txn-already-in-mempool")]
    AlreadyInMempool,
    /// Already confirmed in the active chain.
    #[error("txn-already-known")]
    AlreadyKnown,
    /// An input that does not exist or is already spent in the chain.
    #[error("bad-txns-inputs-missingorspent: {0}")]
    MissingOrSpent(OutPoint),
    /// Spends an output of a transaction it would replace.
    #[error("bad-txns-spends-conflicting-tx: spends an output of replaced {0}")]
    SpendsConflicting(Txid),
    /// A replacement that does not pay enough (BIP 125 rules 3, 4 and 6, full RBF).
    #[error("insufficient fee, rejecting replacement: {0}")]
    ReplacementFee(String),
    /// Spends a coinbase output before 100 confirmations.
    #[error(
        "bad-txns-premature-spend-of-coinbase: {outpoint} has {depth} confirmations, needs 100"
    )]
    ImmatureCoinbase {
        /// The coinbase output.
        outpoint: OutPoint,
        /// Its confirmations at the spending height.
        depth: u32,
    },
    /// Outputs above inputs.
    #[error("bad-txns-in-belowout: inputs {inputs} < outputs {outputs}")]
    InBelowOut {
        /// Sum of the spent values.
        inputs: Amount,
        /// Sum of the outputs.
        outputs: Amount,
    },
    /// Input values out of range.
    #[error("bad-txns-inputvalues-outofrange")]
    InputValuesOutOfRange,
    /// Fee below the minimum relay fee.
    #[error("min relay fee not met, {fee} < {min}")]
    MinRelayFee {
        /// The transaction's fee.
        fee: Amount,
        /// The minimum for its size.
        min: Amount,
    },
    /// Absolute lock time not reached.
    #[error("non-final: lock time not reached")]
    NonFinal,
    /// Relative (BIP 68) lock time not reached.
    #[error("non-BIP68-final: relative lock time not reached")]
    NonBip68Final,
    /// A script fails.
    #[error(transparent)]
    Script(#[from] ScriptError),
}

/// Why a block is refused. The messages start with Bitcoin Core's reject reasons.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// Its parent is not the tip.
    #[error("prev-blk-not-tip: parent {0} is not the tip")]
    NotOnTip(BlockHash),
    /// Wrong difficulty bits.
    #[error("bad-diffbits: {0:#x}, regtest needs 0x207fffff")]
    BadBits(u32),
    /// Header hash above the target.
    #[error("high-hash: proof of work failed")]
    HighHash,
    /// Time not above the median of the last 11 blocks, or too far in the future.
    #[error("time-too-old-or-new: {0}")]
    BadTime(u32),
    /// Header version below 2 (BIP 34).
    #[error("bad-version: {0}")]
    BadVersion(i32),
    /// Merkle root mismatch or mutated transaction list.
    #[error("bad-txnmrklroot")]
    BadMerkleRoot,
    /// Duplicate transactions.
    #[error("bad-txns-duplicate")]
    DuplicateTx,
    /// First transaction not a coinbase.
    #[error("bad-cb-missing")]
    NoCoinbase,
    /// More than one coinbase.
    #[error("bad-cb-multiple")]
    MultipleCoinbase,
    /// Coinbase scriptSig not starting with the height (BIP 34).
    #[error("bad-cb-height")]
    BadHeight,
    /// Witness commitment missing or wrong.
    #[error("bad-witness-merkle-match")]
    BadWitnessCommitment,
    /// Above 4M weight units.
    #[error("bad-blk-weight: {0}")]
    TooHeavy(u64),
    /// Coinbase pays more than subsidy plus fees.
    #[error("bad-cb-amount: pays {paid}, may pay {allowed}")]
    BadCoinbaseAmount {
        /// What it pays.
        paid: Amount,
        /// Subsidy plus fees.
        allowed: Amount,
    },
    /// A transaction in the block is invalid.
    #[error("bad transaction {index} ({txid}): {error}")]
    Tx {
        /// Its position in the block.
        index: usize,
        /// Its id.
        txid: Txid,
        /// Why.
        error: TxError,
    },
}

/// An unspent output with where it was created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Coin {
    pub txout: TxOut,
    pub height: u32,
    pub coinbase: bool,
}

/// A transaction in the mempool.
#[derive(Clone, Debug)]
pub(crate) struct MempoolEntry {
    pub tx: Transaction,
    pub fee: Amount,
    pub weight: Weight,
    pub seq: u64,
}

/// A validated block's effect on the UTXO set.
pub(crate) struct BlockChanges {
    created: Vec<(OutPoint, Coin)>,
    undo: Vec<(OutPoint, Coin)>,
}

/// A validated mempool admission.
pub(crate) struct Admission {
    pub txid: Txid,
    pub fee: Amount,
    pub weight: Weight,
    /// Mempool transactions it replaces (with their descendants).
    pub evicts: Vec<Txid>,
}

/// The whole chain state.
pub(crate) struct ChainState {
    blocks: Vec<Block>,
    undo: Vec<Vec<(OutPoint, Coin)>>,
    heights: HashMap<BlockHash, u32>,
    stale: HashMap<BlockHash, Block>,
    utxos: HashMap<OutPoint, Coin>,
    tx_index: HashMap<Txid, (u32, usize)>,
    mempool: HashMap<Txid, MempoolEntry>,
    mempool_order: BTreeMap<u64, Txid>,
    spent_by: HashMap<OutPoint, Txid>,
    next_seq: u64,
    pub min_relay_fee: FeeRate,
}

impl ChainState {
    /// A chain holding only regtest's genesis block.
    pub fn new(min_relay_fee: FeeRate) -> Self {
        let genesis = genesis_block(Network::Regtest);
        let mut heights = HashMap::new();
        heights.insert(genesis.block_hash(), 0);
        ChainState {
            blocks: vec![genesis],
            undo: vec![Vec::new()],
            heights,
            stale: HashMap::new(),
            utxos: HashMap::new(),
            tx_index: HashMap::new(),
            mempool: HashMap::new(),
            mempool_order: BTreeMap::new(),
            spent_by: HashMap::new(),
            next_seq: 0,
            min_relay_fee,
        }
    }

    // ----- reads -----

    pub fn height(&self) -> u32 {
        (self.blocks.len() - 1) as u32
    }

    pub fn tip(&self) -> &Block {
        // `blocks` always holds genesis.
        &self.blocks[self.blocks.len() - 1]
    }

    pub fn tip_hash(&self) -> BlockHash {
        self.tip().block_hash()
    }

    pub fn block_at(&self, height: u32) -> Option<&Block> {
        self.blocks.get(height as usize)
    }

    pub fn block(&self, hash: &BlockHash) -> Option<&Block> {
        match self.heights.get(hash) {
            Some(h) => self.blocks.get(*h as usize),
            None => self.stale.get(hash),
        }
    }

    pub fn height_of(&self, hash: &BlockHash) -> Option<u32> {
        self.heights.get(hash).copied()
    }

    /// Median time of the 11 blocks ending at `height` (clamped to the tip).
    pub fn median_time_past(&self, height: u32) -> u32 {
        let end = (height.min(self.height()) as usize) + 1;
        let start = end.saturating_sub(11);
        let mut times: Vec<u32> = self.blocks[start..end]
            .iter()
            .map(|b| b.header.time)
            .collect();
        times.sort_unstable();
        times[times.len() / 2]
    }

    /// A transaction and the height of its block (`None` when in the mempool).
    pub fn transaction(&self, txid: &Txid) -> Option<(Transaction, Option<u32>)> {
        if let Some(e) = self.mempool.get(txid) {
            return Some((e.tx.clone(), None));
        }
        let (h, i) = self.tx_index.get(txid)?;
        let tx = self.blocks.get(*h as usize)?.txdata.get(*i)?;
        Some((tx.clone(), Some(*h)))
    }

    pub fn mempool_txs(&self) -> Vec<Transaction> {
        self.mempool_order
            .values()
            .filter_map(|id| self.mempool.get(id))
            .map(|e| e.tx.clone())
            .collect()
    }

    pub fn mempool_entry(&self, txid: &Txid) -> Option<&MempoolEntry> {
        self.mempool.get(txid)
    }

    /// Unspent outputs paying one of `scripts`, confirmed and in the mempool, minus those spent
    /// by mempool transactions.
    pub fn unspent_for(&self, scripts: &HashSet<ScriptBuf>) -> Vec<crate::client::Utxo> {
        let tip = self.height();
        let mut out = Vec::new();
        for (op, coin) in &self.utxos {
            if scripts.contains(&coin.txout.script_pubkey) && !self.spent_by.contains_key(op) {
                out.push(crate::client::Utxo {
                    outpoint: *op,
                    txout: coin.txout.clone(),
                    confirmations: tip + 1 - coin.height,
                    coinbase: coin.coinbase,
                });
            }
        }
        for (txid, e) in &self.mempool {
            for (vout, txout) in e.tx.output.iter().enumerate() {
                let op = OutPoint {
                    txid: *txid,
                    vout: vout as u32,
                };
                if scripts.contains(&txout.script_pubkey) && !self.spent_by.contains_key(&op) {
                    out.push(crate::client::Utxo {
                        outpoint: op,
                        txout: txout.clone(),
                        confirmations: 0,
                        coinbase: false,
                    });
                }
            }
        }
        out.sort_by_key(|u| (std::cmp::Reverse(u.confirmations), u.outpoint));
        out
    }

    /// Number and total value of the unspent outputs, and the mempool's size.
    pub fn stats(&self) -> (usize, Amount, usize) {
        let value = self.utxos.values().fold(Amount::ZERO, |a, c| {
            a.checked_add(c.txout.value).unwrap_or(Amount::MAX)
        });
        (self.utxos.len(), value, self.mempool.len())
    }

    pub fn coin(&self, op: &OutPoint) -> Option<&Coin> {
        self.utxos.get(op)
    }

    // ----- transactions -----

    /// Inputs, maturity, amounts, lock times and (if `scripts`) scripts of `tx` spent at
    /// `spend_height` on top of a chain whose tip has median time `tip_mtp`; `lookup` finds the
    /// coins. Returns the fee.
    fn check_inputs(
        &self,
        tx: &Transaction,
        lookup: impl Fn(&OutPoint) -> Option<Coin>,
        spend_height: u32,
        scripts: bool,
    ) -> Result<Amount, TxError> {
        let tip_mtp = self.median_time_past(spend_height.saturating_sub(1));
        if !is_final(tx, spend_height, tip_mtp) {
            return Err(TxError::NonFinal);
        }
        let mut coins = Vec::with_capacity(tx.input.len());
        for input in &tx.input {
            let coin = lookup(&input.previous_output)
                .ok_or(TxError::MissingOrSpent(input.previous_output))?;
            if coin.coinbase {
                let depth = spend_height.saturating_sub(coin.height);
                if depth < COINBASE_MATURITY {
                    return Err(TxError::ImmatureCoinbase {
                        outpoint: input.previous_output,
                        depth,
                    });
                }
            }
            coins.push(coin);
        }
        let mut inputs = Amount::ZERO;
        for c in &coins {
            inputs = inputs
                .checked_add(c.txout.value)
                .ok_or(TxError::InputValuesOutOfRange)?;
            if c.txout.value > Amount::MAX_MONEY || inputs > Amount::MAX_MONEY {
                return Err(TxError::InputValuesOutOfRange);
            }
        }
        let outputs = tx
            .output
            .iter()
            .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
            .ok_or(TxError::Check(TxCheckError::OutputTooLarge))?;
        if inputs < outputs {
            return Err(TxError::InBelowOut { inputs, outputs });
        }
        if !self.sequence_locks_ok(tx, &coins, spend_height, tip_mtp) {
            return Err(TxError::NonBip68Final);
        }
        if scripts {
            let spent: Vec<TxOut> = coins.into_iter().map(|c| c.txout).collect();
            verify_scripts(tx, &spent)?;
        }
        Ok(inputs - outputs)
    }

    /// BIP 68 (Bitcoin Core's `CalculateSequenceLocks` + `EvaluateSequenceLocks`).
    fn sequence_locks_ok(
        &self,
        tx: &Transaction,
        coins: &[Coin],
        spend_height: u32,
        tip_mtp: u32,
    ) -> bool {
        if tx.version < Version::TWO {
            return true;
        }
        let mut min_height: i64 = -1;
        let mut min_time: i64 = -1;
        for (input, coin) in tx.input.iter().zip(coins) {
            let seq = input.sequence;
            if !seq.is_relative_lock_time() {
                continue;
            }
            let value = i64::from(seq.to_consensus_u32() & 0xffff);
            if seq.is_time_locked() {
                let coin_time = i64::from(self.median_time_past(coin.height.saturating_sub(1)));
                min_time = min_time.max(coin_time + (value << 9) - 1);
            } else {
                min_height = min_height.max(i64::from(coin.height) + value - 1);
            }
        }
        min_height < i64::from(spend_height) && min_time < i64::from(tip_mtp)
    }

    /// Checks `tx` for the mempool on top of the tip; changes nothing.
    pub fn check_for_mempool(&self, tx: &Transaction) -> Result<Admission, TxError> {
        check_transaction(tx)?;
        if tx.is_coinbase() {
            return Err(TxError::Coinbase);
        }
        let weight = tx.weight();
        if weight > MAX_STANDARD_TX_WEIGHT {
            return Err(TxError::TooHeavy(weight.to_wu()));
        }
        let txid = tx.compute_txid();
        if self.mempool.contains_key(&txid) {
            return Err(TxError::AlreadyInMempool);
        }
        if self.tx_index.contains_key(&txid) {
            return Err(TxError::AlreadyKnown);
        }
        let mut conflicts: Vec<Txid> = Vec::new();
        for input in &tx.input {
            if let Some(other) = self.spent_by.get(&input.previous_output) {
                if !conflicts.contains(other) {
                    conflicts.push(*other);
                }
            }
        }
        let evicts = self.with_descendants(&conflicts);
        let spend_height = self.height() + 1;
        let lookup = |op: &OutPoint| -> Option<Coin> {
            if let Some(c) = self.utxos.get(op) {
                return Some(c.clone());
            }
            let parent = self.mempool.get(&op.txid)?;
            let txout = parent.tx.output.get(op.vout as usize)?;
            Some(Coin {
                txout: txout.clone(),
                height: spend_height,
                coinbase: false,
            })
        };
        for input in &tx.input {
            if evicts.contains(&input.previous_output.txid) {
                return Err(TxError::SpendsConflicting(input.previous_output.txid));
            }
        }
        let fee = self.check_inputs(tx, lookup, spend_height, true)?;
        let min = fee_for(self.min_relay_fee, weight);
        if fee < min {
            return Err(TxError::MinRelayFee { fee, min });
        }
        if !conflicts.is_empty() {
            let replaced_fees = evicts
                .iter()
                .filter_map(|id| self.mempool.get(id))
                .try_fold(Amount::ZERO, |a, e| a.checked_add(e.fee))
                .unwrap_or(Amount::MAX_MONEY);
            let needed = replaced_fees
                .checked_add(fee_for(INCREMENTAL_RELAY, weight))
                .unwrap_or(Amount::MAX_MONEY);
            if fee < needed {
                return Err(TxError::ReplacementFee(format!(
                    "fee {fee} < {needed} (replaced fees {replaced_fees} + incremental relay fee)"
                )));
            }
            for id in &conflicts {
                if let Some(e) = self.mempool.get(id) {
                    // New feerate must exceed each direct conflict's: fee/weight > e.fee/e.weight.
                    let lhs = u128::from(fee.to_sat()) * u128::from(e.weight.to_wu());
                    let rhs = u128::from(e.fee.to_sat()) * u128::from(weight.to_wu());
                    if lhs <= rhs {
                        return Err(TxError::ReplacementFee(format!(
                            "feerate not above that of replaced {id}"
                        )));
                    }
                }
            }
        }
        Ok(Admission {
            txid,
            fee,
            weight,
            evicts: evicts.into_iter().collect(),
        })
    }

    /// `roots` and every mempool transaction descending from them.
    fn with_descendants(&self, roots: &[Txid]) -> HashSet<Txid> {
        let mut out: HashSet<Txid> = HashSet::new();
        let mut stack: Vec<Txid> = roots.to_vec();
        while let Some(id) = stack.pop() {
            if !out.insert(id) {
                continue;
            }
            if let Some(e) = self.mempool.get(&id) {
                for vout in 0..e.tx.output.len() {
                    if let Some(child) = self.spent_by.get(&OutPoint {
                        txid: id,
                        vout: vout as u32,
                    }) {
                        stack.push(*child);
                    }
                }
            }
        }
        out
    }

    /// Admits a transaction checked by [`Self::check_for_mempool`].
    pub fn apply_admission(&mut self, tx: Transaction, adm: Admission) {
        for id in &adm.evicts {
            self.remove_mempool_tx(id);
        }
        for input in &tx.input {
            self.spent_by.insert(input.previous_output, adm.txid);
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mempool_order.insert(seq, adm.txid);
        self.mempool.insert(
            adm.txid,
            MempoolEntry {
                tx,
                fee: adm.fee,
                weight: adm.weight,
                seq,
            },
        );
    }

    /// Removes one mempool transaction (not its descendants).
    fn remove_mempool_tx(&mut self, txid: &Txid) -> Option<MempoolEntry> {
        let e = self.mempool.remove(txid)?;
        self.mempool_order.remove(&e.seq);
        for input in &e.tx.input {
            if self.spent_by.get(&input.previous_output) == Some(txid) {
                self.spent_by.remove(&input.previous_output);
            }
        }
        Some(e)
    }

    /// Removes a mempool transaction and its descendants; returns the removed ids.
    pub fn evict(&mut self, txid: &Txid) -> Vec<Txid> {
        if !self.mempool.contains_key(txid) {
            return Vec::new();
        }
        let all = self.with_descendants(&[*txid]);
        let mut removed = Vec::new();
        for id in all {
            if self.remove_mempool_tx(&id).is_some() {
                removed.push(id);
            }
        }
        removed
    }

    /// Empties the mempool, returning its transactions in order.
    fn drain_mempool(&mut self) -> Vec<Transaction> {
        let txs = self.mempool_txs();
        self.mempool.clear();
        self.mempool_order.clear();
        self.spent_by.clear();
        txs
    }

    // ----- blocks -----

    /// Mempool transactions for the next block, in order, within the block weight, never a child
    /// without its parent.
    pub fn block_template(&self) -> (Vec<Transaction>, Amount) {
        let mut weight = COINBASE_RESERVE + 4 * 80;
        let mut fees = Amount::ZERO;
        let mut taken = Vec::new();
        let mut skipped: HashSet<Txid> = HashSet::new();
        for id in self.mempool_order.values() {
            let Some(e) = self.mempool.get(id) else {
                continue;
            };
            let parent_skipped =
                e.tx.input
                    .iter()
                    .any(|i| skipped.contains(&i.previous_output.txid));
            if parent_skipped || weight + e.weight.to_wu() > Weight::MAX_BLOCK.to_wu() {
                skipped.insert(*id);
                continue;
            }
            weight += e.weight.to_wu();
            fees = fees.checked_add(e.fee).unwrap_or(fees);
            taken.push(e.tx.clone());
        }
        (taken, fees)
    }

    /// Builds (and mines: nonce search at regtest's target) a block on the tip paying
    /// `subsidy + fees` to `script`, with `txs` after the coinbase. `extra_nonce` makes the
    /// coinbase unique; `now` is the wall-clock time in seconds.
    pub fn build_block(
        &self,
        txs: Vec<Transaction>,
        fees: Amount,
        script: &Script,
        extra_nonce: u64,
        now: u32,
    ) -> Block {
        let height = self.height() + 1;
        let script_sig = Builder::new()
            .push_int(i64::from(height))
            .push_slice(extra_nonce.to_le_bytes())
            .into_script();
        let value = subsidy(height)
            .checked_add(fees)
            .unwrap_or(Amount::MAX_MONEY);
        let coinbase = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig,
                sequence: Sequence::MAX,
                witness: Witness::from_slice(&[[0u8; 32]]),
            }],
            output: vec![TxOut {
                value,
                script_pubkey: script.to_owned(),
            }],
        };
        let mut txdata = Vec::with_capacity(txs.len() + 1);
        txdata.push(coinbase);
        txdata.extend(txs);
        let bits = self.blocks[0].header.bits;
        let time = now.max(self.median_time_past(self.height()).saturating_add(1));
        let mut block = Block {
            header: Header {
                version: BlockVersion::from_consensus(0x2000_0000),
                prev_blockhash: self.tip_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time,
                bits,
                nonce: 0,
            },
            txdata,
        };
        // BIP 141 commitment: OP_RETURN aa21a9ed || SHA256d(witness root || reserved value).
        if let Some(root) = block.witness_root() {
            let commitment = Block::compute_witness_commitment(&root, &[0u8; 32]);
            let mut data = vec![0xaa, 0x21, 0xa9, 0xed];
            data.extend_from_slice(commitment.as_byte_array());
            if let Ok(push) = PushBytesBuf::try_from(data) {
                block.txdata[0].output.push(TxOut {
                    value: Amount::ZERO,
                    script_pubkey: ScriptBuf::new_op_return(push),
                });
            }
        }
        if let Some(root) = block.compute_merkle_root() {
            block.header.merkle_root = root;
        }
        let target = block.header.target();
        loop {
            if block.header.validate_pow(target).is_ok() {
                return block;
            }
            match block.header.nonce.checked_add(1) {
                Some(n) => block.header.nonce = n,
                None => {
                    block.header.nonce = 0;
                    block.header.time = block.header.time.wrapping_add(1);
                }
            }
        }
    }

    /// Checks `block` as the tip's child; changes nothing. `scripts == false` skips script
    /// checks (replaying the chain's own checksummed journal).
    pub fn validate_block(
        &self,
        block: &Block,
        scripts: bool,
        now: u32,
    ) -> Result<BlockChanges, BlockError> {
        let height = self.height() + 1;
        let header = &block.header;
        if header.prev_blockhash != self.tip_hash() {
            return Err(BlockError::NotOnTip(header.prev_blockhash));
        }
        let bits = self.blocks[0].header.bits;
        if header.bits != bits {
            return Err(BlockError::BadBits(header.bits.to_consensus()));
        }
        if header
            .validate_pow(CompactTarget::from_consensus(bits.to_consensus()).into())
            .is_err()
        {
            return Err(BlockError::HighHash);
        }
        if header.version.to_consensus() < 2 {
            return Err(BlockError::BadVersion(header.version.to_consensus()));
        }
        if header.time <= self.median_time_past(self.height())
            || header.time > now.saturating_add(2 * 3600)
        {
            return Err(BlockError::BadTime(header.time));
        }
        if !block.check_merkle_root() {
            return Err(BlockError::BadMerkleRoot);
        }
        let coinbase = match block.txdata.first() {
            Some(cb) if cb.is_coinbase() => cb,
            _ => return Err(BlockError::NoCoinbase),
        };
        if block.txdata.iter().skip(1).any(|t| t.is_coinbase()) {
            return Err(BlockError::MultipleCoinbase);
        }
        let txids: Vec<Txid> = block.txdata.iter().map(|t| t.compute_txid()).collect();
        let unique: HashSet<&Txid> = txids.iter().collect();
        if unique.len() != txids.len() {
            return Err(BlockError::DuplicateTx);
        }
        if !block.check_witness_commitment() {
            return Err(BlockError::BadWitnessCommitment);
        }
        let weight = block.weight().to_wu();
        if weight > Weight::MAX_BLOCK.to_wu() {
            return Err(BlockError::TooHeavy(weight));
        }
        let expect = Builder::new().push_int(i64::from(height)).into_script();
        let sig = coinbase
            .input
            .first()
            .map(|i| i.script_sig.as_bytes())
            .unwrap_or(&[]);
        if !sig.starts_with(expect.as_bytes()) {
            return Err(BlockError::BadHeight);
        }
        for (index, tx) in block.txdata.iter().enumerate() {
            check_transaction(tx).map_err(|e| BlockError::Tx {
                index,
                txid: txids[index],
                error: e.into(),
            })?;
        }
        let mut created: HashMap<OutPoint, Coin> = HashMap::new();
        let mut spent_in_block: HashSet<OutPoint> = HashSet::new();
        let mut undo: Vec<(OutPoint, Coin)> = Vec::new();
        let mut fees = Amount::ZERO;
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = txids[index];
            let fail = |error: TxError| BlockError::Tx { index, txid, error };
            if self.tx_index.contains_key(&txid) {
                return Err(fail(TxError::AlreadyKnown));
            }
            if index > 0 {
                let lookup = |op: &OutPoint| -> Option<Coin> {
                    if spent_in_block.contains(op) {
                        return None;
                    }
                    created.get(op).or_else(|| self.utxos.get(op)).cloned()
                };
                let fee = self
                    .check_inputs(tx, lookup, height, scripts)
                    .map_err(fail)?;
                fees = fees
                    .checked_add(fee)
                    .ok_or_else(|| fail(TxError::InputValuesOutOfRange))?;
                for input in &tx.input {
                    let op = input.previous_output;
                    spent_in_block.insert(op);
                    if created.remove(&op).is_none() {
                        if let Some(c) = self.utxos.get(&op) {
                            undo.push((op, c.clone()));
                        }
                    }
                }
            }
            for (vout, txout) in tx.output.iter().enumerate() {
                if txout.script_pubkey.is_op_return() || txout.script_pubkey.len() > 10_000 {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                created.insert(
                    op,
                    Coin {
                        txout: txout.clone(),
                        height,
                        coinbase: index == 0,
                    },
                );
            }
        }
        let paid = coinbase
            .output
            .iter()
            .try_fold(Amount::ZERO, |a, o| a.checked_add(o.value))
            .unwrap_or(Amount::MAX_MONEY);
        let allowed = subsidy(height)
            .checked_add(fees)
            .unwrap_or(Amount::MAX_MONEY);
        if paid > allowed {
            return Err(BlockError::BadCoinbaseAmount { paid, allowed });
        }
        Ok(BlockChanges {
            created: created.into_iter().collect(),
            undo,
        })
    }

    /// Connects a block validated by [`Self::validate_block`]; drops confirmed and conflicting
    /// transactions from the mempool.
    pub fn apply_block(&mut self, block: Block, changes: BlockChanges) {
        let height = self.height() + 1;
        for (op, _) in &changes.undo {
            self.utxos.remove(op);
        }
        for (op, coin) in changes.created {
            self.utxos.insert(op, coin);
        }
        let mut spent: Vec<OutPoint> = Vec::new();
        for (index, tx) in block.txdata.iter().enumerate() {
            let txid = tx.compute_txid();
            self.tx_index.insert(txid, (height, index));
            if index > 0 {
                spent.extend(tx.input.iter().map(|i| i.previous_output));
                self.remove_mempool_tx(&txid);
            }
        }
        for op in spent {
            if let Some(conflict) = self.spent_by.get(&op).copied() {
                self.evict(&conflict);
            }
        }
        let hash = block.block_hash();
        self.stale.remove(&hash);
        self.heights.insert(hash, height);
        self.blocks.push(block);
        self.undo.push(changes.undo);
    }

    /// Disconnects the tip (never genesis); returns its non-coinbase transactions. The mempool
    /// is left as it is; see [`Self::rewind`].
    fn disconnect_tip(&mut self) -> Vec<Transaction> {
        if self.blocks.len() <= 1 {
            return Vec::new();
        }
        let (Some(block), Some(undo)) = (self.blocks.pop(), self.undo.pop()) else {
            return Vec::new();
        };
        for tx in &block.txdata {
            let txid = tx.compute_txid();
            for vout in 0..tx.output.len() {
                self.utxos.remove(&OutPoint {
                    txid,
                    vout: vout as u32,
                });
            }
            self.tx_index.remove(&txid);
        }
        for (op, coin) in undo {
            self.utxos.insert(op, coin);
        }
        let hash = block.block_hash();
        self.heights.remove(&hash);
        let txs = block.txdata.iter().skip(1).cloned().collect();
        self.stale.insert(hash, block);
        txs
    }

    /// Disconnects blocks down to `height` (≥ 0); their transactions, then the old mempool's,
    /// are re-admitted where still valid (as Bitcoin Core does on a reorg). Returns the ids of
    /// the disconnected transactions.
    pub fn rewind(&mut self, height: u32) -> Vec<Txid> {
        let mut disconnected: Vec<Vec<Transaction>> = Vec::new();
        while self.height() > height {
            disconnected.push(self.disconnect_tip());
        }
        let old_mempool = self.drain_mempool();
        let mut ids = Vec::new();
        for tx in disconnected.into_iter().rev().flatten() {
            ids.push(tx.compute_txid());
            self.readmit(tx);
        }
        for tx in old_mempool {
            self.readmit(tx);
        }
        ids
    }

    fn readmit(&mut self, tx: Transaction) {
        match self.check_for_mempool(&tx) {
            Ok(adm) => self.apply_admission(tx, adm),
            Err(e) => {
                tracing::debug!(txid = %tx.compute_txid(), error = %e, "dropped from the regtest mempool after a reorg")
            }
        }
    }
}

/// Bitcoin Core's `IsFinalTx` for a transaction in block `height` after median time `mtp`.
fn is_final(tx: &Transaction, height: u32, mtp: u32) -> bool {
    let lock = tx.lock_time.to_consensus_u32();
    if lock == 0 {
        return true;
    }
    let reached = if lock < absolute::LOCK_TIME_THRESHOLD {
        lock < height
    } else {
        lock < mtp
    };
    reached || tx.input.iter().all(|i| i.sequence == Sequence::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regtest_subsidy_halves_every_150_blocks() {
        assert_eq!(subsidy(1), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(149), Amount::from_btc(50.0).unwrap());
        assert_eq!(subsidy(150), Amount::from_btc(25.0).unwrap());
        assert_eq!(subsidy(300), Amount::from_sat(1_250_000_000));
        assert_eq!(subsidy(150 * 64), Amount::ZERO);
        assert_eq!(subsidy(u32::MAX), Amount::ZERO);
    }

    #[test]
    fn genesis_is_regtest_and_mined_blocks_connect() {
        let mut s = ChainState::new(FeeRate::BROADCAST_MIN);
        assert_eq!(s.height(), 0);
        assert_eq!(s.tip_hash(), genesis_block(Network::Regtest).block_hash());
        let script = ScriptBuf::from_bytes(vec![0x51]);
        let now = s.tip().header.time + 600;
        let block = s.build_block(Vec::new(), Amount::ZERO, &script, 1, now);
        assert!(block.header.validate_pow(block.header.target()).is_ok());
        assert_eq!(
            block.bip34_block_height().ok(),
            None,
            "height 1 is OP_1 as in Core, not a push"
        );
        let changes = s.validate_block(&block, true, now).unwrap();
        s.apply_block(block.clone(), changes);
        assert_eq!(s.height(), 1);
        assert_eq!(s.tip_hash(), block.block_hash());
        // The same block again no longer extends the tip.
        assert!(matches!(
            s.validate_block(&block, true, now),
            Err(BlockError::NotOnTip(_))
        ));
    }

    #[test]
    fn coinbase_may_not_pay_more_than_subsidy_and_fees() {
        let s = ChainState::new(FeeRate::BROADCAST_MIN);
        let script = ScriptBuf::from_bytes(vec![0x51]);
        let now = s.tip().header.time + 600;
        // Claims 1 sat of fees that no transaction pays.
        let block = s.build_block(Vec::new(), Amount::from_sat(1), &script, 1, now);
        assert_eq!(
            s.validate_block(&block, true, now).err(),
            Some(BlockError::BadCoinbaseAmount {
                paid: subsidy(1) + Amount::from_sat(1),
                allowed: subsidy(1)
            })
        );
        // Too far in the future.
        let later = s.build_block(Vec::new(), Amount::ZERO, &script, 1, now + 3 * 3600);
        assert!(matches!(
            s.validate_block(&later, true, now),
            Err(BlockError::BadTime(_))
        ));
    }

    #[test]
    fn relative_lock_times_follow_bip68() {
        let mut s = ChainState::new(FeeRate::BROADCAST_MIN);
        let script = ScriptBuf::from_bytes(vec![0x51]);
        for i in 0..5 {
            let now = s.tip().header.time + 600;
            let b = s.build_block(Vec::new(), Amount::ZERO, &script, i, now);
            let c = s.validate_block(&b, true, now).unwrap();
            s.apply_block(b, c);
        }
        let coin = Coin {
            txout: TxOut::NULL,
            height: 3,
            coinbase: false,
        };
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                sequence: Sequence::from_height(3),
                ..TxIn::default()
            }],
            output: vec![],
        };
        // Coin in block 3, 3 blocks relative: first valid in block 6.
        assert!(!s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 5, 0));
        assert!(s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 6, 0));
        // Version 1 and the disable flag turn the rule off.
        tx.version = Version::ONE;
        assert!(s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 5, 0));
        tx.version = Version::TWO;
        tx.input[0].sequence = Sequence::from_consensus(3 | (1 << 31));
        assert!(s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 5, 0));
        // Time-based: 512 s units counted from the median time before the coin's block.
        tx.input[0].sequence = Sequence::from_512_second_intervals(2);
        let base = s.median_time_past(2);
        assert!(!s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 6, base + 1024 - 1));
        assert!(s.sequence_locks_ok(&tx, std::slice::from_ref(&coin), 6, base + 1024));
    }

    #[test]
    fn final_rules_follow_core() {
        let mut tx = Transaction {
            version: Version::TWO,
            lock_time: absolute::LockTime::from_consensus(10),
            input: vec![TxIn {
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                ..TxIn::default()
            }],
            output: vec![],
        };
        assert!(!is_final(&tx, 10, 0));
        assert!(is_final(&tx, 11, 0));
        tx.input[0].sequence = Sequence::MAX;
        assert!(is_final(&tx, 10, 0));
        tx.lock_time = absolute::LockTime::from_consensus(600_000_000);
        tx.input[0].sequence = Sequence::ZERO;
        assert!(!is_final(&tx, 10, 600_000_000));
        assert!(is_final(&tx, 10, 600_000_001));
    }
}
