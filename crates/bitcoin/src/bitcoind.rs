//! [`BitcoinClient`] over Bitcoin Core's JSON-RPC (the production backend).
//!
//! Uses only documented methods with their documented result formats: `getblockchaininfo`
//! (`blocks`, `bestblockhash`), `getblockhash`, `getblock <hash> 0` (raw hex, decoded with
//! rust-bitcoin), `sendrawtransaction <hex>`, `estimatesmartfee <target>` (`feerate` in BTC/kvB,
//! or `errors`), `listunspent 0 9999999 [addresses]` and `getrawtransaction <txid>` (raw hex).
//! Requests are JSON-RPC 1.0 style (`{"jsonrpc":"1.0","id":n,"method":…,"params":[…]}`) over
//! plain HTTP with Basic auth from a user/password or from bitcoind's cookie file (re-read on
//! every call, since bitcoind rewrites it at each start).
//!
//! Invariants:
//! - Connection failures, timeouts, HTTP 503 (work queue full), RPC_IN_WARMUP (-28) and a
//!   missing cookie file (bitcoind deletes it when it stops) are transient; a refused transaction (-25, -26, -27, -22) is `Rejected` with Core's message;
//!   unknown blocks, heights and transactions (-5, -8) are `NotFound`; HTTP 401/403 is
//!   `Unauthorized`. Errors are both HTTP 500 with a JSON body (JSON-RPC 1.0) and HTTP 200
//!   with an `error` member (JSON-RPC 2.0): both are read.
//! - Nothing the server sends can panic the client: every field is checked, amounts must be
//!   within 0..=21M BTC.
//! - `listunspent` on bitcoind lists only mature coinbase outputs (the wallet filters immature
//!   ones), so every returned [`Utxo`] has `coinbase == false` and is spendable.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Amount, Block, BlockHash, FeeRate, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use serde_json::{json, Value};

use crate::client::{BitcoinClient, ClientError, Utxo};

/// How the client authenticates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// `-rpcuser` / `-rpcpassword`.
    UserPass {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// bitcoind's `.cookie` file (`__cookie__:<hex>`).
    CookieFile(PathBuf),
    /// No credentials.
    None,
}

/// Settings of a [`BitcoindClient`].
#[derive(Clone, Debug)]
pub struct BitcoindConfig {
    /// `http://host:port` (optionally `/wallet/<name>`); `user:password@` in it is taken as
    /// [`Auth::UserPass`] when `auth` is [`Auth::None`].
    pub url: String,
    /// Credentials.
    pub auth: Auth,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Addresses whose outputs `list_unspent` returns (empty: the whole wallet).
    pub watch_addresses: Vec<String>,
    /// Confirmation target for `estimatesmartfee`.
    pub conf_target: u16,
    /// Fee rate used when bitcoind has no estimate (a fresh regtest chain).
    pub fallback_fee_rate: FeeRate,
}

impl BitcoindConfig {
    /// Defaults for `url`: no auth (or the URL's), 30 s timeout, target 6, fallback 2 sat/vB.
    pub fn new(url: impl Into<String>) -> Self {
        BitcoindConfig {
            url: url.into(),
            auth: Auth::None,
            timeout: Duration::from_secs(30),
            watch_addresses: Vec::new(),
            conf_target: 6,
            fallback_fee_rate: FeeRate::from_sat_per_vb_u32(2),
        }
    }
}

/// Bitcoin Core over JSON-RPC.
#[derive(Debug)]
pub struct BitcoindClient {
    agent: ureq::Agent,
    url: String,
    auth: Auth,
    watch: Vec<String>,
    conf_target: u16,
    fallback: FeeRate,
    next_id: AtomicU64,
}

/// Splits `user:password@` out of an `http://` URL.
fn split_userinfo(url: &str) -> Result<(String, Option<(String, String)>), ClientError> {
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        ClientError::InvalidResponse(format!("bitcoind URL must start with http:// ({url})"))
    })?;
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => {
            let (info, host) = authority.split_at(at);
            let host = &host[1..];
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            Ok((
                format!("http://{host}{path}"),
                Some((user.to_string(), password.to_string())),
            ))
        }
        None => Ok((url.to_string(), None)),
    }
}

