//! The JSON-RPC server (`docs/RPC.md`): HTTP and WebSocket on one address, over
//! [`jsonrpsee`], with the explorer and metrics pages in front ([`crate::pages`]). Every
//! method is a thin adapter: parse and check the parameters, call the node, shape the answer.
//!
//! Invariants:
//! - A bad parameter is a `-32602` error naming the parameter; nothing is changed by a
//!   refused call. No input can panic a handler (parsing is checked, state reads are total).
//! - Reads see one committed block: every handler reads under one state lock.
//! - Requests are bounded (16 MiB, 1,000 calls per batch, [`MAX_CONNECTIONS`]).

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use jsonrpsee::server::{BatchRequestConfig, Server, ServerConfig, ServerHandle};
use jsonrpsee::types::{ErrorObject, ErrorObjectOwned, Params};
use jsonrpsee::{PendingSubscriptionSink, RpcModule, SubscriptionMessage};
use parabit_exec::{Key, KeyMap, Storage, Value};
use parabit_modules::bank::{balance_key, decode_asset_info, nonce_key, AssetInfo, BankKey};
use parabit_modules::channels::{self, Channel, ChannelState, ChannelStatus, Htlc};
use parabit_modules::dex::{self, DexKey, PoolId};
use parabit_modules::{insurance, lending, staking, Call};
use parabit_primitives::{Address, AssetId, Block, BlockHeader, Network, Receipt, TxId, TxStatus};
use serde_json::{json, Value as Json};

use crate::chain::Committed;
use crate::mempool::AccountState;
use crate::mempool::MempoolError;
use crate::node::{Node, StateAccounts};

/// The default RPC address.
pub const DEFAULT_RPC_ADDR: &str = "127.0.0.1:8645";
/// Largest request body.
pub const MAX_REQUEST_BYTES: u32 = 16 * 1024 * 1024;
/// Most calls in one batch.
pub const MAX_BATCH: u32 = 1_000;
/// Most concurrent connections.
pub const MAX_CONNECTIONS: u32 = 1_000;

/// Error code: the mempool refused a transaction.
pub const CODE_REJECTED: i32 = 1001;
/// Error code: a transaction could not be decoded.
pub const CODE_UNDECODABLE: i32 = 1002;
/// Error code: a required object does not exist.
pub const CODE_NOT_FOUND: i32 = 1003;
/// Error code: this node is a read-only full node (it derives the chain from Bitcoin) and
/// takes no transactions.
pub const CODE_READ_ONLY: i32 = 1004;

/// A follower (its settlement status has a verified height) refuses transactions.
fn refuse_if_read_only(c: &RpcContext) -> Result<(), ErrorObjectOwned> {
    if c.node
        .settlement()
        .is_some_and(|s| s.verified_height().is_some())
    {
        return Err(ErrorObject::owned(
            CODE_READ_ONLY,
            "read-only full node: it derives the chain from Bitcoin and takes no transactions; send them to the sequencer",
            None::<()>,
        ));
    }
    Ok(())
}

/// What the RPC serves.
pub struct RpcContext {
    /// The node.
    pub node: Arc<Node>,
    /// The network addresses are shown for.
    pub network: Network,
}

/// Starts the server on `addr`; it runs until the handle is stopped or dropped.
pub async fn start(
    ctx: RpcContext,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, ServerHandle)> {
    let config = ServerConfig::builder()
        .max_request_body_size(MAX_REQUEST_BYTES)
        .max_response_body_size(MAX_REQUEST_BYTES * 4)
        .max_connections(MAX_CONNECTIONS)
        .set_batch_request_config(BatchRequestConfig::Limit(MAX_BATCH))
        .build();
    let pages = tower::ServiceBuilder::new().layer(crate::pages::PagesLayer::new(ctx.node.clone()));
    let server = Server::builder()
        .set_config(config)
        .set_http_middleware(pages)
        .build(addr)
        .await?;
    let local = server.local_addr()?;
    let module = module(ctx).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok((local, server.start(module)))
}

fn invalid(what: &str, why: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObject::owned(-32602, format!("{what}: {why}"), None::<()>)
}

fn internal(why: impl std::fmt::Display) -> ErrorObjectOwned {
    tracing::error!("rpc internal error: {why}");
    ErrorObject::owned(-32603, format!("internal error: {why}"), None::<()>)
}

fn mempool_error(e: &MempoolError) -> ErrorObjectOwned {
    let code = match e {
        MempoolError::Decode(_) => CODE_UNDECODABLE,
        _ => CODE_REJECTED,
    };
    ErrorObject::owned(code, e.to_string(), None::<()>)
}

type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// Positional parameters with named, checked accessors.
struct Args<'a> {
    seq: jsonrpsee::types::params::ParamsSequence<'a>,
}

