//! The JSON-RPC client the `tx` and `query` commands use (`docs/RPC.md`), and the chain
//! lookups ([`Lookup`]) that turn human input (asset symbols, human amounts, deadlines in
//! blocks from now) into a transaction's exact call.
//!
//! Invariants:
//! - The CLI is synchronous: [`Rpc`] owns a single-threaded tokio runtime and blocks on each
//!   call. Every call has a timeout; no call retries on its own.
//! - Every failure is an `anyhow` error naming the method and the node's URL; a JSON-RPC
//!   error keeps its code and message (`RPC error 1001: nonce too low …`).
//! - Numbers the node sends as decimal strings (`u128` amounts) are read with [`json_u128`],
//!   which also accepts JSON numbers; nothing here panics on a malformed answer.
//! - [`RpcLookup`] caches what it reads (the asset list, the chain height) for the life of
//!   one command, so one command sees one consistent view of assets.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use jsonrpsee::core::client::{ClientT, Error as ClientError};
use jsonrpsee::core::params::ArrayParams;
use jsonrpsee::http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee::ws_client::{WsClient, WsClientBuilder};
use parabit_primitives::{Address, AssetId, Network};
use serde_json::{json, Value as Json};

/// The node's RPC address when neither `--rpc` nor `PARABIT_RPC` is given.
pub const DEFAULT_RPC_URL: &str = "http://127.0.0.1:8645";

/// Where the node is: `--rpc URL` (env `PARABIT_RPC`) and the per-call timeout.
#[derive(Debug, Clone, clap::Args)]
pub struct RpcArgs {
    /// The node's JSON-RPC URL (`http://…` or `ws://…`).
    #[arg(long = "rpc", env = "PARABIT_RPC", default_value = DEFAULT_RPC_URL, global = true)]
    pub url: String,
    /// Seconds before one RPC call is abandoned.
    #[arg(
        long = "rpc-timeout",
        default_value_t = 10,
        value_name = "SECS",
        global = true
    )]
    pub timeout_secs: u64,
}

enum Transport {
    Http(HttpClient),
    Ws(WsClient),
}

/// A blocking JSON-RPC client.
pub struct Rpc {
    url: String,
    transport: Transport,
    runtime: tokio::runtime::Runtime,
}