/// Standard base64 (RFC 4648, padded), for the Basic auth header.
pub(crate) fn base64(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// BTC as a JSON number to an [`Amount`], refusing negatives, NaN and above 21M BTC.
fn btc_amount(v: &Value) -> Result<Amount, ClientError> {
    let f = v
        .as_f64()
        .ok_or_else(|| bad(format!("amount {v} is not a number")))?;
    let sats = (f * 100_000_000.0).round();
    if !(0.0..=Amount::MAX_MONEY.to_sat() as f64).contains(&sats) {
        return Err(bad(format!("amount {v} out of range")));
    }
    Ok(Amount::from_sat(sats as u64))
}

fn bad(msg: impl Into<String>) -> ClientError {
    ClientError::InvalidResponse(msg.into())
}

fn hex_bytes(v: &Value, what: &str) -> Result<Vec<u8>, ClientError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("{what}: expected a hex string")))?;
    hex::decode(s).map_err(|e| bad(format!("{what}: {e}")))
}

fn parse<T: std::str::FromStr>(v: &Value, what: &str) -> Result<T, ClientError>
where
    T::Err: std::fmt::Display,
{
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("{what}: expected a string")))?;
    s.parse().map_err(|e| bad(format!("{what}: {e}")))
}

impl BitcoindClient {
    /// A client for `config`. Makes no request.
    pub fn new(config: BitcoindConfig) -> Result<Self, ClientError> {
        let (url, userinfo) = split_userinfo(&config.url)?;
        let auth = match (config.auth, userinfo) {
            (Auth::None, Some((user, password))) => Auth::UserPass { user, password },
            (auth, _) => auth,
        };
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
        Ok(BitcoindClient {
            agent,
            url,
            auth,
            watch: config.watch_addresses,
            conf_target: config.conf_target.max(1),
            fallback: config.fallback_fee_rate,
            next_id: AtomicU64::new(1),
        })
    }

    /// The URL requests go to (credentials removed).
    pub fn url(&self) -> &str {
        &self.url
    }

    fn authorization(&self) -> Result<Option<String>, ClientError> {
        let pair = match &self.auth {
            Auth::None => return Ok(None),
            Auth::UserPass { user, password } => format!("{user}:{password}"),
            Auth::CookieFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    let msg = format!("cookie file {}: {e}", path.display());
                    if e.kind() == std::io::ErrorKind::NotFound {
                        // bitcoind deletes its cookie when it stops: down, not misconfigured.
                        ClientError::Unavailable(format!("{msg} (is bitcoind running?)"))
                    } else {
                        ClientError::Unauthorized(msg)
                    }
                })?;
                let line = text.lines().next().unwrap_or("").trim().to_string();
                if !line.contains(':') {
                    return Err(ClientError::Unauthorized(format!(
                        "cookie file {} is not user:password",
                        path.display()
                    )));
                }
                line
            }
        };
        Ok(Some(format!("Basic {}", base64(pair.as_bytes()))))
    }

    /// Calls `method` with `params`; returns `result` or the mapped error.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "1.0", "id": id, "method": method, "params": params});
        let mut req = self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json");
        if let Some(h) = self.authorization()? {
            req = req.set("Authorization", &h);
        }
        let (status, text) = match req.send_string(&body.to_string()) {
            Ok(resp) => (resp.status(), read_body(resp)?),
            Err(ureq::Error::Status(code, resp)) => {
                let text = read_body(resp).unwrap_or_default();
                (code, text)
            }
            Err(ureq::Error::Transport(t)) => return Err(ClientError::Unavailable(t.to_string())),
        };
        match status {
            401 | 403 => {
                return Err(ClientError::Unauthorized(format!(
                    "HTTP {status} from {}",
                    self.url
                )))
            }
            503 => {
                return Err(ClientError::Unavailable(format!(
                    "HTTP 503: {}",
                    text.trim()
                )))
            }
            _ => {}
        }
        let reply: Value = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "HTTP {status}, not JSON ({e}): {:.200}",
                text.trim()
            ))
        })?;
        match reply.get("error") {
            Some(Value::Null) | None => {}
            Some(err) => {
                let code = err.get("code").and_then(Value::as_i64).unwrap_or(0);
                let message = err
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                return Err(map_rpc_error(method, code, message));
            }
        }
        if status != 200 {
            return Err(bad(format!("HTTP {status} without an error member")));
        }
        reply
            .get("result")
            .cloned()
            .ok_or_else(|| bad("reply without a result member"))
    }
}

