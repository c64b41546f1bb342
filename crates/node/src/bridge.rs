//! The BTC bridge around the node: deposits in from Bitcoin, withdrawals out to it.
//!
//! **Deposits.** A Bitcoin transaction paying the bridge address (the sequencer key, tweaked
//! with the bridge's fixed script-tree root: [`parabit_bitcoin::bridge`]) with a `pbd`
//! marker naming an L2 address is a deposit. The sequencer's [`DepositWatcher`] reads Bitcoin
//! blocks from the genesis' settlement start height up to `tip − deposit_confirmations + 1`
//! and logs their deposits ([`DepositLog`]). Every L2 block's header says through which
//! Bitcoin height its deposits go (`bitcoin_height`); the block builder puts one deposit
//! transaction (a [`BridgeMsg::Deposit`] signed by the sequencer key, nonce 0, fee 0) per
//! deposit of the Bitcoin blocks in `(parent.bitcoin_height, bitcoin_height]`, in Bitcoin
//! order, at the front of the block. A full node checks exactly that ([`check_deposits`]):
//! a block with a deposit that Bitcoin does not have, or without one that Bitcoin has, is
//! refused like a wrong state root, so the sequencer can neither mint from nothing nor
//! ignore a deposit.
//!
//! **Withdrawals.** A [`BridgeMsg::Withdraw`] burns BTC on L2 and records the request. The
//! sequencer's [`Payer`] reads committed blocks in order, keeps the bridge's Bitcoin outputs
//! (credited deposits and its own change) and the withdrawals not yet paid, and pays them in
//! one Bitcoin transaction at a time ([`parabit_bitcoin::bridge::build_payout`]): an output
//! per withdrawal (its amount less an equal share of the network fee), change back to the
//! bridge, and a `pbw` marker naming the last withdrawal paid. The payout's record goes to
//! the store (`bridge_payouts`) before the transaction goes to Bitcoin, so a restart
//! re-sends it instead of paying twice.
//!
//! Invariants:
//! - A deposit is credited at most once (the bridge module refuses an outpoint twice, and the
//!   builder takes each Bitcoin height's deposits once, by range).
//! - `bitcoin_height` never decreases along the chain, and never passes what the watcher has
//!   read.
//! - Every withdrawal is paid exactly once, in L2 order: payouts cover consecutive runs of
//!   withdrawals, each after the previous payout's last.
//! - The payer spends only outputs it knows to be the bridge's (credited deposits and its
//!   change); it never spends a deposit that was not credited.
//! - No Bitcoin data can panic these; Bitcoin errors are logged and retried.
//!
//! **Audit.** A full node's [`PayoutAudit`] finds the payouts in the Bitcoin blocks it reads
//! and matches them against the withdrawals it derived, so it shows which withdrawals were
//! paid, and reports a payout that did not pay one as recorded.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_bitcoin::bitcoin::hashes::Hash;
use parabit_bitcoin::bitcoin::key::Keypair;
use parabit_bitcoin::bitcoin::secp256k1::XOnlyPublicKey;
use parabit_bitcoin::bitcoin::{
    self, Amount as BtcAmount, Block as BtcBlock, BlockHash, OutPoint, ScriptBuf, Transaction,
    TxOut, Txid,
};
use parabit_bitcoin::bridge::{
    bridge_script, bridge_wallet, build_payout, parse_payout, scan_deposits, BitcoinDeposit,
    BridgeError, PayoutRequest,
};
use parabit_bitcoin::{BitcoinClient, ClientError, TaprootWallet, Utxo};
use parabit_modules::bridge::BridgeMsg;
use parabit_modules::{Call, GenesisSpec, SignedTx, Tx};
use parabit_primitives::{Address, Block, SigningKey};
use parabit_storage::StoreError;
use parking_lot::{Mutex, RwLock};

use crate::batcher::already_known;
use crate::node::Node;

/// What the bridge of a chain is, from its genesis.
#[derive(Clone, Debug)]
pub struct BridgeParams {
    /// The sequencer's x-only key: it signs deposits and holds the bridge's coins.
    pub sequencer: XOnlyPublicKey,
    /// The same key as an L2 address: the only sender of deposit transactions.
    pub authority: Address,
    /// The bridge's Bitcoin output script.
    pub script: ScriptBuf,
    /// The first Bitcoin block whose deposits count.
    pub start_height: u32,
    /// How deep a deposit must be before the sequencer includes it.
    pub confirmations: u32,
    /// Smaller deposits are not credited.
    pub min_deposit: u64,
    /// The chain id deposit transactions carry.
    pub chain_id: u64,
}

impl BridgeParams {
    /// The bridge of `spec`; `Ok(None)` for a chain that does not settle on Bitcoin.
    pub fn of(spec: &GenesisSpec) -> Result<Option<BridgeParams>, String> {
        let Some(s) = &spec.settlement else {
            return Ok(None);
        };
        let sequencer = XOnlyPublicKey::from_str(s.sequencer_key.trim()).map_err(|e| {
            format!(
                "sequencer_key {:?} is not an x-only public key: {e}",
                s.sequencer_key
            )
        })?;
        let start_height = u32::try_from(s.start_height)
            .map_err(|_| format!("start_height {} is past any Bitcoin height", s.start_height))?;
        Ok(Some(BridgeParams {
            sequencer,
            authority: Address(sequencer.serialize()),
            script: bridge_script(sequencer),
            start_height,
            confirmations: s.deposit_confirmations.max(1),
            min_deposit: s.min_deposit,
            chain_id: spec.chain_id,
        }))
    }

    /// The bridge's Bitcoin address on `network`.
    pub fn address(&self, network: bitcoin::Network) -> String {
        parabit_bitcoin::bridge::bridge_address(self.sequencer, network).to_string()
    }
}