impl<'a> Args<'a> {
    fn new(p: &'a Params<'a>) -> Args<'a> {
        Args { seq: p.sequence() }
    }

    fn req<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> RpcResult<T> {
        self.seq.next::<T>().map_err(|e| invalid(name, e.message()))
    }

    fn opt<T: serde::de::DeserializeOwned>(&mut self, name: &str) -> RpcResult<Option<T>> {
        self.seq
            .optional_next::<T>()
            .map_err(|e| invalid(name, e.message()))
    }

    fn address(&mut self, name: &str) -> RpcResult<Address> {
        let s: String = self.req(name)?;
        Address::parse(&s)
            .map(|(_, a)| a)
            .map_err(|e| invalid(name, e))
    }

    fn tx_id(&mut self, name: &str) -> RpcResult<TxId> {
        let s: String = self.req(name)?;
        TxId::from_str(&s).map_err(|_| invalid(name, "expected 64 hex digits"))
    }

    fn hash(&mut self, name: &str) -> RpcResult<[u8; 32]> {
        let s: String = self.req(name)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(|_| invalid(name, "expected 64 hex digits"))?;
        Ok(out)
    }
}

/// A `u128` given as a decimal string (or a JSON number).
fn amount_param(v: &Json, name: &str) -> RpcResult<u128> {
    match v {
        Json::String(s) => s
            .parse::<u128>()
            .map_err(|_| invalid(name, "expected a decimal integer string")),
        Json::Number(n) => n
            .as_u64()
            .map(u128::from)
            .ok_or_else(|| invalid(name, "expected a non-negative integer")),
        _ => Err(invalid(name, "expected a decimal integer string")),
    }
}

impl RpcContext {
    fn addr(&self, a: &Address) -> String {
        a.to_bech32(self.network)
    }

    fn header_json(&self, h: &BlockHeader) -> Json {
        json!({
            "height": h.height,
            "hash": hex::encode(h.hash()),
            "parent_hash": hex::encode(h.parent_hash),
            "timestamp_ms": h.timestamp_ms,
            "tx_root": hex::encode(h.tx_root),
            "state_root": hex::encode(h.state_root),
            "bitcoin_height": h.bitcoin_height,
            "fees": h.fees.to_string(),
            "tx_count": h.tx_count,
        })
    }

    fn tx_json(&self, tx: &parabit_modules::SignedTx) -> Json {
        json!({
            "id": tx.id().to_string(),
            "chain_id": tx.tx.chain_id,
            "sender": self.addr(&tx.tx.sender),
            "nonce": tx.tx.nonce,
            "fee": tx.tx.fee.to_string(),
            "call": serde_json::to_value(&tx.tx.call).unwrap_or(Json::Null),
        })
    }

    fn block_json(&self, block: &Block<Call>, full: bool) -> Json {
        let mut out = self.header_json(&block.header);
        let txs: Vec<Json> = if full {
            block.txs.iter().map(|t| self.tx_json(t)).collect()
        } else {
            block
                .txs
                .iter()
                .map(|t| json!(t.id().to_string()))
                .collect()
        };
        out["txs"] = Json::Array(txs);
        out
    }

    fn block_at(&self, height: u64, full: bool) -> RpcResult<Json> {
        match self
            .node
            .chain()
            .store()
            .block::<Call>(height)
            .map_err(internal)?
        {
            Some(b) => Ok(self.block_json(&b, full)),
            None => Ok(Json::Null),
        }
    }

    /// The Bitcoin network of this chain's addresses.
    fn bitcoin_network(&self) -> parabit_bitcoin::bitcoin::Network {
        crate::bridge::bitcoin_network(self.network)
    }