fn read_body(resp: ureq::Response) -> Result<String, ClientError> {
    let mut text = String::new();
    // Bound what a server can make us hold: a block is at most 4 MB (8 MB of hex).
    resp.into_reader()
        .take(64 * 1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| ClientError::Unavailable(format!("reading reply: {e}")))?;
    Ok(text)
}

/// Bitcoin Core's RPC error codes to [`ClientError`].
fn map_rpc_error(method: &str, code: i64, message: String) -> ClientError {
    match code {
        // RPC_IN_WARMUP
        -28 => ClientError::WarmingUp(message),
        // RPC_INVALID_ADDRESS_OR_KEY from lookups: unknown block or transaction.
        -5 if matches!(method, "getblock" | "getblockheader" | "getrawtransaction") => {
            ClientError::NotFound(message)
        }
        // RPC_INVALID_PARAMETER from getblockhash: height out of range.
        -8 if method == "getblockhash" => ClientError::NotFound(message),
        // RPC_VERIFY_ERROR, RPC_VERIFY_REJECTED, RPC_VERIFY_ALREADY_IN_CHAIN, RPC_DESERIALIZATION_ERROR
        -25 | -26 | -27 | -22 if method == "sendrawtransaction" => ClientError::Rejected {
            code: Some(code),
            reason: message,
        },
        _ => ClientError::Rpc { code, message },
    }
}

impl BitcoinClient for BitcoindClient {
    fn tip(&self) -> Result<(u32, BlockHash), ClientError> {
        let info = self.call("getblockchaininfo", json!([]))?;
        let blocks = info
            .get("blocks")
            .and_then(Value::as_u64)
            .and_then(|b| u32::try_from(b).ok())
            .ok_or_else(|| bad("getblockchaininfo: no blocks"))?;
        let hash = parse(
            info.get("bestblockhash").unwrap_or(&Value::Null),
            "bestblockhash",
        )?;
        Ok((blocks, hash))
    }

    fn block_hash(&self, height: u32) -> Result<BlockHash, ClientError> {
        parse(&self.call("getblockhash", json!([height]))?, "getblockhash")
    }

    fn block(&self, hash: &BlockHash) -> Result<Block, ClientError> {
        let raw = hex_bytes(
            &self.call("getblock", json!([hash.to_string(), 0]))?,
            "getblock",
        )?;
        let block: Block = deserialize(&raw).map_err(|e| bad(format!("getblock: {e}")))?;
        if block.block_hash() != *hash {
            return Err(bad(format!(
                "getblock {hash}: got block {}",
                block.block_hash()
            )));
        }
        Ok(block)
    }

    fn send_raw_transaction(&self, tx: &Transaction) -> Result<Txid, ClientError> {
        let id: Txid = parse(
            &self.call("sendrawtransaction", json!([serialize_hex(tx)]))?,
            "sendrawtransaction",
        )?;
        if id != tx.compute_txid() {
            return Err(bad(format!(
                "sendrawtransaction returned {id} for {}",
                tx.compute_txid()
            )));
        }
        Ok(id)
    }

    fn estimate_fee_rate(&self) -> Result<FeeRate, ClientError> {
        let r = self.call("estimatesmartfee", json!([self.conf_target]))?;
        let Some(rate) = r.get("feerate") else {
            // No estimate yet ("Insufficient data or no feerate found").
            return Ok(self.fallback.max(FeeRate::BROADCAST_MIN));
        };
        let btc_per_kvb = btc_amount(rate)?;
        // sat/kvB → sat/kwu is ÷ 4, rounded up.
        let sat_kwu = btc_per_kvb.to_sat().div_ceil(4);
        Ok(FeeRate::from_sat_per_kwu(sat_kwu).max(FeeRate::BROADCAST_MIN))
    }