/// The Bitcoin network whose addresses go with the L2 `network`'s (`pb1…` with mainnet,
/// `pbrt1…` with regtest).
pub fn bitcoin_network(network: parabit_primitives::Network) -> bitcoin::Network {
    match network {
        parabit_primitives::Network::Mainnet => bitcoin::Network::Bitcoin,
        parabit_primitives::Network::Regtest => bitcoin::Network::Regtest,
    }
}

/// The deposits of the Bitcoin blocks read so far, by height.
#[derive(Debug, Default, Clone)]
pub struct DepositLog {
    by_height: BTreeMap<u32, Vec<BitcoinDeposit>>,
    through: Option<u32>,
}

impl DepositLog {
    /// Logs the deposits of the block at `height` (the next one after [`Self::through`]).
    /// Outputs paying the bridge that are not deposits are logged as warnings.
    pub fn record(&mut self, height: u32, block: &BtcBlock, params: &BridgeParams) {
        let (found, skipped) = scan_deposits(
            block,
            &params.script,
            BtcAmount::from_sat(params.min_deposit),
        );
        for s in skipped {
            tracing::warn!(
                bitcoin_height = height,
                outpoint = %s.outpoint,
                amount = s.amount.to_sat(),
                "payment to the bridge not credited: {}",
                s.reason
            );
        }
        if !found.is_empty() {
            tracing::info!(
                bitcoin_height = height,
                deposits = found.len(),
                "deposits seen"
            );
            self.by_height.insert(height, found);
        }
        self.through = Some(self.through.map_or(height, |t| t.max(height)));
    }

    /// The last Bitcoin height read.
    pub fn through(&self) -> Option<u32> {
        self.through
    }

    /// Forgets the deposits of the blocks up to `height` (included in the chain already).
    pub fn forget_through(&mut self, height: u64) {
        let keep_from = u32::try_from(height.saturating_add(1)).unwrap_or(u32::MAX);
        self.by_height = self.by_height.split_off(&keep_from);
    }

    /// Forgets the blocks above `height` (a reorg).
    pub fn forget_above(&mut self, height: u32) {
        self.by_height.retain(|h, _| *h <= height);
        self.through = self.through.map(|t| t.min(height));
    }

    /// The deposits of the blocks in `(after, through]`, in Bitcoin order, with their heights.
    pub fn between(&self, after: u64, through: u64) -> Vec<(u32, BitcoinDeposit)> {
        let lo = u32::try_from(after.saturating_add(1)).unwrap_or(u32::MAX);
        let hi = u32::try_from(through).unwrap_or(u32::MAX);
        if lo > hi {
            return Vec::new();
        }
        self.by_height
            .range(lo..=hi)
            .flat_map(|(h, ds)| ds.iter().map(move |d| (*h, d.clone())))
            .collect()
    }

    /// Deposits logged and not forgotten.
    pub fn count(&self) -> usize {
        self.by_height.values().map(Vec::len).sum()
    }
}

/// The L2 call crediting `deposit`, seen in Bitcoin block `height`.
pub fn deposit_call(height: u32, deposit: &BitcoinDeposit) -> Call {
    Call::Bridge(BridgeMsg::Deposit {
        txid: deposit.outpoint.txid.to_byte_array(),
        vout: deposit.outpoint.vout,
        recipient: Address(deposit.recipient),
        amount: deposit.amount.to_sat(),
        bitcoin_height: height,
    })
}

/// The deposit transaction the block builder includes for `deposit`: signed by the
/// sequencer, nonce 0, fee 0 (so each deposit has one transaction id).
pub fn deposit_tx(
    signer: &SigningKey,
    chain_id: u64,
    height: u32,
    deposit: &BitcoinDeposit,
) -> SignedTx {
    signer.sign(Tx {
        chain_id,
        sender: signer.address(),
        nonce: 0,
        fee: 0,
        call: deposit_call(height, deposit),
    })
}

/// Checks a block's deposit transactions against Bitcoin's deposits: the header's
/// `bitcoin_height` does not go back from `parent_bitcoin_height` nor past what `log` has
/// read, and the block's deposits are exactly those of `(parent, bitcoin_height]`, in order,
/// signed by the authority. `Err(reason)` names the first difference.
pub fn check_deposits(
    block: &Block<Call>,
    parent_bitcoin_height: u64,
    log: &DepositLog,
    params: &BridgeParams,
) -> Result<(), String> {
    let h = block.header.bitcoin_height;
    if h < parent_bitcoin_height {
        return Err(format!(
            "bitcoin_height {h} goes back from its parent's {parent_bitcoin_height}"
        ));
    }
    let read = log.through().map_or(0, u64::from);
    if h > parent_bitcoin_height && h > read {
        return Err(format!(
            "bitcoin_height {h} is past the last Bitcoin block read ({read})"
        ));
    }
    let expected: Vec<Call> = log
        .between(parent_bitcoin_height, h)
        .iter()
        .map(|(height, d)| deposit_call(*height, d))
        .collect();
    let found: Vec<&SignedTx> = block
        .txs
        .iter()
        .filter(|t| matches!(t.tx.call, Call::Bridge(BridgeMsg::Deposit { .. })))
        .collect();
    for (i, t) in found.iter().enumerate() {
        if t.tx.sender != params.authority {
            return Err(format!(
                "deposit transaction {} is not the sequencer's",
                t.id()
            ));
        }
        match expected.get(i) {
            Some(e) if *e == t.tx.call => {}
            Some(e) => {
                return Err(format!(
                    "deposit {i} of the block is {:?}; Bitcoin has {e:?}",
                    t.tx.call
                ))
            }
            None => {
                return Err(format!(
                    "deposit {i} of the block ({:?}) is not on Bitcoin in blocks {}..={h}",
                    t.tx.call,
                    parent_bitcoin_height + 1
                ))
            }
        }
    }
    if let Some(missing) = expected.get(found.len()) {
        return Err(format!(
            "the block leaves out a deposit of Bitcoin blocks {}..={h}: {missing:?}",
            parent_bitcoin_height + 1
        ));
    }
    Ok(())
}