    /// `pb_bridgeInfo`: null for a chain without a bridge.
    fn bridge_info(&self) -> RpcResult<Json> {
        let chain = self.node.chain();
        let params = match crate::bridge::BridgeParams::of(chain.spec()) {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Json::Null),
            Err(e) => return Err(internal(e)),
        };
        let (deposited, withdrawn) = chain.with_state(parabit_modules::bridge::query_totals);
        let settlement = chain.spec().settlement.as_ref();
        let mut info = json!({
            "bridge_address": params.address(self.bitcoin_network()),
            "sequencer_key": hex::encode(params.sequencer.serialize()),
            "start_height": params.start_height,
            "deposit_confirmations": params.confirmations,
            "min_deposit": params.min_deposit,
            "min_withdrawal": settlement.map_or(0, |s| s.min_withdrawal),
            "bitcoin_height": chain.head().bitcoin_height,
            "deposited": deposited.to_string(),
            "withdrawn": withdrawn.to_string(),
            "locked": deposited.saturating_sub(withdrawn).to_string(),
        });
        if let Some(w) = self.node.deposit_watcher() {
            let (read, pending, halted) = w.progress();
            info["watcher"] =
                json!({"read_through": read, "deposits_pending": pending, "halted": halted});
        }
        if let Some(b) = self.node.bridge_status() {
            let p = b.info();
            info["payer"] = json!({"payouts": p.payouts, "waiting": p.waiting,
                "holdings": p.holdings, "last_error": p.last_error});
        }
        Ok(info)
    }

    /// `pb_getWithdrawal`: the withdrawal made by transaction `id`, and its payout.
    fn withdrawal_json(&self, id: &TxId) -> RpcResult<Json> {
        use parabit_bitcoin::bitcoin::hashes::Hash;
        use parabit_modules::bridge::BridgeMsg;
        let store = self.node.chain().store();
        let Some((height, index)) = store.tx_location(id).map_err(internal)? else {
            return Ok(Json::Null);
        };
        let block = store.block::<Call>(height).map_err(internal)?;
        let Some(tx) = block.as_ref().and_then(|b| b.txs.get(index as usize)) else {
            return Ok(Json::Null);
        };
        let Call::Bridge(BridgeMsg::Withdraw {
            amount,
            script_pubkey,
        }) = &tx.tx.call
        else {
            return Err(invalid("id", "not a withdrawal transaction"));
        };
        let script = parabit_bitcoin::bitcoin::ScriptBuf::from_bytes(script_pubkey.clone());
        let address =
            parabit_bitcoin::bitcoin::Address::from_script(&script, self.bitcoin_network())
                .map(|a| a.to_string())
                .ok();
        let receipt = store.receipt(id).map_err(internal)?;
        let mut out = json!({
            "id": id.to_string(),
            "sender": tx.tx.sender.to_bech32(self.network),
            "amount": amount,
            "script_pubkey": hex::encode(script_pubkey),
            "address": address,
            "height": height,
            "index": index,
        });
        match receipt.map(|r| r.status) {
            Some(TxStatus::Success) => {}
            Some(other) => {
                out["status"] = json!("failed");
                out["error"] = json!(other.to_string());
                return Ok(out);
            }
            None => {
                out["status"] = json!("unknown");
                return Ok(out);
            }
        }
        match self.node.bridge_status() {
            None => out["status"] = json!("unknown"),
            Some(b) => match b.payout_of(&id.0) {
                None => out["status"] = json!("pending"),
                Some((payout, txid, w)) => {
                    out["status"] = json!("paid");
                    out["payout"] = json!({
                        "index": payout,
                        "txid": parabit_bitcoin::bitcoin::Txid::from_byte_array(txid).to_string(),
                        "vout": w.vout,
                        "fee_share": w.fee_share,
                        "paid": w.amount.saturating_sub(w.fee_share),
                    });
                }
            },
        }
        Ok(out)
    }

    fn receipt_json(&self, id: &TxId) -> RpcResult<Json> {
        let store = self.node.chain().store();
        let Some((height, index)) = store.tx_location(id).map_err(internal)? else {
            return Ok(Json::Null);
        };
        let Some(receipt) = store.receipt(id).map_err(internal)? else {
            return Ok(Json::Null);
        };
        let hash = store
            .header(height)
            .map_err(internal)?
            .map(|h| hex::encode(h.hash()));
        Ok(receipt_object(id, height, index, hash, &receipt))
    }
}

/// The JSON form of a receipt.
pub fn receipt_object(
    id: &TxId,
    height: u64,
    index: u32,
    block_hash: Option<String>,
    receipt: &Receipt,
) -> Json {
    let (status, error) = match &receipt.status {
        TxStatus::Success => ("success", None),
        TxStatus::Failed(r) => ("failed", Some(r.clone())),
        TxStatus::Invalid(r) => ("invalid", Some(r.clone())),
        TxStatus::Panicked(r) => ("panicked", Some(r.clone())),
    };
    json!({
        "id": id.to_string(),
        "height": height,
        "index": index,
        "block_hash": block_hash,
        "status": status,
        "error": error,
        "fee_paid": receipt.fee_paid.to_string(),
    })
}

fn num(state: &KeyMap<Value>, key: &Key) -> u128 {
    match state.get(key) {
        Some(Value::Num(n)) => *n,
        _ => 0,
    }
}

fn asset_info(state: &KeyMap<Value>, asset: AssetId) -> Option<AssetInfo> {
    match state.get(&BankKey::AssetInfo(asset).key()) {
        Some(Value::Bytes(b)) => decode_asset_info(b),
        _ => None,
    }
}

fn asset_json(state: &KeyMap<Value>, asset: AssetId, info: &AssetInfo, network: Network) -> Json {
    json!({
        "asset": asset.0,
        "symbol": info.symbol,
        "decimals": info.decimals,
        "creator": info.creator.to_bech32(network),
        "supply": num(state, &BankKey::Supply(asset).key()).to_string(),
    })
}

fn htlc_json(h: &Htlc) -> Json {
    json!({
        "a_to_b": h.a_to_b,
        "amount": h.amount.to_string(),
        "hash": hex::encode(h.hash),
        "expiry": h.expiry,
    })
}

fn channel_state_json(s: &ChannelState) -> Json {
    json!({
        "channel": s.channel,
        "nonce": s.nonce,
        "deposit_a": s.deposit_a.to_string(),
        "deposit_b": s.deposit_b.to_string(),
        "balance_a": s.balance_a.to_string(),
        "balance_b": s.balance_b.to_string(),
        "htlcs": s.htlcs.iter().map(htlc_json).collect::<Vec<_>>(),
    })
}

