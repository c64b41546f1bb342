//! A JSON-RPC server over the embedded chain that speaks Bitcoin Core's formats, so that several
//! processes share one chain through [`crate::BitcoindClient`] (what `parabit regtest` runs).
//!
//! Methods (Core's names, parameters and result shapes): `getblockchaininfo`, `getblockcount`,
//! `getbestblockhash`, `getblockhash`, `getblock <hash> 0` (raw hex only), `sendrawtransaction`,
//! `estimatesmartfee`, `listunspent [minconf [maxconf [addresses]]]` (addresses required: the
//! embedded chain has no wallet), `getrawtransaction <txid>` (raw hex), `getrawmempool`, and the
//! regtest helpers `generatetoaddress <n> <address>` and `invalidateblock <hash>`.
//!
//! Invariants:
//! - HTTP/1.1 with keep-alive; Basic auth is checked on every request (401 with an empty body
//!   otherwise, as bitcoind); RPC errors are HTTP 500 (404 for an unknown method) with
//!   `{"result":null,"error":{"code","message"},"id"}`.
//! - With [`ServerAuth::Cookie`], a fresh random `__cookie__:<hex>` is written (mode 0600) at
//!   start and deleted at stop, as bitcoind does.
//! - Bounded: request headers ≤ 16 KiB, bodies ≤ 8 MiB, at most 64 connections (503 beyond);
//!   malformed requests get 400 and never panic the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bitcoin::consensus::encode::{deserialize, serialize_hex};
use bitcoin::{Address, BlockHash, Network, Transaction, Txid};
use serde_json::{json, Value};

use super::{rejection, RegtestChain, RegtestError};
use crate::client::ClientError;

const MAX_HEADER: usize = 16 * 1024;
const MAX_BODY: usize = 8 * 1024 * 1024;
const MAX_CONNECTIONS: usize = 64;

/// How clients authenticate.
#[derive(Clone, Debug)]
pub enum ServerAuth {
    /// `-rpcuser` / `-rpcpassword`.
    UserPass {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A cookie file written at start (`__cookie__:<random hex>`).
    Cookie(PathBuf),
}

/// A running server; stops when dropped.
pub struct RpcServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    cookie: Option<PathBuf>,
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("addr", &self.addr)
            .finish()
    }
}

struct Shared {
    chain: Arc<RegtestChain>,
    expected: String,
    connections: AtomicUsize,
    stop: Arc<AtomicBool>,
}