/// What the watcher has read.
struct Watched {
    log: DepositLog,
    /// The hash of the last block read (to notice a reorg below the deposit depth).
    last: Option<BlockHash>,
    next: u32,
    /// Set when Bitcoin reorganised below the deposit depth: no more deposits are taken.
    halted: Option<String>,
}

/// The sequencer's deposit watcher: reads confirmed Bitcoin blocks for deposits and hands
/// the block builder the deposit transactions to include.
pub struct DepositWatcher {
    params: BridgeParams,
    signer: SigningKey,
    client: Arc<dyn BitcoinClient>,
    watched: Mutex<Watched>,
}

impl DepositWatcher {
    /// A watcher signing with `keypair` (the sequencer key the genesis names), reading
    /// Bitcoin from the block after `resume_after` (the L2 head's `bitcoin_height`: deposits
    /// up to it are in the chain already) or the settlement start height, whichever is later.
    pub fn new(
        params: BridgeParams,
        keypair: &Keypair,
        client: Arc<dyn BitcoinClient>,
        resume_after: u64,
    ) -> Result<DepositWatcher, String> {
        let signer = SigningKey::from_secret_bytes(keypair.secret_bytes())
            .map_err(|e| format!("sequencer key: {e}"))?;
        if signer.address() != params.authority {
            return Err(format!(
                "the sequencer key {} is not the genesis' {}",
                hex::encode(signer.address().0),
                hex::encode(params.authority.0)
            ));
        }
        Ok(DepositWatcher {
            watched: Mutex::new(Watched {
                log: DepositLog::default(),
                last: None,
                next: u32::try_from(resume_after.saturating_add(1))
                    .unwrap_or(u32::MAX)
                    .max(params.start_height),
                halted: None,
            }),
            params,
            signer,
            client,
        })
    }

    /// The bridge's parameters.
    pub fn params(&self) -> &BridgeParams {
        &self.params
    }

    /// Reads the Bitcoin blocks that reached the deposit depth since the last poll.
    pub fn poll(&self) -> Result<(), ClientError> {
        let (tip, _) = self.client.tip()?;
        let target = tip
            .saturating_add(1)
            .saturating_sub(self.params.confirmations);
        loop {
            let (next, prev) = {
                let w = self.watched.lock();
                if w.halted.is_some() || w.next > target {
                    return Ok(());
                }
                (w.next, w.last)
            };
            let hash = self.client.block_hash(next)?;
            let block = self.client.block(&hash)?;
            let mut w = self.watched.lock();
            if let Some(prev) = prev {
                if block.header.prev_blockhash != prev {
                    let why = format!(
                        "Bitcoin reorganised below the deposit depth at height {}: no more deposits are taken (restart the sequencer with more confirmations)",
                        next - 1
                    );
                    tracing::error!("{why}");
                    w.halted = Some(why);
                    return Ok(());
                }
            }
            w.log.record(next, &block, &self.params);
            w.last = Some(hash);
            w.next = next.saturating_add(1);
            if next == u32::MAX {
                return Ok(());
            }
        }
    }

    /// The deposit transactions of the next block and its `bitcoin_height`, given its
    /// parent's: every deposit read in `(parent, read]`. Those up to the parent's are in the
    /// chain already and are forgotten.
    pub fn take(&self, parent_bitcoin_height: u64) -> (Vec<SignedTx>, u64) {
        let mut w = self.watched.lock();
        w.log.forget_through(parent_bitcoin_height);
        let read = w.log.through().map_or(0, u64::from);
        if w.halted.is_some() || read <= parent_bitcoin_height {
            return (Vec::new(), parent_bitcoin_height);
        }
        let txs = w
            .log
            .between(parent_bitcoin_height, read)
            .iter()
            .map(|(h, d)| deposit_tx(&self.signer, self.params.chain_id, *h, d))
            .collect();
        (txs, read)
    }

    /// The last Bitcoin height read, the deposits read and not yet handed to a block (as of
    /// the last [`Self::take`]), and why deposits stopped (if they did).
    pub fn progress(&self) -> (Option<u32>, usize, Option<String>) {
        let w = self.watched.lock();
        (w.log.through(), w.log.count(), w.halted.clone())
    }

    /// Polls every `interval` until `stop`; Bitcoin errors are logged and retried.
    pub fn run(&self, stop: &AtomicBool, interval: Duration) {
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.poll() {
                tracing::warn!("deposit watcher: {e}; retrying");
            }
            sleep_unless_stopped(stop, interval);
        }
    }
}

/// Sleeps `total` in short steps, returning early once `stop` is set.
fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let step = Duration::from_millis(50);
    let mut left = total;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let d = left.min(step);
        std::thread::sleep(d);
        left = left.saturating_sub(d);
    }
}

/// How many of the latest payouts [`Payer::step`] checks Bitcoin still knows.
pub const RESEND_DEPTH: usize = 16;

/// A withdrawal a payout paid.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PaidWithdrawal {
    /// The L2 transaction that made it.
    pub l2_txid: [u8; 32],
    /// Its L2 block height and position.
    pub height: u64,
    /// Its position in the block.
    pub index: u32,
    /// What it burned on L2 (satoshis).
    pub amount: u64,
    /// Its share of the payout's fee (satoshis).
    pub fee_share: u64,
    /// The payout output that pays it.
    pub vout: u32,
}