/// `pb_getChannel`'s object: parties in the `pb1…` form, amounts as decimal strings; `state`
/// and `deadline` while closing, the pending HTLCs (with their indices) once settled.
pub fn channel_json(id: u64, ch: &Channel) -> Json {
    let (state, deadline, htlcs) = match &ch.status {
        ChannelStatus::Open | ChannelStatus::Closed => (Json::Null, Json::Null, Vec::new()),
        ChannelStatus::Closing { state, deadline } => {
            (channel_state_json(state), json!(deadline), Vec::new())
        }
        ChannelStatus::Settled { htlcs } => (
            Json::Null,
            Json::Null,
            htlcs
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    let mut j = htlc_json(h.as_ref()?);
                    j["index"] = json!(i);
                    Some(j)
                })
                .collect(),
        ),
    };
    json!({
        "channel": id,
        "a": ch.a.to_string(),
        "b": ch.b.to_string(),
        "asset": ch.asset.0,
        "deposit_a": ch.deposit_a.to_string(),
        "deposit_b": ch.deposit_b.to_string(),
        "challenge_blocks": ch.challenge_blocks,
        "status": ch.status.name(),
        "state": state,
        "deadline": deadline,
        "htlcs": htlcs,
    })
}

fn pool_json(state: &KeyMap<Value>, pool: &PoolId) -> Option<Json> {
    let (ra, rb) = dex::reserves(state, pool).ok()?;
    let lp = dex::lp_asset_id(pool);
    Some(json!({
        "pool": format!("{}-{}", pool.a.0, pool.b.0),
        "asset_a": pool.a.0,
        "asset_b": pool.b.0,
        "reserve_a": ra.to_string(),
        "reserve_b": rb.to_string(),
        "lp_asset": lp.0,
        "lp_supply": num(state, &BankKey::Supply(lp).key()).to_string(),
    }))
}

/// A pool named `"a-b"` (asset ids) or `[a, b]`.
fn pool_param(v: &Json) -> RpcResult<PoolId> {
    let (a, b) = match v {
        Json::String(s) => {
            let (a, b) = s
                .split_once('-')
                .ok_or_else(|| invalid("pool", "expected \"<asset>-<asset>\""))?;
            (
                a.trim()
                    .parse::<u64>()
                    .map_err(|_| invalid("pool", "bad asset id"))?,
                b.trim()
                    .parse::<u64>()
                    .map_err(|_| invalid("pool", "bad asset id"))?,
            )
        }
        Json::Array(v) if v.len() == 2 => (
            v[0].as_u64()
                .ok_or_else(|| invalid("pool", "bad asset id"))?,
            v[1].as_u64()
                .ok_or_else(|| invalid("pool", "bad asset id"))?,
        ),
        _ => {
            return Err(invalid(
                "pool",
                "expected \"<asset>-<asset>\" or [asset, asset]",
            ))
        }
    };
    PoolId::new(AssetId(a), AssetId(b)).map_err(|e| invalid("pool", e))
}

/// A 1e18 fixed-point ratio as a decimal string with 4 decimals, rounded down.
fn wad_ratio(x: u128) -> Option<String> {
    if x == u128::MAX {
        return None;
    }
    let whole = x / lending::WAD;
    let frac = (x % lending::WAD) / (lending::WAD / 10_000);
    Some(format!("{whole}.{frac:04}"))
}

fn state_key_param(v: &Json) -> RpcResult<Key> {
    let fail = |why: &str| invalid("key", why);
    match v {
        Json::String(s) => {
            let bytes = hex::decode(s).map_err(|_| fail("expected hex"))?;
            Key::new(&bytes).map_err(|_| fail("a state key is at most 62 bytes"))
        }
        Json::Object(o) => {
            if let Some(Json::Array(a)) = o.get("balance") {
                let (Some(Json::String(addr)), Some(asset)) = (a.first(), a.get(1)) else {
                    return Err(fail("balance: expected [address, asset]"));
                };
                let (_, addr) = Address::parse(addr).map_err(|e| invalid("key.balance", e))?;
                let asset = asset
                    .as_u64()
                    .ok_or_else(|| fail("balance: bad asset id"))?;
                Ok(balance_key(&addr, AssetId(asset)))
            } else if let Some(Json::String(addr)) = o.get("nonce") {
                let (_, addr) = Address::parse(addr).map_err(|e| invalid("key.nonce", e))?;
                Ok(nonce_key(&addr))
            } else {
                Err(fail(
                    "expected hex, {\"balance\": [address, asset]} or {\"nonce\": address}",
                ))
            }
        }
        _ => Err(fail("expected hex or an object")),
    }
}

/// The encoding of a stored value in proofs (the store's canonical encoding).
pub fn value_hex(v: &Value) -> String {
    hex::encode(parabit_storage::encode_value(v))
}