impl Rpc {
    /// Connects to `args.url` (HTTP clients connect lazily, on the first call).
    pub fn connect(args: &RpcArgs) -> Result<Rpc> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let timeout = Duration::from_secs(args.timeout_secs.max(1));
        let url = args.url.trim().to_string();
        let transport = if url.starts_with("ws://") || url.starts_with("wss://") {
            let client = runtime
                .block_on(
                    WsClientBuilder::default()
                        .request_timeout(timeout)
                        .connection_timeout(timeout)
                        .build(&url),
                )
                .with_context(|| {
                    format!(
                        "cannot connect to the node at {url} (is it running? try `parabit devnet`)"
                    )
                })?;
            Transport::Ws(client)
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let client = runtime
                .block_on(async {
                    HttpClientBuilder::default()
                        .request_timeout(timeout)
                        .build(&url)
                })
                .with_context(|| format!("invalid RPC URL {url:?}"))?;
            Transport::Http(client)
        } else {
            bail!("invalid RPC URL {url:?}: expected http://HOST:PORT or ws://HOST:PORT");
        };
        Ok(Rpc {
            url,
            transport,
            runtime,
        })
    }

    /// Calls `method` with positional `params` and returns its raw JSON result.
    pub fn call(&self, method: &str, params: Vec<Json>) -> Result<Json> {
        let mut p = ArrayParams::new();
        for v in params {
            p.insert(v).context("cannot encode RPC parameters")?;
        }
        let result: std::result::Result<Json, ClientError> = match &self.transport {
            Transport::Http(c) => self.runtime.block_on(c.request(method, p)),
            Transport::Ws(c) => self.runtime.block_on(c.request(method, p)),
        };
        result.map_err(|e| match e {
            ClientError::Call(obj) => anyhow!(
                "{method}: RPC error {}: {}",
                obj.code(),
                obj.message()
            ),
            ClientError::RequestTimeout => {
                anyhow!("{method}: the node at {} did not answer in time", self.url)
            }
            ClientError::Transport(t) => anyhow!(
                "{method}: cannot reach the node at {} ({t}); is it running? start one with `parabit devnet`",
                self.url
            ),
            other => anyhow!("{method}: {other}"),
        })
    }

    /// `pb_chainInfo`.
    pub fn chain_info(&self) -> Result<ChainInfo> {
        let v = self.call("pb_chainInfo", vec![])?;
        ChainInfo::from_json(&v).context("pb_chainInfo: unexpected answer")
    }

    /// `pb_getNonce`: the next nonce `address` must use.
    pub fn nonce(&self, address: &Address, network: Network) -> Result<u64> {
        let v = self.call("pb_getNonce", vec![json!(address.to_bech32(network))])?;
        v.as_u64()
            .ok_or_else(|| anyhow!("pb_getNonce: expected a number, got {v}"))
    }

    /// `pb_getNonce(address, "pending")`: the next nonce counting `address`'s pooled
    /// transactions, so that several can be sent without waiting.
    pub fn pending_nonce(&self, address: &Address, network: Network) -> Result<u64> {
        let v = self.call(
            "pb_getNonce",
            vec![json!(address.to_bech32(network)), json!("pending")],
        )?;
        v.as_u64()
            .ok_or_else(|| anyhow!("pb_getNonce: expected a number, got {v}"))
    }

    /// `pb_sendRawTransaction`: the id the node gives the transaction.
    pub fn send_raw(&self, raw: &[u8]) -> Result<String> {
        let v = self.call("pb_sendRawTransaction", vec![json!(hex::encode(raw))])?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("pb_sendRawTransaction: expected an id, got {v}"))
    }

    /// `pb_getTransactionReceipt`: `None` until committed.
    pub fn receipt(&self, id: &str) -> Result<Option<Json>> {
        let v = self.call("pb_getTransactionReceipt", vec![json!(id)])?;
        Ok((!v.is_null()).then_some(v))
    }

    /// Polls the receipt of `id` every `interval` until it exists or `timeout` passes.
    pub fn wait_receipt(&self, id: &str, timeout: Duration, interval: Duration) -> Result<Json> {
        let start = std::time::Instant::now();
        loop {
            if let Some(r) = self.receipt(id)? {
                return Ok(r);
            }
            if start.elapsed() >= timeout {
                bail!(
                    "transaction {id} was sent but not committed within {}s (it may still commit: \
                     check with `parabit query receipt {id}`)",
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(interval);
        }
    }

    /// `pb_listAssets`.
    pub fn list_assets(&self) -> Result<Vec<AssetMeta>> {
        let v = self.call("pb_listAssets", vec![])?;
        let list = v
            .as_array()
            .ok_or_else(|| anyhow!("pb_listAssets: expected a list, got {v}"))?;
        list.iter()
            .map(|a| AssetMeta::from_json(a).context("pb_listAssets: unexpected entry"))
            .collect()
    }

    /// `pb_getAsset`: `None` for an unknown asset.
    pub fn asset(&self, id: AssetId) -> Result<Option<AssetMeta>> {
        let v = self.call("pb_getAsset", vec![json!(id.0)])?;
        if v.is_null() {
            return Ok(None);
        }
        AssetMeta::from_json(&v)
            .map(Some)
            .context("pb_getAsset: unexpected answer")
    }
}

/// What `pb_chainInfo` says (the fields the CLI needs; the whole object is kept in `raw`).
#[derive(Debug, Clone)]
pub struct ChainInfo {
    /// The chain id transactions must carry.
    pub chain_id: u64,
    /// The network addresses are shown for.
    pub network: Network,
    /// The head's height.
    pub height: u64,
    /// The whole answer.
    pub raw: Json,
}

impl ChainInfo {
    fn from_json(v: &Json) -> Result<ChainInfo> {
        let chain_id = v["chain_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no chain_id in {v}"))?;
        let height = v["height"]
            .as_u64()
            .ok_or_else(|| anyhow!("no height in {v}"))?;
        let network = match v["network"].as_str() {
            Some("mainnet") => Network::Mainnet,
            _ => Network::Regtest,
        };
        Ok(ChainInfo {
            chain_id,
            network,
            height,
            raw: v.clone(),
        })
    }
}

/// An asset's id, symbol and decimals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetMeta {
    /// Its id.
    pub id: AssetId,
    /// Its symbol (`BTC`).
    pub symbol: String,
    /// Decimals of its human unit.
    pub decimals: u8,
}

impl AssetMeta {
    /// Reads `{asset, symbol, decimals}`.
    pub fn from_json(v: &Json) -> Result<AssetMeta> {
        let id = v["asset"]
            .as_u64()
            .ok_or_else(|| anyhow!("no asset id in {v}"))?;
        let symbol = v["symbol"].as_str().unwrap_or_default().to_string();
        let decimals = v["decimals"]
            .as_u64()
            .and_then(|d| u8::try_from(d).ok())
            .ok_or_else(|| anyhow!("no decimals in {v}"))?;
        Ok(AssetMeta {
            id: AssetId(id),
            symbol,
            decimals,
        })
    }