/// The payer's durable record of one payout (borsh in the store's `bridge_payouts`).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct PayoutRecord {
    /// Position in the chain of payouts, from 0.
    pub index: u64,
    /// The last withdrawal it pays: (L2 height, position in the block).
    pub through: (u64, u32),
    /// Its Bitcoin txid (internal byte order).
    pub txid: [u8; 32],
    /// The transaction (consensus encoding).
    pub tx: Vec<u8>,
    /// The bridge outputs it spends.
    pub spent: Vec<([u8; 32], u32)>,
    /// Its change back to the bridge: (vout, value).
    pub change: Option<(u32, u64)>,
    /// The network fee it pays.
    pub fee: u64,
    /// The withdrawals it pays, in order.
    pub withdrawals: Vec<PaidWithdrawal>,
}

impl PayoutRecord {
    fn txid(&self) -> Txid {
        Txid::from_byte_array(self.txid)
    }
}

/// Why the payer stopped.
#[derive(Debug, thiserror::Error)]
pub enum PayerError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A payout record does not decode (a damaged store).
    #[error("payout record {0} does not decode")]
    BadRecord(u64),
    /// The store lacks a committed block.
    #[error("the store lacks block {0}")]
    MissingBlock(u64),
}

/// A successful bridge call of a committed block.
enum BridgeCall {
    /// A credited deposit: the bridge's Bitcoin output and its value.
    Deposit(OutPoint, u64),
    /// A withdrawal.
    Withdraw(Waiting),
}

/// The successful bridge calls of committed block `height`, in block order.
fn bridge_calls(
    store: &parabit_storage::Store,
    height: u64,
) -> Result<Vec<BridgeCall>, PayerError> {
    let block = store
        .block::<Call>(height)?
        .ok_or(PayerError::MissingBlock(height))?;
    let mut out = Vec::new();
    for (i, t) in block.txs.iter().enumerate() {
        let Call::Bridge(msg) = &t.tx.call else {
            continue;
        };
        let id = t.id();
        if !store.receipt(&id)?.is_some_and(|r| r.status.is_success()) {
            continue;
        }
        out.push(match msg {
            BridgeMsg::Deposit {
                txid, vout, amount, ..
            } => BridgeCall::Deposit(
                OutPoint {
                    txid: Txid::from_byte_array(*txid),
                    vout: *vout,
                },
                *amount,
            ),
            BridgeMsg::Withdraw {
                amount,
                script_pubkey,
            } => BridgeCall::Withdraw(Waiting {
                l2_txid: id.0,
                height,
                index: i as u32,
                amount: *amount,
                script: ScriptBuf::from_bytes(script_pubkey.clone()),
            }),
        });
    }
    Ok(out)
}

/// A withdrawal waiting for its payout.
#[derive(Clone, Debug)]
struct Waiting {
    l2_txid: [u8; 32],
    height: u64,
    index: u32,
    amount: u64,
    script: ScriptBuf,
}

/// The payer's view of the bridge.
#[derive(Default)]
struct Ledger {
    /// Next L2 height to read.
    next_height: u64,
    /// Bridge outputs not spent by a payout: value in satoshis.
    utxos: BTreeMap<OutPoint, u64>,
    waiting: Vec<Waiting>,
    records: Vec<PayoutRecord>,
}

/// Where a withdrawal was paid: (payout index, payout txid, the withdrawal's entry).
pub type PaidAt = (u64, [u8; 32], PaidWithdrawal);

/// What the RPC shows of the bridge.
#[derive(Default)]
pub struct BridgeStatus {
    /// By the L2 txid of the withdrawal.
    paid: RwLock<HashMap<[u8; 32], PaidAt>>,
    info: RwLock<PayerInfo>,
}

/// The payer's counters.
#[derive(Clone, Debug, Default)]
pub struct PayerInfo {
    /// Payouts made.
    pub payouts: u64,
    /// Withdrawals waiting for a payout.
    pub waiting: u64,
    /// The bridge's unspent value as the payer counts it (satoshis).
    pub holdings: u64,
    /// The last payout problem, if the last attempt failed.
    pub last_error: Option<String>,
}

impl BridgeStatus {
    /// The payout of an L2 withdrawal transaction: (payout index, Bitcoin txid, details).
    pub fn payout_of(&self, l2_txid: &[u8; 32]) -> Option<PaidAt> {
        self.paid.read().get(l2_txid).cloned()
    }

    /// The payer's counters.
    pub fn info(&self) -> PayerInfo {
        self.info.read().clone()
    }
}

/// How the payer runs.
#[derive(Clone, Debug)]
pub struct PayerConfig {
    /// How often it looks for withdrawals.
    pub interval: Duration,
    /// Withdrawals per payout at most.
    pub max_per_payout: usize,
    /// Bridge outputs spent per payout at most.
    pub max_inputs: usize,
}

impl Default for PayerConfig {
    fn default() -> Self {
        PayerConfig {
            interval: Duration::from_secs(2),
            max_per_payout: 100,
            max_inputs: 200,
        }
    }
}

/// The sequencer's withdrawal payer.
pub struct Payer {
    node: Arc<Node>,
    client: Arc<dyn BitcoinClient>,
    wallet: TaprootWallet,
    config: PayerConfig,
    status: Arc<BridgeStatus>,
    ledger: Mutex<Ledger>,
}

impl Payer {
    /// A payer for `node`'s chain with the sequencer's `keypair`, loading its records.
    pub fn new(
        node: Arc<Node>,
        client: Arc<dyn BitcoinClient>,
        keypair: Keypair,
        config: PayerConfig,
    ) -> Result<Payer, PayerError> {
        let mut ledger = Ledger {
            next_height: 1,
            ..Ledger::default()
        };
        let status = Arc::new(BridgeStatus::default());
        for (index, bytes) in node.chain().store().payout_records()? {
            let record =
                PayoutRecord::try_from_slice(&bytes).map_err(|_| PayerError::BadRecord(index))?;
            if record.index != index || index != ledger.records.len() as u64 {
                return Err(PayerError::BadRecord(index));
            }
            note_paid(&status, &record);
            ledger.records.push(record);
        }
        let payer = Payer {
            node,
            client,
            wallet: bridge_wallet(keypair),
            config,
            status,
            ledger: Mutex::new(ledger),
        };
        payer.catch_up()?;
        payer.apply_records();
        Ok(payer)
    }