fn random_hex32() -> String {
    use bitcoin::secp256k1::rand::RngCore;
    let mut bytes = [0u8; 32];
    bitcoin::secp256k1::rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn write_cookie(path: &PathBuf, content: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(content.as_bytes())?;
    f.sync_all()
}

impl RpcServer {
    /// Binds `addr` and serves `chain` on a background thread.
    pub fn start(
        chain: Arc<RegtestChain>,
        addr: impl ToSocketAddrs,
        auth: ServerAuth,
    ) -> std::io::Result<RpcServer> {
        let listener = TcpListener::bind(addr)?;
        let local = listener.local_addr()?;
        let (pair, cookie) = match auth {
            ServerAuth::UserPass { user, password } => (format!("{user}:{password}"), None),
            ServerAuth::Cookie(path) => {
                let pair = format!("__cookie__:{}", random_hex32());
                write_cookie(&path, &pair)?;
                (pair, Some(path))
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Shared {
            chain,
            expected: format!("Basic {}", crate::bitcoind::base64(pair.as_bytes())),
            connections: AtomicUsize::new(0),
            stop: Arc::clone(&stop),
        });
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if shared.connections.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                    let _ = respond(&stream, 503, "", true);
                    continue;
                }
                let shared = Arc::clone(&shared);
                std::thread::spawn(move || {
                    serve_connection(stream, &shared);
                    shared.connections.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        tracing::info!(addr = %local, "regtest JSON-RPC server listening");
        Ok(RpcServer {
            addr: local,
            stop,
            thread: Some(thread),
            cookie,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, waits for the accept thread, removes the cookie file.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(path) = self.cookie.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn respond(mut stream: &TcpStream, status: u16, body: &str, close: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let connection = if close { "close" } else { "keep-alive" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    );
    // One write: head and body in two writes meet Nagle's algorithm and the client's delayed
    // ACK on a kept-alive connection (about 40 ms a request).
    let mut message = head.into_bytes();
    message.extend_from_slice(body.as_bytes());
    stream.write_all(&message)?;
    stream.flush()
}

/// Serves requests on one connection until it closes, errs or asks to close.
fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let request = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(status) => {
                let _ = respond(&stream, status, "", true);
                return;
            }
        };
        let (status, body) = if request.auth.as_deref() != Some(shared.expected.as_str()) {
            (401, String::new())
        } else if request.method != "POST" {
            (405, String::new())
        } else {
            handle_body(&shared.chain, &request.body)
        };
        if respond(&stream, status, &body, request.close).is_err() || request.close {
            return;
        }
    }
}

struct Request {
    method: String,
    auth: Option<String>,
    close: bool,
    body: Vec<u8>,
}

/// Reads one HTTP request; `Ok(None)` at a clean end of stream, `Err(status)` when malformed.
fn read_request(reader: &mut impl BufRead) -> Result<Option<Request>, u16> {
    let mut line = String::new();
    let mut header_bytes = 0usize;
    match reader.by_ref().take(MAX_HEADER as u64).read_line(&mut line) {
        Ok(0) => return Ok(None),
        Ok(n) => header_bytes += n,
        Err(_) => return Ok(None),
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().ok_or(400u16)?.to_string();
    let _path = parts.next().ok_or(400u16)?;
    let version = parts.next().ok_or(400u16)?;
    let mut close = version == "HTTP/1.0";
    let mut length = 0usize;
    let mut auth = None;
    loop {
        let mut h = String::new();
        let n = reader
            .by_ref()
            .take(MAX_HEADER as u64)
            .read_line(&mut h)
            .map_err(|_| 400u16)?;
        header_bytes += n;
        if n == 0 || header_bytes > MAX_HEADER {
            return Err(400);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let Some((name, value)) = h.split_once(':') else {
            return Err(400);
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => length = value.parse().map_err(|_| 400u16)?,
            "authorization" => auth = Some(value.to_string()),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "transfer-encoding" => return Err(400),
            _ => {}
        }
    }
    if length > MAX_BODY {
        return Err(413);
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body).map_err(|_| 400u16)?;
    Ok(Some(Request {
        method,
        auth,
        close,
        body,
    }))
}

/// An RPC failure: Core's code and message.
struct RpcError(i64, String);

fn rpc_err(code: i64, msg: impl Into<String>) -> RpcError {
    RpcError(code, msg.into())
}

/// Handles one JSON-RPC body; returns the HTTP status and reply.
fn handle_body(chain: &RegtestChain, body: &[u8]) -> (u16, String) {
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        let reply = json!({"result": null, "error": {"code": -32700, "message": "Parse error"}, "id": null});
        return (500, reply.to_string());
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        let reply = json!({"result": null, "error": {"code": -32600, "message": "Method must be a string"}, "id": id});
        return (500, reply.to_string());
    };
    let params = match request.get("params") {
        Some(Value::Array(a)) => a.clone(),
        None | Some(Value::Null) => Vec::new(),
        Some(_) => {
            let reply = json!({"result": null, "error": {"code": -32600, "message": "Params must be an array"}, "id": id});
            return (500, reply.to_string());
        }
    };
    match dispatch(chain, method, &params) {
        Ok(result) => (
            200,
            json!({"result": result, "error": null, "id": id}).to_string(),
        ),
        Err(RpcError(code, message)) => {
            let status = if code == -32601 { 404 } else { 500 };
            (
                status,
                json!({"result": null, "error": {"code": code, "message": message}, "id": id})
                    .to_string(),
            )
        }
    }
}

fn param<'a>(params: &'a [Value], i: usize, name: &str) -> Result<&'a Value, RpcError> {
    params
        .get(i)
        .ok_or_else(|| rpc_err(-1, format!("missing required parameter {name}")))
}

fn hash_param<T: std::str::FromStr>(params: &[Value], i: usize, name: &str) -> Result<T, RpcError> {
    let s = param(params, i, name)?
        .as_str()
        .ok_or_else(|| rpc_err(-8, format!("{name} must be a hex string")))?;
    s.parse().map_err(|_| {
        rpc_err(
            -8,
            format!("{name} must be of length 64 (not {}, for '{s}')", s.len()),
        )
    })
}

fn u32_param(
    params: &[Value],
    i: usize,
    name: &str,
    default: Option<u32>,
) -> Result<u32, RpcError> {
    match params.get(i) {
        None | Some(Value::Null) => {
            default.ok_or_else(|| rpc_err(-1, format!("missing required parameter {name}")))
        }
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| rpc_err(-8, format!("{name} out of range"))),
    }
}

fn address(s: &str) -> Result<Address, RpcError> {
    s.parse::<Address<_>>()
        .ok()
        .and_then(|a| a.require_network(Network::Regtest).ok())
        .ok_or_else(|| rpc_err(-5, format!("Invalid Bitcoin address: {s}")))
}

fn dispatch(chain: &RegtestChain, method: &str, params: &[Value]) -> Result<Value, RpcError> {
    match method {
        "getblockchaininfo" => {
            let (height, hash) = chain.tip();
            let tip = chain
                .block(&hash)
                .ok_or_else(|| rpc_err(-1, "tip missing"))?;
            Ok(json!({
                "chain": "regtest",
                "blocks": height,
                "headers": height,
                "bestblockhash": hash.to_string(),
                "difficulty": tip.header.difficulty_float(),
                "time": tip.header.time,
                "mediantime": tip.header.time,
                "verificationprogress": 1,
                "initialblockdownload": false,
                "chainwork": format!("{:064x}", (u64::from(height) + 1) * 2),
                "size_on_disk": 0,
                "pruned": false,
                "warnings": ""
            }))
        }
        "getblockcount" => Ok(json!(chain.height())),
        "getbestblockhash" => Ok(json!(chain.tip().1.to_string())),
        "getblockhash" => {
            let h = params
                .first()
                .and_then(Value::as_i64)
                .ok_or_else(|| rpc_err(-1, "height must be a number"))?;
            u32::try_from(h)
                .ok()
                .and_then(|h| chain.block_hash(h))
                .map(|b| json!(b.to_string()))
                .ok_or_else(|| rpc_err(-8, "Block height out of range"))
        }
        "getblock" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            let verbosity = match params.get(1) {
                None | Some(Value::Null) => 1,
                Some(Value::Bool(b)) => i64::from(*b),
                Some(v) => v.as_i64().unwrap_or(1),
            };
            if verbosity != 0 {
                return Err(rpc_err(
                    -8,
                    "the embedded regtest chain serves only verbosity 0 (raw hex)",
                ));
            }
            let block = chain
                .block(&hash)
                .ok_or_else(|| rpc_err(-5, "Block not found"))?;
            Ok(json!(serialize_hex(&block)))
        }
        "sendrawtransaction" => {
            let hex_tx = param(params, 0, "hexstring")?
                .as_str()
                .ok_or_else(|| rpc_err(-22, "TX decode failed"))?;
            let raw = hex::decode(hex_tx).map_err(|_| rpc_err(-22, "TX decode failed"))?;
            let tx: Transaction =
                deserialize(&raw).map_err(|_| rpc_err(-22, "TX decode failed"))?;
            match chain.send_raw_transaction(&tx) {
                Ok(id) => Ok(json!(id.to_string())),
                Err(RegtestError::Tx(e)) => match rejection(&e) {
                    ClientError::Rejected { code, reason } => {
                        Err(RpcError(code.unwrap_or(-26), reason))
                    }
                    other => Err(rpc_err(-26, other.to_string())),
                },
                Err(e) => Err(rpc_err(-1, e.to_string())),
            }
        }
        "estimatesmartfee" => {
            let target = u32_param(params, 0, "conf_target", None)?;
            let sat_kvb = chain.fee_estimate().to_sat_per_kwu() * 4;
            Ok(json!({"feerate": sat_kvb as f64 / 100_000_000.0, "blocks": target.clamp(1, 1008)}))
        }
        "listunspent" => {
            let minconf = u32_param(params, 0, "minconf", Some(1))?;
            let maxconf = u32_param(params, 1, "maxconf", Some(9_999_999))?;
            let list = params.get(2).and_then(Value::as_array).ok_or_else(|| {
                rpc_err(
                    -8,
                    "the embedded regtest chain has no wallet: pass addresses to listunspent",
                )
            })?;
            let mut scripts = Vec::with_capacity(list.len());
            for a in list {
                let s = a
                    .as_str()
                    .ok_or_else(|| rpc_err(-8, "addresses must be strings"))?;
                scripts.push(address(s)?.script_pubkey());
            }
            let out: Vec<Value> = chain
                .list_unspent(&scripts)
                .into_iter()
                .filter(|u| u.is_spendable() && (minconf..=maxconf).contains(&u.confirmations))
                .map(|u| {
                    let addr = Address::from_script(&u.txout.script_pubkey, Network::Regtest)
                        .map(|a| a.to_string())
                        .unwrap_or_default();
                    json!({
                        "txid": u.outpoint.txid.to_string(),
                        "vout": u.outpoint.vout,
                        "address": addr,
                        "label": "",
                        "scriptPubKey": hex::encode(u.txout.script_pubkey.as_bytes()),
                        "amount": u.txout.value.to_btc(),
                        "confirmations": u.confirmations,
                        "spendable": false,
                        "solvable": false,
                        "safe": true
                    })
                })
                .collect();
            Ok(Value::Array(out))
        }
        "getrawtransaction" => {
            let txid: Txid = hash_param(params, 0, "txid")?;
            match params.get(1) {
                None | Some(Value::Null) | Some(Value::Bool(false)) => {}
                Some(v) if v.as_i64() == Some(0) => {}
                Some(_) => {
                    return Err(rpc_err(
                        -8,
                        "the embedded regtest chain serves only verbosity 0 (raw hex)",
                    ))
                }
            }
            chain.transaction(&txid).map(|(tx, _)| json!(serialize_hex(&tx))).ok_or_else(|| {
                rpc_err(-5, "No such mempool or blockchain transaction. Use gettransaction for wallet transactions.")
            })
        }
        "getrawmempool" => Ok(json!(chain
            .mempool()
            .iter()
            .map(|t| t.compute_txid().to_string())
            .collect::<Vec<_>>())),
        "generatetoaddress" => {
            let n = u32_param(params, 0, "nblocks", None)?;
            if n > 10_000 {
                return Err(rpc_err(-8, "nblocks above 10000"));
            }
            let s = param(params, 1, "address")?
                .as_str()
                .ok_or_else(|| rpc_err(-5, "Error: Invalid address"))?;
            let script = address(s)
                .map_err(|_| rpc_err(-5, "Error: Invalid address"))?
                .script_pubkey();
            let hashes = chain
                .mine(n, &script)
                .map_err(|e| rpc_err(-1, e.to_string()))?;
            Ok(json!(hashes
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()))
        }
        "invalidateblock" => {
            let hash: BlockHash = hash_param(params, 0, "blockhash")?;
            let height = chain
                .height_of(&hash)
                .ok_or_else(|| rpc_err(-5, "Block not found"))?;
            if height == 0 {
                return Err(rpc_err(-1, "cannot invalidate the genesis block"));
            }
            chain
                .invalidate(chain.height() - height + 1)
                .map_err(|e| rpc_err(-1, e.to_string()))?;
            Ok(Value::Null)
        }
        _ => Err(rpc_err(-32601, "Method not found")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_http_is_refused() {
        let read =
            |s: &str| read_request(&mut BufReader::new(s.as_bytes())).map(|r| r.map(|r| r.body));
        assert_eq!(read(""), Ok(None));
        assert_eq!(read("GARBAGE\r\n\r\n").err(), Some(400));
        assert_eq!(read("POST / HTTP/1.1\r\nno colon\r\n\r\n").err(), Some(400));
        assert_eq!(
            read("POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").err(),
            Some(400)
        );
        assert_eq!(
            read("POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n").err(),
            Some(413)
        );
        assert_eq!(
            read("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab").err(),
            Some(400)
        );
        assert_eq!(
            read("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nab"),
            Ok(Some(b"ab".to_vec()))
        );
        let long = format!("POST / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER));
        assert_eq!(read(&long).err(), Some(400));
    }

    #[test]
    fn bad_json_rpc_gets_core_errors() {
        let chain = RegtestChain::in_memory();
        let (status, body) = handle_body(&chain, b"{not json");
        assert_eq!(status, 500);
        assert!(body.contains("-32700"));
        let (status, body) = handle_body(&chain, br#"{"id":1,"method":"nope","params":[]}"#);
        assert_eq!(status, 404);
        assert!(body.contains("-32601"));
        let (status, body) =
            handle_body(&chain, br#"{"id":1,"method":"getblockhash","params":[5]}"#);
        assert_eq!(status, 500);
        assert!(body.contains("Block height out of range"));
        let (status, _) = handle_body(&chain, br#"{"id":1,"method":"getblockhash","params":[0]}"#);
        assert_eq!(status, 200);
        let (_, body) = handle_body(
            &chain,
            br#"{"id":1,"method":"sendrawtransaction","params":["zz"]}"#,
        );
        assert!(body.contains("TX decode failed"));
        let (_, body) = handle_body(&chain, br#"{"id":1,"method":"listunspent","params":[0]}"#);
        assert!(body.contains("no wallet"));
        let (_, body) = handle_body(&chain, br#"{"id":1,"method":"getblock","params":["00"]}"#);
        assert!(body.contains("-8"));
    }
}