    /// `value` base units in this asset's human unit, with its symbol (`0.5 BTC`).
    pub fn show(&self, value: u128) -> String {
        let sym = if self.symbol.is_empty() {
            format!("asset#{}", self.id.0)
        } else {
            self.symbol.clone()
        };
        parabit_wallet::format_amount_with_symbol(value, self.decimals, &sym)
    }
}

/// A `u128` the node sent as a decimal string or a JSON number.
pub fn json_u128(v: &Json) -> Option<u128> {
    match v {
        Json::String(s) => s.parse().ok(),
        Json::Number(n) => n
            .as_u64()
            .map(u128::from)
            .or_else(|| n.to_string().parse().ok()),
        _ => None,
    }
}

/// The chain facts that turning a command into a call needs. [`RpcLookup`] asks the node;
/// tests use a fixed table.
pub trait Lookup {
    /// The asset with this id.
    fn asset(&self, id: AssetId) -> Result<AssetMeta>;
    /// The asset with this symbol (case-insensitive).
    fn asset_by_symbol(&self, symbol: &str) -> Result<AssetMeta>;
    /// The current height (deadlines are counted from it).
    fn height(&self) -> Result<u64>;
    /// The output of swapping `amount_in` along `path` now (`batch`: the batch auction's
    /// quote for a single pool).
    fn quote_exact_in(&self, path: &[AssetId], amount_in: u128, batch: bool) -> Result<u128>;
    /// The input needed to receive `amount_out` along `path` now.
    fn quote_exact_out(&self, path: &[AssetId], amount_out: u128) -> Result<u128>;
    /// A staking pool's (stake asset, reward asset).
    fn staking_pool_assets(&self, pool: u64) -> Result<(AssetId, AssetId)>;
    /// An insurance pool's asset.
    fn insurance_pool_asset(&self, pool: u64) -> Result<AssetId>;
    /// The insurance pool of a cover.
    fn cover_pool(&self, cover: u64) -> Result<u64>;
    /// The premium of `amount` of cover for `period_blocks` in `pool` now.
    fn quote_premium(&self, pool: u64, amount: u128, period_blocks: u64) -> Result<u128>;
}

/// [`Lookup`] over RPC, caching the asset list and the height.
pub struct RpcLookup<'a> {
    rpc: &'a Rpc,
    height: u64,
    assets: RefCell<Option<BTreeMap<u64, AssetMeta>>>,
}

impl<'a> RpcLookup<'a> {
    /// A lookup at the given chain head.
    pub fn new(rpc: &'a Rpc, info: &ChainInfo) -> RpcLookup<'a> {
        RpcLookup {
            rpc,
            height: info.height,
            assets: RefCell::new(None),
        }
    }

    fn assets(&self) -> Result<BTreeMap<u64, AssetMeta>> {
        if let Some(a) = self.assets.borrow().as_ref() {
            return Ok(a.clone());
        }
        let list: BTreeMap<u64, AssetMeta> = self
            .rpc
            .list_assets()?
            .into_iter()
            .map(|a| (a.id.0, a))
            .collect();
        *self.assets.borrow_mut() = Some(list.clone());
        Ok(list)
    }
}

fn path_json(path: &[AssetId]) -> Json {
    json!(path.iter().map(|a| a.0).collect::<Vec<_>>())
}

impl Lookup for RpcLookup<'_> {
    fn asset(&self, id: AssetId) -> Result<AssetMeta> {
        if let Some(a) = self.assets()?.get(&id.0) {
            return Ok(a.clone());
        }
        // Not in the list (e.g. created since): ask for it alone.
        self.rpc
            .asset(id)?
            .ok_or_else(|| anyhow!("unknown asset {id} (see `parabit query assets`)"))
    }