    /// Applies the loaded payout records to the bridge's outputs read from the blocks: their
    /// inputs are spent, their change is the bridge's. Once, on start; [`Self::pay`] keeps
    /// the outputs up to date after that.
    fn apply_records(&self) {
        let mut guard = self.ledger.lock();
        let ledger = &mut *guard;
        for r in &ledger.records {
            if let Some((vout, value)) = r.change {
                ledger.utxos.insert(
                    OutPoint {
                        txid: r.txid(),
                        vout,
                    },
                    value,
                );
            }
        }
        for r in &ledger.records {
            for (txid, vout) in &r.spent {
                ledger.utxos.remove(&OutPoint {
                    txid: Txid::from_byte_array(*txid),
                    vout: *vout,
                });
            }
        }
        self.status.info.write().holdings = ledger.utxos.values().sum();
    }

    /// What the RPC shows.
    pub fn status(&self) -> Arc<BridgeStatus> {
        Arc::clone(&self.status)
    }

    /// Reads the committed blocks not read yet: credited deposits become bridge outputs,
    /// successful withdrawals wait for a payout (unless a payout record covers them).
    /// Cost: the new blocks only.
    fn catch_up(&self) -> Result<(), PayerError> {
        let store = self.node.chain().store();
        let head = self.node.chain().head().height;
        let mut ledger = self.ledger.lock();
        while ledger.next_height <= head {
            let h = ledger.next_height;
            for call in bridge_calls(store, h)? {
                match call {
                    BridgeCall::Deposit(op, amount) => {
                        ledger.utxos.insert(op, amount);
                    }
                    BridgeCall::Withdraw(w) => ledger.waiting.push(w),
                }
            }
            ledger.next_height = h + 1;
        }
        // Withdrawals the recorded payouts paid (read again after a restart).
        if let Some(through) = ledger.records.last().map(|r| r.through) {
            ledger.waiting.retain(|w| (w.height, w.index) > through);
        }
        let mut info = self.status.info.write();
        info.payouts = ledger.records.len() as u64;
        info.waiting = ledger.waiting.len() as u64;
        info.holdings = ledger.utxos.values().sum();
        Ok(())
    }

    /// One round: read new blocks, make sure the last payout is known to Bitcoin, and pay
    /// what waits. Bitcoin problems are recorded in the status and retried next round.
    pub fn step(&self) -> Result<(), PayerError> {
        self.catch_up()?;
        if let Err(e) = self.resend_last() {
            tracing::warn!("bridge payer: {e}");
        }
        match self.pay().and_then(|()| self.why_waiting()) {
            Ok(()) => self.status.info.write().last_error = None,
            Err(e) => {
                let mut info = self.status.info.write();
                // Once per new problem, not every round while it lasts.
                if info.last_error.as_ref() != Some(&e) {
                    tracing::warn!("bridge payer: {e}");
                }
                info.last_error = Some(e);
            }
        }
        Ok(())
    }

    /// Sends the recent payouts that Bitcoin does not know again, oldest first (a restart, a
    /// reorg that dropped them: each payout may spend the one before it's change). Looks back
    /// at most [`RESEND_DEPTH`] payouts, from the last.
    fn resend_last(&self) -> Result<(), String> {
        let recent: Vec<PayoutRecord> = {
            let ledger = self.ledger.lock();
            let from = ledger.records.len().saturating_sub(RESEND_DEPTH);
            ledger.records.get(from..).unwrap_or(&[]).to_vec()
        };
        let mut missing = Vec::new();
        for record in recent.iter().rev() {
            match self.client.get_raw_transaction(&record.txid()) {
                Ok(_) => break,
                Err(ClientError::NotFound(_)) => missing.push(record),
                Err(e) => return Err(e.to_string()),
            }
        }
        for record in missing.into_iter().rev() {
            let tx: Transaction = bitcoin::consensus::deserialize(&record.tx)
                .map_err(|e| format!("payout {} does not decode: {e}", record.index))?;
            match self.client.send_raw_transaction(&tx) {
                Ok(_) => tracing::info!(index = record.index, "payout sent again"),
                // A node without a transaction index does not find confirmed ones.
                Err(e) if already_known(&e) => {}
                Err(e) => return Err(format!("re-sending payout {}: {e}", record.index)),
            }
        }
        Ok(())
    }

    /// `Err(why)` when withdrawals still wait after this round's payout (the bridge holds too
    /// little for the next one).
    fn why_waiting(&self) -> Result<(), String> {
        let ledger = self.ledger.lock();
        match ledger.waiting.first() {
            None => Ok(()),
            Some(w) => Err(format!(
                "cannot pay the next withdrawal ({} sat) yet: the bridge holds {} sat",
                w.amount,
                ledger.utxos.values().sum::<u64>()
            )),
        }
    }