/// Builds the RPC module.
pub fn module(
    ctx: RpcContext,
) -> Result<RpcModule<RpcContext>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(ctx);

    m.register_method("pb_chainInfo", |_, c, _| -> RpcResult<Json> {
        let head = c.node.chain().head();
        let (txs, bytes) = c.node.mempool_size();
        let mut info = json!({
            "chain_id": c.node.chain().chain_id(),
            "network": c.network.to_string(),
            "height": head.height,
            "block_hash": hex::encode(head.hash()),
            "state_root": hex::encode(head.state_root),
            "timestamp_ms": head.timestamp_ms,
            "mempool_txs": txs,
            "mempool_bytes": bytes,
        });
        if let Some(s) = c.node.settlement() {
            info["batches"] = json!(s.batch_count());
            info["batches_posted"] = json!(s.batches_posted());
            info["batches_confirmed"] = json!(s.batches_confirmed());
            if let Some(h) = s.verified_height() {
                info["verified_height"] = json!(h);
            }
        } else {
            info["batches_posted"] = json!(0);
        }
        Ok(info)
    })?;

    m.register_method("pb_getBatchOfBlock", |p, c, _| -> RpcResult<Json> {
        let height: u64 = Args::new(&p).req("height")?;
        Ok(c.node
            .settlement()
            .and_then(|s| s.batch_of_height(height))
            .map(|r| r.to_json())
            .unwrap_or(Json::Null))
    })?;

    m.register_method("pb_getBatch", |p, c, _| -> RpcResult<Json> {
        let index: u64 = Args::new(&p).req("index")?;
        Ok(c.node
            .settlement()
            .and_then(|s| s.get(index))
            .map(|r| r.to_json())
            .unwrap_or(Json::Null))
    })?;

    m.register_method("pb_bridgeInfo", |_, c, _| -> RpcResult<Json> {
        c.bridge_info()
    })?;

    m.register_method("pb_getDeposit", |p, c, _| -> RpcResult<Json> {
        use parabit_bitcoin::bitcoin::hashes::Hash;
        let mut a = Args::new(&p);
        let txid_text: String = a.req("txid")?;
        let vout: u32 = a.req("vout")?;
        let txid = parabit_bitcoin::bitcoin::Txid::from_str(txid_text.trim())
            .map_err(|_| invalid("txid", "expected a Bitcoin txid (64 hex digits)"))?;
        let amount = c
            .node
            .chain()
            .with_state(|s| parabit_modules::bridge::query_deposit(s, &txid.to_byte_array(), vout));
        Ok(json!({"txid": txid.to_string(), "vout": vout,
            "credited": amount.is_some(), "amount": amount}))
    })?;

    m.register_method("pb_getWithdrawal", |p, c, _| -> RpcResult<Json> {
        let id = Args::new(&p).tx_id("id")?;
        c.withdrawal_json(&id)
    })?;

    m.register_method("pb_getBlockByHeight", |p, c, _| -> RpcResult<Json> {
        let mut a = Args::new(&p);
        let height: u64 = a.req("height")?;
        let full = a.opt::<bool>("full")?.unwrap_or(false);
        c.block_at(height, full)
    })?;

    m.register_method("pb_getBlockByHash", |p, c, _| -> RpcResult<Json> {
        let mut a = Args::new(&p);
        let hash = a.hash("hash")?;
        let full = a.opt::<bool>("full")?.unwrap_or(false);
        match c.node.chain().store().height_of(&hash).map_err(internal)? {
            Some(h) => c.block_at(h, full),
            None => Ok(Json::Null),
        }
    })?;

    m.register_method("pb_sendRawTransaction", |p, c, _| -> RpcResult<String> {
        refuse_if_read_only(c)?;
        let raw: String = Args::new(&p).req("tx")?;
        let bytes = hex::decode(raw.trim()).map_err(|_| invalid("tx", "expected hex"))?;
        match c.node.submit_raw(&[bytes]).pop() {
            Some(Ok(id)) => Ok(id.to_string()),
            Some(Err(e)) => Err(mempool_error(&e)),
            None => Err(internal("no admission result")),
        }
    })?;

    m.register_method(
        "pb_sendRawTransactions",
        |p, c, _| -> RpcResult<Vec<Json>> {
            refuse_if_read_only(c)?;
            let raws: Vec<String> = Args::new(&p).req("txs")?;
            if raws.len() > 100_000 {
                return Err(invalid("txs", "at most 100000 transactions per call"));
            }
            let mut decoded = Vec::with_capacity(raws.len());
            for (i, r) in raws.iter().enumerate() {
                decoded.push(
                    hex::decode(r.trim())
                        .map_err(|_| invalid(&format!("txs[{i}]"), "expected hex"))?,
                );
            }
            Ok(c.node
                .submit_raw(&decoded)
                .into_iter()
                .map(|r| match r {
                    Ok(id) => json!({"id": id.to_string()}),
                    Err(e) => {
                        let e = mempool_error(&e);
                        json!({"error": {"code": e.code(), "message": e.message()}})
                    }
                })
                .collect())
        },
    )?;

    m.register_method("pb_getTransaction", |p, c, _| -> RpcResult<Json> {
        let id = Args::new(&p).tx_id("id")?;
        if let Some(tx) = c.node.pending(&id) {
            return Ok(
                json!({"id": id.to_string(), "status": "pending", "height": null,
                "index": null, "tx": c.tx_json(&tx)}),
            );
        }
        let store = c.node.chain().store();
        let Some((height, index)) = store.tx_location(&id).map_err(internal)? else {
            return Ok(Json::Null);
        };
        let block = store.block::<Call>(height).map_err(internal)?;
        let tx = block.as_ref().and_then(|b| b.txs.get(index as usize));
        Ok(
            json!({"id": id.to_string(), "status": "committed", "height": height,
            "index": index, "tx": tx.map(|t| c.tx_json(t))}),
        )
    })?;

    m.register_method("pb_getTransactionReceipt", |p, c, _| -> RpcResult<Json> {
        let id = Args::new(&p).tx_id("id")?;
        c.receipt_json(&id)
    })?;

    m.register_method(
        "pb_getAccountTransactions",
        |p, c, _| -> RpcResult<Vec<String>> {
            let mut a = Args::new(&p);
            let who = a.address("address")?;
            let limit = a.opt::<usize>("limit")?.unwrap_or(20).min(1_000);
            let ids = c
                .node
                .chain()
                .store()
                .account_txs(&who, limit)
                .map_err(internal)?;
            Ok(ids.iter().map(|i| i.to_string()).collect())
        },
    )?;

    m.register_method("pb_getBalance", |p, c, _| -> RpcResult<Json> {
        let mut a = Args::new(&p);
        let who = a.address("address")?;
        let asset = AssetId(a.opt::<u64>("asset")?.unwrap_or(0));
        c.node.chain().with_state(|s| {
            let info = asset_info(s, asset).ok_or_else(|| {
                ErrorObject::owned(
                    CODE_NOT_FOUND,
                    format!("unknown asset {}", asset.0),
                    None::<()>,
                )
            })?;
            Ok(json!({
                "address": c.addr(&who),
                "asset": asset.0,
                "symbol": info.symbol,
                "decimals": info.decimals,
                "amount": num(s, &balance_key(&who, asset)).to_string(),
            }))
        })
    })?;

    m.register_method("pb_getNonce", |p, c, _| -> RpcResult<u64> {
        let mut a = Args::new(&p);
        let who = a.address("address")?;
        match a.opt::<String>("block")?.as_deref() {
            None | Some("latest") => {
                Ok(c.node.chain().with_state(|s| StateAccounts(s).nonce(&who)))
            }
            Some("pending") => Ok(c.node.pending_nonce(&who)),
            Some(other) => Err(invalid(
                "block",
                format!("expected \"latest\" or \"pending\", not {other:?}"),
            )),
        }
    })?;

    m.register_method("pb_getAsset", |p, c, _| -> RpcResult<Json> {
        let asset = AssetId(Args::new(&p).req::<u64>("asset")?);
        Ok(c.node.chain().with_state(|s| {
            asset_info(s, asset).map_or(Json::Null, |i| asset_json(s, asset, &i, c.network))
        }))
    })?;

    m.register_method("pb_listAssets", |_, c, _| -> RpcResult<Vec<Json>> {
        Ok(c.node.chain().with_state(|s| {
            let mut assets: Vec<(AssetId, AssetInfo)> = s
                .iter()
                .filter_map(|(k, v)| match (BankKey::from_bytes(k.as_bytes()), v) {
                    (Some(BankKey::AssetInfo(a)), Value::Bytes(b)) => {
                        decode_asset_info(b).map(|i| (a, i))
                    }
                    _ => None,
                })
                .collect();
            assets.sort_by_key(|(a, _)| *a);
            assets
                .iter()
                .map(|(a, i)| asset_json(s, *a, i, c.network))
                .collect()
        }))
    })?;

    m.register_method("pb_getPool", |p, c, _| -> RpcResult<Json> {
        let v: Json = Args::new(&p).req("pool")?;
        let pool = pool_param(&v)?;
        Ok(c.node
            .chain()
            .with_state(|s| pool_json(s, &pool).unwrap_or(Json::Null)))
    })?;

    m.register_method("pb_listPools", |_, c, _| -> RpcResult<Vec<Json>> {
        Ok(c.node.chain().with_state(|s| {
            let mut pools: Vec<PoolId> = s
                .keys()
                .filter_map(|k| match DexKey::from_bytes(k.as_bytes()) {
                    Some(DexKey::Pool(p)) => Some(p),
                    _ => None,
                })
                .collect();
            pools.sort();
            pools.iter().filter_map(|p| pool_json(s, p)).collect()
        }))
    })?;

    m.register_method("pb_quoteSwap", |p, c, _| -> RpcResult<Json> {
        let q: Json = Args::new(&p).req("quote")?;
        let path: Vec<u64> = serde_json::from_value(q.get("path").cloned().unwrap_or(Json::Null))
            .map_err(|_| invalid("quote.path", "expected a list of asset ids"))?;
        let path: Vec<AssetId> = path.into_iter().map(AssetId).collect();
        let batch = q.get("batch").and_then(Json::as_bool).unwrap_or(false);
        c.node.chain().with_state(|s| {
            if let Some(v) = q.get("amount_in") {
                let amount_in = amount_param(v, "quote.amount_in")?;
                if batch {
                    let [from, to] = path[..] else {
                        return Err(invalid("quote.path", "a batch quote takes exactly two assets"));
                    };
                    let bq = dex::quote_batch(s, from, to, amount_in).map_err(|e| invalid("quote", e))?;
                    return Ok(json!({"amount_out": bq.amount_out.to_string(), "path": path}));
                }
                let amounts = dex::quote_exact_in(s, &path, amount_in).map_err(|e| invalid("quote", e))?;
                let out = amounts.last().copied().unwrap_or(0);
                Ok(json!({"amount_out": out.to_string(), "amounts": amounts.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "path": path}))
            } else if let Some(v) = q.get("amount_out") {
                let amount_out = amount_param(v, "quote.amount_out")?;
                let amounts = dex::quote_exact_out(s, &path, amount_out).map_err(|e| invalid("quote", e))?;
                let inp = amounts.first().copied().unwrap_or(0);
                Ok(json!({"amount_in": inp.to_string(), "amounts": amounts.iter().map(|a| a.to_string()).collect::<Vec<_>>(), "path": path}))
            } else {
                Err(invalid("quote", "give amount_in or amount_out"))
            }
        })
    })?;

    m.register_method("pb_getMarkets", |_, c, _| -> RpcResult<Json> {
        c.node.chain().with_state(|s| {
            let markets = lending::query_markets(s).map_err(internal)?;
            serde_json::to_value(&markets).map_err(internal)
        })
    })?;

    m.register_method("pb_getPosition", |p, c, _| -> RpcResult<Json> {
        let who = Args::new(&p).address("address")?;
        c.node.chain().with_state(|s| {
            let h = lending::query_account(s, &who).map_err(|e| invalid("address", e))?;
            Ok(json!({
                "address": c.addr(&who),
                "positions": serde_json::to_value(&h.positions).map_err(internal)?,
                "collateral_value": h.collateral_value.to_string(),
                "borrow_limit": h.borrow_limit.to_string(),
                "liquidation_value": h.liquidation_value.to_string(),
                "debt_value": h.debt_value.to_string(),
                "health_factor": wad_ratio(h.health_factor),
                "borrow_health": wad_ratio(h.borrow_health),
            }))
        })
    })?;

    m.register_method("pb_getStakingPool", |p, c, _| -> RpcResult<Json> {
        let id: u64 = Args::new(&p).req("pool")?;
        c.node.chain().with_state(|s| {
            let Some(config) = staking::query_pool(s, id) else {
                return Ok(Json::Null);
            };
            Ok(json!({
                "pool": id,
                "config": serde_json::to_value(&config).map_err(internal)?,
                "total_staked": num(s, &staking::StakingKey::TotalStaked(id).key()).to_string(),
                "total_unbonding": num(s, &staking::StakingKey::TotalUnbonding(id).key()).to_string(),
                "reward_balance": num(s, &staking::StakingKey::RewardBalance(id).key()).to_string(),
                "reward_per_share": num(s, &staking::StakingKey::RewardPerShare(id).key()).to_string(),
            }))
        })
    })?;

    m.register_method("pb_getStake", |p, c, _| -> RpcResult<Json> {
        let mut a = Args::new(&p);
        let id: u64 = a.req("pool")?;
        let who = a.address("address")?;
        c.node.chain().with_state(|s| {
            let claimable = staking::claimable(s, &who, id).map_err(|e| invalid("pool", e))?;
            Ok(json!({
                "pool": id,
                "address": c.addr(&who),
                "stake": num(s, &staking::StakingKey::Stake(id, who).key()).to_string(),
                "claimable": claimable.to_string(),
            }))
        })
    })?;

    m.register_method("pb_getInsurancePool", |p, c, _| -> RpcResult<Json> {
        let id: u64 = Args::new(&p).req("pool")?;
        c.node
            .chain()
            .with_state(|s| match insurance::query_pool(s, id) {
                Some(pool) => serde_json::to_value(&pool).map_err(internal),
                None => Ok(Json::Null),
            })
    })?;

    m.register_method("pb_getCover", |p, c, _| -> RpcResult<Json> {
        let id: u64 = Args::new(&p).req("cover")?;
        c.node
            .chain()
            .with_state(|s| match insurance::query_cover(s, id) {
                Some(x) => serde_json::to_value(&x).map_err(internal),
                None => Ok(Json::Null),
            })
    })?;

    m.register_method("pb_getClaim", |p, c, _| -> RpcResult<Json> {
        let id: u64 = Args::new(&p).req("cover")?;
        c.node
            .chain()
            .with_state(|s| match insurance::query_claim(s, id) {
                Some(x) => serde_json::to_value(&x).map_err(internal),
                None => Ok(Json::Null),
            })
    })?;

    m.register_method("pb_getChannel", |p, c, _| -> RpcResult<Json> {
        let id: u64 = Args::new(&p).req("channel")?;
        c.node
            .chain()
            .with_state(|s| match s.get(&channels::channel_key(id)) {
                None => Ok(Json::Null),
                Some(Value::Bytes(b)) => channels::decode_channel(b)
                    .map(|ch| channel_json(id, &ch))
                    .ok_or_else(|| internal(format!("channel {id}: undecodable record"))),
                Some(_) => Err(internal(format!("channel {id}: not a record"))),
            })
    })?;

    m.register_method("pb_quotePremium", |p, c, _| -> RpcResult<String> {
        let mut a = Args::new(&p);
        let id: u64 = a.req("pool")?;
        let amount: Json = a.req("amount")?;
        let amount = amount_param(&amount, "amount")?;
        let period: u64 = a.req("period_blocks")?;
        c.node.chain().with_state(|s| {
            insurance::quote_premium(s, id, amount, period)
                .map(|p| p.to_string())
                .map_err(|e| invalid("quote", e))
        })
    })?;

    m.register_method("pb_getProof", |p, c, _| -> RpcResult<Json> {
        let mut a = Args::new(&p);
        let key: Json = a.req("key")?;
        let key = state_key_param(&key)?;
        let head = c.node.chain().head().height;
        let height = a.opt::<u64>("height")?.unwrap_or(head);
        if height > head {
            return Err(invalid(
                "height",
                format!("{height} is above the head {head}"),
            ));
        }
        let store = c.node.chain().store();
        let header = store.header(height).map_err(internal)?.ok_or_else(|| {
            ErrorObject::owned(CODE_NOT_FOUND, format!("no block {height}"), None::<()>)
        })?;
        let (value, proof) = store
            .get_with_proof(&key, height)
            .map_err(|e| ErrorObject::owned(CODE_NOT_FOUND, e.to_string(), None::<()>))?;
        Ok(json!({
            "key": hex::encode(key.as_bytes()),
            "value": value.as_ref().map(value_hex),
            "height": height,
            "state_root": hex::encode(header.state_root),
            "proof": hex::encode(proof.to_bytes()),
        }))
    })?;

    m.register_subscription(
        "pb_subscribeNewHeads",
        "pb_newHead",
        "pb_unsubscribeNewHeads",
        |_, pending: PendingSubscriptionSink, c, _| async move {
            let mut events = c.node.subscribe();
            let sink = pending.accept().await?;
            loop {
                let event: Arc<Committed> = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return Ok(()),
                };
                let msg = serde_json::value::to_raw_value(&c.header_json(&event.header))?;
                if sink.send(SubscriptionMessage::from(msg)).await.is_err() {
                    return Ok(());
                }
            }
        },
    )?;

    m.register_subscription(
        "pb_subscribeAccount",
        "pb_accountTx",
        "pb_unsubscribeAccount",
        |p, pending: PendingSubscriptionSink, c, _| async move {
            let who = match Args::new(&p).address("address") {
                Ok(w) => w,
                Err(e) => {
                    pending.reject(e).await;
                    return Ok(());
                }
            };
            let mut events = c.node.subscribe();
            let sink = pending.accept().await?;
            loop {
                let event: Arc<Committed> = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => return Ok(()),
                };
                for (i, accounts) in event.accounts.iter().enumerate() {
                    if !accounts.contains(&who) {
                        continue;
                    }
                    let (Some(id), Some(r)) = (event.tx_ids.get(i), event.receipts.get(i)) else {
                        continue;
                    };
                    let obj = receipt_object(
                        id,
                        event.header.height,
                        i as u32,
                        Some(hex::encode(event.header.hash())),
                        r,
                    );
                    let msg = serde_json::value::to_raw_value(&obj)?;
                    if sink.send(SubscriptionMessage::from(msg)).await.is_err() {
                        return Ok(());
                    }
                }
            }
        },
    )?;

    Ok(m)
}