    fn asset_by_symbol(&self, symbol: &str) -> Result<AssetMeta> {
        let assets = self.assets()?;
        let matches: Vec<&AssetMeta> = assets
            .values()
            .filter(|a| a.symbol.eq_ignore_ascii_case(symbol))
            .collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => bail!("unknown asset symbol {symbol:?} (see `parabit query assets`)"),
            many => bail!(
                "asset symbol {symbol:?} is ambiguous: ids {}; give the id instead",
                many.iter()
                    .map(|a| a.id.0.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    fn height(&self) -> Result<u64> {
        Ok(self.height)
    }

    fn quote_exact_in(&self, path: &[AssetId], amount_in: u128, batch: bool) -> Result<u128> {
        let mut q = json!({
            "path": path_json(path),
            "route": path_json(path),
            "asset_in": path.first().map(|a| a.0),
            "amount_in": amount_in.to_string(),
        });
        if batch {
            q["batch"] = json!(true);
        }
        let v = self.rpc.call("pb_quoteSwap", vec![q])?;
        json_u128(&v["amount_out"]).ok_or_else(|| anyhow!("pb_quoteSwap: no amount_out in {v}"))
    }

    fn quote_exact_out(&self, path: &[AssetId], amount_out: u128) -> Result<u128> {
        let q = json!({
            "path": path_json(path),
            "route": path_json(path),
            "asset_in": path.first().map(|a| a.0),
            "amount_out": amount_out.to_string(),
        });
        let v = self.rpc.call("pb_quoteSwap", vec![q])?;
        json_u128(&v["amount_in"]).ok_or_else(|| anyhow!("pb_quoteSwap: no amount_in in {v}"))
    }

    fn staking_pool_assets(&self, pool: u64) -> Result<(AssetId, AssetId)> {
        let v = self.rpc.call("pb_getStakingPool", vec![json!(pool)])?;
        if v.is_null() {
            bail!("unknown staking pool {pool}");
        }
        let c = if v.get("config").is_some() {
            &v["config"]
        } else {
            &v
        };
        match (c["stake_asset"].as_u64(), c["reward_asset"].as_u64()) {
            (Some(s), Some(r)) => Ok((AssetId(s), AssetId(r))),
            _ => bail!("pb_getStakingPool: no stake_asset/reward_asset in {v}"),
        }
    }

    fn insurance_pool_asset(&self, pool: u64) -> Result<AssetId> {
        let v = self.rpc.call("pb_getInsurancePool", vec![json!(pool)])?;
        if v.is_null() {
            bail!("unknown insurance pool {pool}");
        }
        v["asset"]
            .as_u64()
            .map(AssetId)
            .ok_or_else(|| anyhow!("pb_getInsurancePool: no asset in {v}"))
    }

    fn cover_pool(&self, cover: u64) -> Result<u64> {
        let v = self.rpc.call("pb_getCover", vec![json!(cover)])?;
        if v.is_null() {
            bail!("unknown cover {cover}");
        }
        v["pool"]
            .as_u64()
            .ok_or_else(|| anyhow!("pb_getCover: no pool in {v}"))
    }

    fn quote_premium(&self, pool: u64, amount: u128, period_blocks: u64) -> Result<u128> {
        let v = self.rpc.call(
            "pb_quotePremium",
            vec![json!(pool), json!(amount.to_string()), json!(period_blocks)],
        )?;
        json_u128(&v).ok_or_else(|| anyhow!("pb_quotePremium: expected an amount, got {v}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn u128_from_strings_and_numbers() {
        assert_eq!(
            json_u128(&json!("340282366920938463463374607431768211455")),
            Some(u128::MAX)
        );
        assert_eq!(json_u128(&json!(7)), Some(7));
        assert_eq!(json_u128(&json!("-1")), None);
        assert_eq!(json_u128(&json!(null)), None);
        assert_eq!(json_u128(&json!(1.5)), None);
    }

    #[test]
    fn asset_meta_reads_and_shows() {
        let a = AssetMeta::from_json(&json!({"asset": 0, "symbol": "BTC", "decimals": 8}))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.show(50_000_000), "0.5 BTC");
        assert!(
            AssetMeta::from_json(&json!({"asset": 0, "symbol": "X", "decimals": 300})).is_err()
        );
        assert!(AssetMeta::from_json(&json!({"symbol": "X", "decimals": 3})).is_err());
    }

    #[test]
    fn bad_urls_are_refused() {
        let args = RpcArgs {
            url: "127.0.0.1:8645".into(),
            timeout_secs: 1,
        };
        let err = Rpc::connect(&args)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("http://"), "{err}");
    }

    #[test]
    fn unreachable_node_is_a_clear_error() {
        // Port 9 (discard) on localhost: nothing listens there in a test environment.
        let args = RpcArgs {
            url: "http://127.0.0.1:9".into(),
            timeout_secs: 2,
        };
        let rpc = Rpc::connect(&args).unwrap_or_else(|e| panic!("{e}"));
        let err = rpc
            .chain_info()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(
            err.contains("pb_chainInfo") && err.contains("127.0.0.1:9"),
            "{err}"
        );
    }
}