    /// Builds, records and sends a payout of the waiting withdrawals, if any.
    fn pay(&self) -> Result<(), String> {
        let (inputs, mut batch, index) = {
            let ledger = self.ledger.lock();
            if ledger.waiting.is_empty() {
                return Ok(());
            }
            let batch: Vec<Waiting> = ledger
                .waiting
                .iter()
                .take(self.config.max_per_payout.max(1))
                .cloned()
                .collect();
            let inputs: Vec<Utxo> = ledger
                .utxos
                .iter()
                .take(self.config.max_inputs.max(1))
                .map(|(op, v)| Utxo {
                    outpoint: *op,
                    txout: TxOut {
                        value: BtcAmount::from_sat(*v),
                        script_pubkey: self.wallet.script_pubkey().clone(),
                    },
                    confirmations: 1,
                    coinbase: false,
                })
                .collect();
            (inputs, batch, ledger.records.len() as u64)
        };
        let fee_rate = self.client.estimate_fee_rate().map_err(|e| e.to_string())?;
        // The longest run of the waiting withdrawals (in order) the bridge can pay now: when
        // it holds too little for all of them, fewer (halving), down to the first alone.
        let payout = loop {
            let requests: Vec<PayoutRequest> = batch
                .iter()
                .map(|w| PayoutRequest {
                    script_pubkey: w.script.clone(),
                    amount: BtcAmount::from_sat(w.amount),
                })
                .collect();
            let last = batch.last().map_or((0, 0), |w| (w.height, w.index));
            match build_payout(&self.wallet, &inputs, &requests, last, fee_rate) {
                Ok(p) => break p,
                Err(BridgeError::Insufficient { .. }) if batch.len() > 1 => {
                    batch.truncate(batch.len() / 2);
                }
                Err(e) => {
                    return Err(format!(
                        "cannot pay the next withdrawal ({} sat) yet: {e}",
                        batch.first().map_or(0, |w| w.amount)
                    ))
                }
            }
        };
        let last = batch.last().map_or((0, 0), |w| (w.height, w.index));
        let txid = payout.tx.compute_txid();
        let record = PayoutRecord {
            index,
            through: last,
            txid: txid.to_byte_array(),
            tx: bitcoin::consensus::serialize(&payout.tx),
            spent: payout
                .spent
                .iter()
                .map(|u| (u.outpoint.txid.to_byte_array(), u.outpoint.vout))
                .collect(),
            change: payout.change.map(|(vout, v)| (vout, v.to_sat())),
            fee: payout.fee.to_sat(),
            withdrawals: batch
                .iter()
                .zip(&payout.shares)
                .enumerate()
                .map(|(vout, (w, share))| PaidWithdrawal {
                    l2_txid: w.l2_txid,
                    height: w.height,
                    index: w.index,
                    amount: w.amount,
                    fee_share: share.to_sat(),
                    vout: vout as u32,
                })
                .collect(),
        };
        // Durable before Bitcoin sees it: a crash after the send re-sends, never re-pays.
        let bytes = borsh::to_vec(&record).map_err(|e| e.to_string())?;
        self.node
            .chain()
            .store()
            .put_payout(index, &bytes)
            .map_err(|e| format!("recording payout {index}: {e}"))?;
        {
            let mut ledger = self.ledger.lock();
            for u in &payout.spent {
                ledger.utxos.remove(&u.outpoint);
            }
            if let Some((vout, v)) = record.change {
                ledger.utxos.insert(OutPoint { txid, vout }, v);
            }
            ledger.waiting.retain(|w| (w.height, w.index) > last);
            note_paid(&self.status, &record);
            let mut info = self.status.info.write();
            info.payouts = index + 1;
            info.waiting = ledger.waiting.len() as u64;
            info.holdings = ledger.utxos.values().sum();
            ledger.records.push(record);
        }
        tracing::info!(
            index,
            %txid,
            withdrawals = batch.len(),
            fee = payout.fee.to_sat(),
            "withdrawals paid on Bitcoin"
        );
        self.client
            .send_raw_transaction(&payout.tx)
            .map(|_| ())
            .map_err(|e| format!("sending payout {index} ({txid}): {e}; it will be sent again"))
    }

    /// Runs [`Self::step`] every interval until `stop`. A store failure stops it (logged).
    pub fn run(&self, stop: &AtomicBool) {
        while !stop.load(Ordering::SeqCst) {
            if let Err(e) = self.step() {
                tracing::error!("bridge payer stopped: {e}");
                return;
            }
            sleep_unless_stopped(stop, self.config.interval);
        }
    }
}

/// A payout a full node found on Bitcoin (borsh in its store's `bridge_payouts`; a full node
/// never pays, so its table holds only these).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct FoundPayout {
    /// The Bitcoin block holding it.
    pub bitcoin_height: u32,
    /// Its txid (internal byte order).
    pub txid: [u8; 32],
    /// The last withdrawal it says it pays: (L2 height, position in the block).
    pub through: (u64, u32),
    /// Its outputs: (script, value), in order.
    pub outputs: Vec<(Vec<u8>, u64)>,
}

/// What a full node's audit holds.
#[derive(Default)]
struct Audit {
    /// Payouts found, in Bitcoin order; the first `matched` were matched to withdrawals.
    found: Vec<FoundPayout>,
    matched: usize,
    /// Derived withdrawals not matched to a payout yet, in L2 order.
    waiting: std::collections::VecDeque<Waiting>,
    /// Next L2 height to read.
    next_height: u64,
}

/// A full node's check of the withdrawals' payouts, from Bitcoin alone: it finds the
/// bridge's payouts (a transaction spending a bridge output, with a `pbw` marker) in the
/// Bitcoin blocks it reads, matches each against the withdrawals of the L2 blocks it derived
/// (a payout pays the withdrawals after the previous one's through its marker, one output
/// each, in order), and shows the result through the same [`BridgeStatus`] the sequencer's
/// payer fills (so `pb_getWithdrawal` says `paid` on a full node too). An output that does not
/// pay its withdrawal's script, or pays more than it burned, is reported in the status
/// (`last_error`) and that withdrawal is not marked paid.
///
/// Invariants: payouts are matched in Bitcoin order, each only once the L2 blocks up to its
/// marker are derived; the payouts found are stored before they are matched, so a restart
/// (which reads Bitcoin on from the last batch's block) loses none; a reorg below a payout
/// forgets it ([`Self::forget_above`]) and the matching is redone.
pub struct PayoutAudit {
    params: BridgeParams,
    status: Arc<BridgeStatus>,
    audit: Mutex<Audit>,
}