    fn list_unspent(&self) -> Result<Vec<Utxo>, ClientError> {
        let params = if self.watch.is_empty() {
            json!([0])
        } else {
            json!([0, 9_999_999, self.watch])
        };
        let list = self.call("listunspent", params)?;
        let entries = list
            .as_array()
            .ok_or_else(|| bad("listunspent: expected an array"))?;
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let txid: Txid = parse(e.get("txid").unwrap_or(&Value::Null), "listunspent txid")?;
            let vout = e
                .get("vout")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or_else(|| bad("listunspent: vout"))?;
            let script = hex_bytes(
                e.get("scriptPubKey").unwrap_or(&Value::Null),
                "scriptPubKey",
            )?;
            let value = btc_amount(e.get("amount").unwrap_or(&Value::Null))?;
            let confirmations = e
                .get("confirmations")
                .and_then(Value::as_i64)
                .map(|c| u32::try_from(c.max(0)).unwrap_or(u32::MAX))
                .ok_or_else(|| bad("listunspent: confirmations"))?;
            out.push(Utxo {
                outpoint: OutPoint { txid, vout },
                txout: TxOut {
                    value,
                    script_pubkey: ScriptBuf::from_bytes(script),
                },
                confirmations,
                coinbase: false,
            });
        }
        Ok(out)
    }

    fn get_raw_transaction(&self, txid: &Txid) -> Result<Transaction, ClientError> {
        let raw = hex_bytes(
            &self.call("getrawtransaction", json!([txid.to_string()]))?,
            "getrawtransaction",
        )?;
        let tx: Transaction =
            deserialize(&raw).map_err(|e| bad(format!("getrawtransaction: {e}")))?;
        if tx.compute_txid() != *txid {
            return Err(bad(format!(
                "getrawtransaction {txid}: got {}",
                tx.compute_txid()
            )));
        }
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"__cookie__:ab"), "X19jb29raWVfXzphYg==");
    }

    #[test]
    fn userinfo_is_split_from_the_url() {
        assert_eq!(
            split_userinfo("http://u:p@127.0.0.1:18443/wallet/w").unwrap(),
            (
                "http://127.0.0.1:18443/wallet/w".to_string(),
                Some(("u".into(), "p".into()))
            )
        );
        assert_eq!(
            split_userinfo("http://127.0.0.1:18443").unwrap(),
            ("http://127.0.0.1:18443".to_string(), None)
        );
        assert!(split_userinfo("https://x").is_err());
    }

    #[test]
    fn amounts_are_checked() {
        assert_eq!(
            btc_amount(&json!(0.0001)).unwrap(),
            Amount::from_sat(10_000)
        );
        assert_eq!(
            btc_amount(&json!(20999999.9769)).unwrap(),
            Amount::from_sat(2_099_999_997_690_000)
        );
        assert_eq!(
            btc_amount(&json!(0.1)).unwrap(),
            Amount::from_sat(10_000_000)
        );
        assert!(btc_amount(&json!(-1)).is_err());
        assert!(btc_amount(&json!(21000001)).is_err());
        assert!(btc_amount(&json!("1")).is_err());
    }

    #[test]
    fn error_codes_map_to_kinds() {
        assert!(map_rpc_error("getblockchaininfo", -28, "Loading".into()).is_transient());
        assert!(matches!(
            map_rpc_error("getblock", -5, "x".into()),
            ClientError::NotFound(_)
        ));
        assert!(matches!(
            map_rpc_error("getblockhash", -8, "x".into()),
            ClientError::NotFound(_)
        ));
        assert!(matches!(
            map_rpc_error("sendrawtransaction", -26, "x".into()),
            ClientError::Rejected {
                code: Some(-26),
                ..
            }
        ));
        assert!(matches!(
            map_rpc_error("getblock", -8, "x".into()),
            ClientError::Rpc { .. }
        ));
    }
}