/// Reads a key from the committed state (for tests and tools).
pub fn read_state(node: &Node, key: &Key) -> Option<Value> {
    node.chain().with_state(|s| Storage::get(s, key))
}

#[cfg(test)]
mod channel_tests {
    use super::*;
    use parabit_primitives::SigningKey;

    #[test]
    fn channel_json_shows_status_state_and_pending_htlcs() {
        let a = SigningKey::from_seed(b"rpc channel a").address();
        let b = SigningKey::from_seed(b"rpc channel b").address();
        let htlc = Htlc {
            a_to_b: true,
            amount: u128::MAX,
            hash: [7; 32],
            expiry: 90,
        };
        let mut ch = Channel {
            a,
            b,
            asset: AssetId(3),
            deposit_a: 10,
            deposit_b: 5,
            challenge_blocks: 4,
            status: ChannelStatus::Open,
        };
        let v = channel_json(9, &ch);
        assert_eq!(v["a"], a.to_bech32(Network::Mainnet));
        assert_eq!(v["deposit_b"], "5");
        assert_eq!(
            (v["status"].as_str(), v["state"].is_null()),
            (Some("open"), true)
        );
        ch.status = ChannelStatus::Closing {
            state: ChannelState {
                channel: 9,
                nonce: 2,
                deposit_a: 10,
                deposit_b: 5,
                balance_a: 3,
                balance_b: 12,
                htlcs: vec![],
            },
            deadline: 40,
        };
        let v = channel_json(9, &ch);
        assert_eq!(v["status"], "closing");
        assert_eq!(
            (v["deadline"].as_u64(), v["state"]["nonce"].as_u64()),
            (Some(40), Some(2))
        );
        assert_eq!(v["state"]["balance_b"], "12");
        ch.status = ChannelStatus::Settled {
            htlcs: vec![None, Some(htlc)],
        };
        let v = channel_json(9, &ch);
        assert_eq!(v["status"], "settled");
        assert_eq!(v["htlcs"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["htlcs"][0]["index"], 1);
        assert_eq!(v["htlcs"][0]["amount"], u128::MAX.to_string());
        assert_eq!(v["htlcs"][0]["hash"], "07".repeat(32));
    }
}