impl PayoutAudit {
    /// The audit of `params`' bridge, with the payouts found before (`node`'s store).
    pub fn open(params: BridgeParams, node: &Node) -> Result<PayoutAudit, PayerError> {
        let mut found = Vec::new();
        for (index, bytes) in node.chain().store().payout_records()? {
            let p =
                FoundPayout::try_from_slice(&bytes).map_err(|_| PayerError::BadRecord(index))?;
            found.push(p);
        }
        let audit = PayoutAudit {
            params,
            status: Arc::new(BridgeStatus::default()),
            audit: Mutex::new(Audit {
                found,
                next_height: 1,
                ..Audit::default()
            }),
        };
        audit.catch_up(node)?;
        Ok(audit)
    }

    /// What the RPC shows.
    pub fn status(&self) -> Arc<BridgeStatus> {
        Arc::clone(&self.status)
    }

    /// Looks at a transaction of Bitcoin block `height`: a payout of the bridge (its first
    /// input spends the bridge's script, as `prevout` resolves it, and it ends with a payout
    /// marker) not seen before is stored and kept for matching.
    pub fn saw(
        &self,
        node: &Node,
        height: u32,
        tx: &Transaction,
        prevout: impl FnOnce(&OutPoint) -> Option<TxOut>,
    ) -> Result<(), PayerError> {
        let Some(through) = parse_payout(tx) else {
            return Ok(());
        };
        let Some(first) = tx.input.first() else {
            return Ok(());
        };
        if prevout(&first.previous_output).map(|o| o.script_pubkey)
            != Some(self.params.script.clone())
        {
            return Ok(());
        }
        let txid = tx.compute_txid().to_byte_array();
        let mut a = self.audit.lock();
        if a.found.iter().any(|p| p.txid == txid) {
            return Ok(());
        }
        let p = FoundPayout {
            bitcoin_height: height,
            txid,
            through,
            outputs: tx
                .output
                .iter()
                .map(|o| (o.script_pubkey.to_bytes(), o.value.to_sat()))
                .collect(),
        };
        let bytes = borsh::to_vec(&p).map_err(|_| PayerError::BadRecord(a.found.len() as u64))?;
        node.chain()
            .store()
            .put_payout(a.found.len() as u64, &bytes)?;
        a.found.push(p);
        Ok(())
    }

    /// Reads the derived blocks not read yet and matches the payouts whose withdrawals are
    /// all derived.
    pub fn catch_up(&self, node: &Node) -> Result<(), PayerError> {
        let store = node.chain().store();
        let head = node.chain().head().height;
        let mut guard = self.audit.lock();
        let a = &mut *guard;
        while a.next_height <= head {
            for call in bridge_calls(store, a.next_height)? {
                if let BridgeCall::Withdraw(w) = call {
                    a.waiting.push_back(w);
                }
            }
            a.next_height += 1;
        }
        while let Some(p) = a.found.get(a.matched) {
            if p.through.0 > head {
                break;
            }
            let mut problems = Vec::new();
            let mut vout = 0u32;
            while a
                .waiting
                .front()
                .is_some_and(|w| (w.height, w.index) <= p.through)
            {
                let Some(w) = a.waiting.pop_front() else {
                    break;
                };
                match p.outputs.get(vout as usize) {
                    Some((script, value))
                        if *script == w.script.as_bytes() && *value <= w.amount =>
                    {
                        let paid = PaidWithdrawal {
                            l2_txid: w.l2_txid,
                            height: w.height,
                            index: w.index,
                            amount: w.amount,
                            fee_share: w.amount - value,
                            vout,
                        };
                        self.status
                            .paid
                            .write()
                            .insert(w.l2_txid, (a.matched as u64, p.txid, paid));
                    }
                    other => problems.push(format!(
                        "payout {} output {vout} ({}) does not pay withdrawal {} ({} sat to {})",
                        Txid::from_byte_array(p.txid),
                        other.map_or("missing".to_string(), |(s, v)| format!(
                            "{v} sat to {}",
                            hex::encode(s)
                        )),
                        hex::encode(w.l2_txid),
                        w.amount,
                        w.script.to_hex_string()
                    )),
                }
                vout += 1;
            }
            a.matched += 1;
            let mut info = self.status.info.write();
            info.payouts = a.matched as u64;
            if let Some(first) = problems.into_iter().next() {
                tracing::error!("bridge audit: {first}");
                info.last_error = Some(first);
            }
        }
        self.status.info.write().waiting = a.waiting.len() as u64;
        Ok(())
    }

    /// After a reorg to `fork` (and, with `rebuilt`, a node rebuilt from genesis): forgets
    /// the payouts found above the fork and redoes the matching from the first L2 block.
    pub fn forget_above(&self, node: &Node, fork: u32, rebuilt: bool) -> Result<(), PayerError> {
        {
            let mut a = self.audit.lock();
            let first = a.found.iter().position(|p| p.bitcoin_height > fork);
            if first.is_none() && !rebuilt {
                return Ok(());
            }
            let first = first.unwrap_or(a.found.len());
            node.chain().store().truncate_payouts(first as u64)?;
            a.found.truncate(first);
            a.matched = 0;
            a.waiting.clear();
            a.next_height = 1;
            self.status.paid.write().clear();
            *self.status.info.write() = PayerInfo::default();
        }
        self.catch_up(node)
    }
}

fn note_paid(status: &BridgeStatus, record: &PayoutRecord) {
    let mut paid = status.paid.write();
    for w in &record.withdrawals {
        paid.insert(w.l2_txid, (record.index, record.txid, w.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_primitives::BlockHeader;
    use proptest::prelude::*;

    fn params(signer: &SigningKey) -> BridgeParams {
        let sequencer = XOnlyPublicKey::from_slice(&signer.address().0).expect("key");
        BridgeParams {
            sequencer,
            authority: signer.address(),
            script: bridge_script(sequencer),
            start_height: 1,
            confirmations: 1,
            min_deposit: 10_000,
            chain_id: 7,
        }
    }

    fn deposit(n: u8, sats: u64) -> BitcoinDeposit {
        BitcoinDeposit {
            outpoint: OutPoint {
                txid: Txid::from_byte_array([n; 32]),
                vout: u32::from(n % 3),
            },
            recipient: [n.wrapping_add(1); 32],
            amount: BtcAmount::from_sat(sats),
        }
    }

    fn block(bitcoin_height: u64, txs: Vec<SignedTx>) -> Block<Call> {
        Block {
            header: BlockHeader {
                height: 1,
                parent_hash: [0; 32],
                timestamp_ms: 0,
                tx_root: [0; 32],
                state_root: [0; 32],
                bitcoin_height,
                fees: 0,
                tx_count: txs.len() as u32,
            },
            txs,
        }
    }

    /// How a faulty block differs from the one Bitcoin's deposits call for.
    #[derive(Clone, Debug)]
    enum Fault {
        None,
        Drop(usize),
        Duplicate(usize),
        Swap(usize),
        Amount(usize),
        Height(usize),
        ForeignSigner(usize),
    }

    fn fault() -> impl Strategy<Value = Fault> {
        prop_oneof![
            Just(Fault::None),
            any::<usize>().prop_map(Fault::Drop),
            any::<usize>().prop_map(Fault::Duplicate),
            any::<usize>().prop_map(Fault::Swap),
            any::<usize>().prop_map(Fault::Amount),
            any::<usize>().prop_map(Fault::Height),
            any::<usize>().prop_map(Fault::ForeignSigner),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A block passes exactly when its deposits are those of `(parent, bitcoin_height]`,
        /// in order and signed by the authority: any change to that list is refused.
        #[test]
        fn only_bitcoins_deposits_in_order_pass(
            per_height in prop::collection::vec(prop::collection::vec(10_000u64..1_000_000, 0..3), 1..6),
            parent in 0u64..3,
            extra in 0u64..4,
            fault in fault(),
        ) {
            let signer = SigningKey::from_seed(b"bridge-test-sequencer");
            let other = SigningKey::from_seed(b"bridge-test-someone");
            let p = params(&signer);
            let mut log = DepositLog::default();
            let mut n = 0u8;
            let mut all: Vec<(u32, BitcoinDeposit)> = Vec::new();
            for (i, amounts) in per_height.iter().enumerate() {
                let h = i as u32 + 1;
                for &a in amounts {
                    n += 1;
                    all.push((h, deposit(n, a)));
                }
                log.by_height.insert(h, all.iter().filter(|(x, _)| *x == h).map(|(_, d)| d.clone()).collect());
                log.by_height.retain(|_, v| !v.is_empty());
                log.through = Some(h);
            }
            let read = per_height.len() as u64;
            let parent = parent.min(read);
            let through = (parent + extra).min(read);
            let expected: Vec<(u32, BitcoinDeposit)> = all
                .iter()
                .filter(|(h, _)| u64::from(*h) > parent && u64::from(*h) <= through)
                .cloned()
                .collect();
            let mut txs: Vec<SignedTx> = expected
                .iter()
                .map(|(h, d)| deposit_tx(&signer, 7, *h, d))
                .collect();
            let k = txs.len();
            let changed = match fault {
                Fault::None => false,
                Fault::Drop(i) if k > 0 => { txs.remove(i % k); true }
                Fault::Duplicate(i) if k > 0 => { let t = txs[i % k].clone(); txs.insert(i % k, t); true }
                Fault::Swap(i) if k > 1 => {
                    let (a, b) = (i % k, (i + 1) % k);
                    let same = expected[a].1 == expected[b].1 && expected[a].0 == expected[b].0;
                    txs.swap(a, b);
                    !same
                }
                Fault::Amount(i) if k > 0 => {
                    let (h, d) = &expected[i % k];
                    let mut d = d.clone();
                    d.amount += BtcAmount::from_sat(1);
                    txs[i % k] = deposit_tx(&signer, 7, *h, &d);
                    true
                }
                Fault::Height(i) if k > 0 => {
                    let (h, d) = &expected[i % k];
                    txs[i % k] = deposit_tx(&signer, 7, h + 1, d);
                    true
                }
                Fault::ForeignSigner(i) if k > 0 => {
                    let (h, d) = &expected[i % k];
                    txs[i % k] = deposit_tx(&other, 7, *h, d);
                    true
                }
                _ => false,
            };
            let result = check_deposits(&block(through, txs), parent, &log, &p);
            prop_assert_eq!(result.is_ok(), !changed, "{:?} {:?}", fault, result);
            // A header that goes back, or past what was read, is refused whatever it holds.
            if parent > 0 {
                prop_assert!(check_deposits(&block(parent - 1, Vec::new()), parent, &log, &p).is_err());
            }
            prop_assert!(check_deposits(&block(read + 1, Vec::new()), parent, &log, &p).is_err());
        }
    }

    #[test]
    fn the_log_keeps_what_is_not_in_the_chain_yet_and_forgets_a_reorg() {
        let mut log = DepositLog::default();
        for h in 1..=5u32 {
            log.by_height.insert(h, vec![deposit(h as u8, 20_000)]);
            log.through = Some(h);
        }
        assert_eq!(log.between(1, 3).len(), 2);
        assert_eq!(log.between(3, 3).len(), 0);
        log.forget_through(2);
        assert_eq!(log.count(), 3);
        assert_eq!(log.between(0, 5).first().map(|(h, _)| *h), Some(3));
        log.forget_above(4);
        assert_eq!((log.count(), log.through()), (2, Some(4)));
    }
}
