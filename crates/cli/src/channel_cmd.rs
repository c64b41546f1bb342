//! `parabit channel …`: the off-chain half of payment channels. `channel state` builds a new
//! state of a channel (its deposits read from the channel's record over RPC, or given) and
//! signs it with a keystore key; `channel sign` checks a state file and adds the other
//! party's signature. The on-chain half is `parabit tx channel-*` ([`crate::tx_cmd`]), which
//! reads the same state files.
//!
//! A state file is one JSON document ([`StateFile`]): the chain id the signatures are for,
//! the module's [`ChannelState`] in its serde form, and the signatures it has so far, as
//! hex (`sig_a` by the opener, `sig_b` by the peer), over
//! [`channels::state_digest`]`(chain_id, state)`.
//!
//! Invariants:
//! - Nothing is signed unless the state is consistent: nonce ≥ 1, balances plus HTLCs equal
//!   the deposits it names, those deposits within the channel's, at most
//!   [`channels::MAX_HTLCS`] HTLCs ([`check_amounts`]) — the checks the chain makes.
//! - `sign` verifies every signature already in the file against the channel's parties
//!   before adding its own, and refuses a signer that is not a party; a file is only ever
//!   written whole, with signatures that verify.
//! - [`fetch_channel`] turns `pb_getChannel`'s answer into the module's [`Channel`] record;
//!   an unknown channel is an error naming it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use parabit_modules::channels::{
    self, Channel, ChannelId, ChannelState, ChannelStatus, Htlc, SignedState,
};
use parabit_primitives::{verify_digest, Address, AssetId, Network};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use crate::client::{json_u128, AssetMeta, Lookup, Rpc, RpcArgs, RpcLookup};
use crate::human;
use crate::wallet_cmd::{self, KeystoreArgs};

/// `parabit channel`.
#[derive(Debug, Args)]
pub struct ChannelArgs {
    #[command(flatten)]
    rpc: RpcArgs,
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// The keystore key that signs (its name, or its address): one of the channel's parties.
    #[arg(long, env = "PARABIT_FROM", global = true, value_name = "NAME")]
    from: Option<String>,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    cmd: ChannelCmd,
}

/// What to do.
#[derive(Debug, Clone, Subcommand)]
pub enum ChannelCmd {
    /// Builds a new state of a channel, signs it with --from and writes it to --out.
    State(StateArgs),
    /// Checks a state file (its signatures, its amounts against the channel) and adds the
    /// --from party's signature.
    Sign {
        /// The state file.
        #[arg(long)]
        state: PathBuf,
        /// Where to write the signed state (default: back to --state).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `parabit channel state`.
#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// The channel id.
    #[arg(long)]
    pub channel: ChannelId,
    /// The state's nonce: above every state signed before (1 for the first).
    #[arg(long)]
    pub nonce: u64,
    /// What the opener (party a) gets, in the channel's asset ("0.07 BTC" or "0.07").
    #[arg(long)]
    pub balance_a: String,
    /// What the peer (party b) gets, in the channel's asset.
    #[arg(long)]
    pub balance_b: String,
    /// Party a's deposits the state is signed against (default: the channel's record).
    #[arg(long)]
    pub deposit_a: Option<String>,
    /// Party b's deposits the state is signed against (default: the channel's record).
    #[arg(long)]
    pub deposit_b: Option<String>,
    /// A payment in flight, `DIR:AMOUNT:HASH:EXPIRY`: DIR is `a->b` or `b->a`, HASH the
    /// SHA-256 of the preimage (64 hex digits), EXPIRY an L2 height or `+BLOCKS` from now.
    /// Repeat for several.
    #[arg(long, value_name = "SPEC")]
    pub htlc: Vec<String>,
    /// The state file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Overwrite --out if it exists.
    #[arg(long)]
    pub force: bool,
}

/// A state file: a channel state and the signatures it has so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    /// The chain id the signatures are for.
    pub chain_id: u64,
    /// The state.
    pub state: ChannelState,
    /// Party a's signature (hex), if it has signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_a: Option<String>,
    /// Party b's signature (hex), if it has signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig_b: Option<String>,
}

fn sig_bytes(sig: Option<&String>, party: char) -> Result<Option<[u8; 64]>> {
    let Some(text) = sig else {
        return Ok(None);
    };
    let mut out = [0u8; 64];
    hex::decode_to_slice(text.trim(), &mut out)
        .map_err(|_| anyhow!("sig_{party}: expected a 64-byte signature as 128 hex digits"))?;
    Ok(Some(out))
}

impl StateFile {
    /// Parses a state file's text.
    pub fn parse(text: &str) -> Result<StateFile> {
        let f: StateFile = serde_json::from_str(text).context(
            "not a channel state file (expected {\"chain_id\", \"state\", \"sig_a\", \"sig_b\"} as written by `parabit channel state`)",
        )?;
        sig_bytes(f.sig_a.as_ref(), 'a')?;
        sig_bytes(f.sig_b.as_ref(), 'b')?;
        Ok(f)
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> Result<StateFile> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the state file {}", path.display()))?;
        StateFile::parse(&text).with_context(|| format!("state file {}", path.display()))
    }

    /// Writes the file whole (to a temporary file, then renamed over `path`).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).context("cannot encode the state")?;
        text.push('\n');
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(&dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        std::fs::write(tmp.path(), text)
            .with_context(|| format!("cannot write {}", tmp.path().display()))?;
        tmp.persist(path)
            .with_context(|| format!("cannot write the state file {}", path.display()))?;
        Ok(())
    }

    /// The signature of `party` (`'a'` or `'b'`), if any.
    pub fn sig(&self, party: char) -> Result<Option<[u8; 64]>> {
        if party == 'a' {
            sig_bytes(self.sig_a.as_ref(), 'a')
        } else {
            sig_bytes(self.sig_b.as_ref(), 'b')
        }
    }

    /// The parties that have signed.
    pub fn signed_by(&self) -> Vec<char> {
        [('a', &self.sig_a), ('b', &self.sig_b)]
            .into_iter()
            .filter(|(_, s)| s.is_some())
            .map(|(p, _)| p)
            .collect()
    }

    /// The state with both signatures, for the chain; an error naming the missing one.
    pub fn signed(&self) -> Result<SignedState> {
        let missing = |p: char| {
            anyhow!(
                "the state (nonce {}) has no signature of party {p}: have it run `parabit channel sign --state FILE`",
                self.state.nonce
            )
        };
        Ok(SignedState {
            state: self.state.clone(),
            sig_a: self.sig('a')?.ok_or_else(|| missing('a'))?,
            sig_b: self.sig('b')?.ok_or_else(|| missing('b'))?,
        })
    }

    /// Checks every signature present against the channel's parties.
    pub fn verify(&self, ch: &Channel) -> Result<()> {
        let digest = channels::state_digest(self.chain_id, &self.state);
        for (party, who) in [('a', ch.a), ('b', ch.b)] {
            if let Some(sig) = self.sig(party)? {
                verify_digest(&who, &digest, &sig).map_err(|_| {
                    anyhow!(
                        "the signature of party {party} ({who}) does not verify: the state was changed after signing, or signed for another chain or channel"
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Which party `who` is on `ch`.
pub fn party(id: ChannelId, ch: &Channel, who: &Address, network: Network) -> Result<char> {
    if *who == ch.a {
        Ok('a')
    } else if *who == ch.b {
        Ok('b')
    } else {
        bail!(
            "{} is not a party to channel {id} (a: {}, b: {})",
            who.to_bech32(network),
            ch.a.to_bech32(network),
            ch.b.to_bech32(network)
        )
    }
}

/// The checks the chain makes on a state's amounts (not its signatures) against `ch`.
pub fn check_amounts(id: ChannelId, ch: &Channel, s: &ChannelState) -> Result<()> {
    ensure!(
        s.channel == id,
        "the state is for channel {}, not {id}",
        s.channel
    );
    ensure!(
        s.nonce >= 1,
        "nonce 0 is the opening state: signed states start at 1"
    );
    ensure!(
        s.htlcs.len() <= channels::MAX_HTLCS,
        "{} HTLCs: at most {}",
        s.htlcs.len(),
        channels::MAX_HTLCS
    );
    ensure!(
        s.deposit_a <= ch.deposit_a && s.deposit_b <= ch.deposit_b,
        "the state names deposits {} (a) and {} (b), above the channel's {} and {}",
        s.deposit_a,
        s.deposit_b,
        ch.deposit_a,
        ch.deposit_b
    );
    let locked = s
        .htlcs
        .iter()
        .try_fold(0u128, |t, h| t.checked_add(h.amount))
        .ok_or_else(|| anyhow!("HTLC amounts overflow"))?;
    let out = s
        .balance_a
        .checked_add(s.balance_b)
        .and_then(|v| v.checked_add(locked))
        .ok_or_else(|| anyhow!("balances overflow"))?;
    let deposits = s
        .deposit_a
        .checked_add(s.deposit_b)
        .ok_or_else(|| anyhow!("deposits overflow"))?;
    ensure!(
        out == deposits,
        "balances {} + {} + HTLCs {locked} = {out} base units, but the deposits are {deposits}: they must be equal",
        s.balance_a,
        s.balance_b
    );
    Ok(())
}

/// Parses `DIR:AMOUNT:HASH:EXPIRY` (see [`StateArgs::htlc`]).
pub fn parse_htlc(spec: &str, asset: &AssetMeta, lk: &dyn Lookup) -> Result<Htlc> {
    let parts: Vec<&str> = spec.split(':').map(str::trim).collect();
    let [dir, amount, hash, expiry] = parts.as_slice() else {
        bail!("--htlc {spec:?}: expected DIR:AMOUNT:HASH:EXPIRY, e.g. a->b:0.01 BTC:<64 hex>:+100");
    };
    let a_to_b = match *dir {
        "a->b" => true,
        "b->a" => false,
        other => bail!("--htlc {spec:?}: direction {other:?} must be a->b or b->a"),
    };
    let (_, amount) = human::positive_amount("--htlc amount", amount, Some(asset), lk)?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash, &mut h)
        .map_err(|_| anyhow!("--htlc {spec:?}: the hash must be 64 hex digits"))?;
    let expiry = match expiry.strip_prefix('+') {
        Some(rel) => {
            let blocks: u64 = rel
                .parse()
                .map_err(|_| anyhow!("--htlc {spec:?}: expiry +BLOCKS must be a number"))?;
            lk.height()?.saturating_add(blocks)
        }
        None => expiry
            .parse()
            .map_err(|_| anyhow!("--htlc {spec:?}: expiry must be a height or +BLOCKS"))?,
    };
    Ok(Htlc {
        a_to_b,
        amount,
        hash: h,
        expiry,
    })
}

/// Builds the state `args` describe on channel `ch` (in asset `asset`), checked.
pub fn build_state(
    args: &StateArgs,
    ch: &Channel,
    asset: &AssetMeta,
    lk: &dyn Lookup,
) -> Result<ChannelState> {
    let amt = |what: &str, text: &str| -> Result<u128> {
        Ok(human::amount(what, text, Some(asset), lk)?.1)
    };
    let deposit_a = match &args.deposit_a {
        Some(t) => amt("--deposit-a", t)?,
        None => ch.deposit_a,
    };
    let deposit_b = match &args.deposit_b {
        Some(t) => amt("--deposit-b", t)?,
        None => ch.deposit_b,
    };
    let state = ChannelState {
        channel: args.channel,
        nonce: args.nonce,
        deposit_a,
        deposit_b,
        balance_a: amt("--balance-a", &args.balance_a)?,
        balance_b: amt("--balance-b", &args.balance_b)?,
        htlcs: args
            .htlc
            .iter()
            .map(|s| parse_htlc(s, asset, lk))
            .collect::<Result<_>>()?,
    };
    check_amounts(args.channel, ch, &state)?;
    Ok(state)
}

fn field_u128(v: &Json, field: &str) -> Result<u128> {
    json_u128(&v[field]).ok_or_else(|| anyhow!("no {field} in {v}"))
}

fn field_u64(v: &Json, field: &str) -> Result<u64> {
    v[field]
        .as_u64()
        .ok_or_else(|| anyhow!("no {field} in {v}"))
}

fn htlc_from_json(v: &Json) -> Result<Htlc> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(v["hash"].as_str().unwrap_or_default(), &mut hash)
        .map_err(|_| anyhow!("bad HTLC hash in {v}"))?;
    Ok(Htlc {
        a_to_b: v["a_to_b"]
            .as_bool()
            .ok_or_else(|| anyhow!("no a_to_b in {v}"))?,
        amount: field_u128(v, "amount")?,
        hash,
        expiry: field_u64(v, "expiry")?,
    })
}

fn state_from_json(v: &Json) -> Result<ChannelState> {
    Ok(ChannelState {
        channel: field_u64(v, "channel")?,
        nonce: field_u64(v, "nonce")?,
        deposit_a: field_u128(v, "deposit_a")?,
        deposit_b: field_u128(v, "deposit_b")?,
        balance_a: field_u128(v, "balance_a")?,
        balance_b: field_u128(v, "balance_b")?,
        htlcs: v["htlcs"]
            .as_array()
            .map(|l| l.iter().map(htlc_from_json).collect::<Result<_>>())
            .transpose()?
            .unwrap_or_default(),
    })
}

/// Reads `pb_getChannel`'s object back into the module's record.
pub fn channel_from_json(v: &Json) -> Result<Channel> {
    let addr = |f: &str| -> Result<Address> {
        v[f].as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("no address {f} in {v}"))
    };
    let status = match v["status"].as_str() {
        Some("open") => ChannelStatus::Open,
        Some("closing") => ChannelStatus::Closing {
            state: state_from_json(&v["state"])?,
            deadline: field_u64(v, "deadline")?,
        },
        Some("settled") => {
            let mut htlcs: Vec<Option<Htlc>> = Vec::new();
            for h in v["htlcs"].as_array().into_iter().flatten() {
                let i = usize::try_from(field_u64(h, "index")?)
                    .ok()
                    .filter(|i| *i < channels::MAX_HTLCS)
                    .ok_or_else(|| anyhow!("bad HTLC index in {h}"))?;
                if htlcs.len() <= i {
                    htlcs.resize(i + 1, None);
                }
                if let Some(slot) = htlcs.get_mut(i) {
                    *slot = Some(htlc_from_json(h)?);
                }
            }
            ChannelStatus::Settled { htlcs }
        }
        Some("closed") => ChannelStatus::Closed,
        _ => bail!("unknown channel status in {v}"),
    };
    Ok(Channel {
        a: addr("a")?,
        b: addr("b")?,
        asset: AssetId(field_u64(v, "asset")?),
        deposit_a: field_u128(v, "deposit_a")?,
        deposit_b: field_u128(v, "deposit_b")?,
        challenge_blocks: field_u64(v, "challenge_blocks")?,
        status,
    })
}

/// `pb_getChannel(id)`, raw; an error for an unknown channel.
pub fn fetch_channel_json(rpc: &Rpc, id: ChannelId) -> Result<Json> {
    let v = rpc.call("pb_getChannel", vec![json!(id)])?;
    if v.is_null() {
        bail!("unknown channel {id} (its id is printed by `parabit tx channel-open`)");
    }
    Ok(v)
}

/// The channel's record, from the node.
pub fn fetch_channel(rpc: &Rpc, id: ChannelId) -> Result<Channel> {
    let v = fetch_channel_json(rpc, id)?;
    channel_from_json(&v).context("pb_getChannel: unexpected answer")
}

/// A state for people: `nonce 2: a 0.07 BTC, b 0.03 BTC (deposits …)`.
pub fn state_text(s: &ChannelState, asset: &AssetMeta) -> String {
    let mut out = format!(
        "nonce {}: a gets {}, b gets {} (signed against deposits {} + {})",
        s.nonce,
        asset.show(s.balance_a),
        asset.show(s.balance_b),
        asset.show(s.deposit_a),
        asset.show(s.deposit_b)
    );
    for (i, h) in s.htlcs.iter().enumerate() {
        out.push_str(&format!(
            "\n  HTLC {i}: {} {} hash {} expiry {}",
            if h.a_to_b { "a->b" } else { "b->a" },
            asset.show(h.amount),
            hex::encode(h.hash),
            h.expiry
        ));
    }
    out
}

/// Runs `parabit channel …`.
pub fn run(args: &ChannelArgs) -> Result<()> {
    let from = args.from.as_deref().ok_or_else(|| {
        anyhow!("--from NAME is required: the keystore key that signs (see `parabit wallet list`)")
    })?;
    let keystore = args.keystore.path()?;
    let signer = wallet_cmd::resolve_address(from, &args.keystore).context("--from")?;
    let rpc = Rpc::connect(&args.rpc)?;
    let info = rpc.chain_info()?;
    let lk = RpcLookup::new(&rpc, &info);
    let (mut file, path, id, ch) = match &args.cmd {
        ChannelCmd::State(s) => {
            if s.out.exists() && !s.force {
                bail!(
                    "{} exists: give another --out, or --force to overwrite it",
                    s.out.display()
                );
            }
            let ch = fetch_channel(&rpc, s.channel)?;
            party(s.channel, &ch, &signer, info.network).context("--from")?;
            let asset = lk.asset(ch.asset)?;
            let state = build_state(s, &ch, &asset, &lk)?;
            let file = StateFile {
                chain_id: info.chain_id,
                state,
                sig_a: None,
                sig_b: None,
            };
            (file, s.out.clone(), s.channel, ch)
        }
        ChannelCmd::Sign { state, out } => {
            let file = StateFile::load(state)?;
            ensure!(
                file.chain_id == info.chain_id,
                "the state is for chain {}, but the node runs chain {}",
                file.chain_id,
                info.chain_id
            );
            let id = file.state.channel;
            let ch = fetch_channel(&rpc, id)?;
            let me = party(id, &ch, &signer, info.network).context("--from")?;
            check_amounts(id, &ch, &file.state)
                .with_context(|| format!("state file {}", state.display()))?;
            file.verify(&ch)
                .with_context(|| format!("state file {}", state.display()))?;
            ensure!(
                file.sig(me)?.is_none(),
                "the state already has your signature (party {me})"
            );
            let path = out.clone().unwrap_or_else(|| state.clone());
            (file, path, id, ch)
        }
    };
    let me = party(id, &ch, &signer, info.network)?;
    let key = wallet_cmd::signing_key(&keystore, from)?;
    ensure!(
        key.address() == signer,
        "the key for --from {from} does not match its address"
    );
    let digest = channels::state_digest(file.chain_id, &file.state);
    let sig = hex::encode(key.sign_digest(&digest));
    if me == 'a' {
        file.sig_a = Some(sig);
    } else {
        file.sig_b = Some(sig);
    }
    file.verify(&ch)?;
    file.save(&path)?;
    let signed_by = file.signed_by();
    if args.json {
        let doc = json!({
            "file": path.display().to_string(),
            "channel": id,
            "nonce": file.state.nonce,
            "signed_by": signed_by.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "complete": signed_by.len() == 2,
            "digest": hex::encode(digest),
            "state": serde_json::to_value(&file).unwrap_or(Json::Null),
        });
        println!("{doc}");
    } else {
        let asset = lk.asset(ch.asset)?;
        println!(
            "channel {id} state {}\nsigned by party {me}; wrote {}",
            state_text(&file.state, &asset),
            path.display()
        );
        if signed_by.len() == 2 {
            println!("signed by both parties: ready for `parabit tx channel-close-coop`, `channel-close` or `channel-challenge --state {}`", path.display());
        } else {
            let other = if me == 'a' { 'b' } else { 'a' };
            println!(
                "send it to party {other}, who signs it with `parabit channel sign --state FILE`"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::human::tests::{meta, FakeChain};
    use clap::Parser;
    use parabit_primitives::SigningKey;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: ChannelCmd,
    }

    fn keys() -> (SigningKey, SigningKey) {
        (
            SigningKey::from_seed(b"ch a"),
            SigningKey::from_seed(b"ch b"),
        )
    }

    fn record() -> Channel {
        let (a, b) = keys();
        Channel {
            a: a.address(),
            b: b.address(),
            asset: AssetId(0),
            deposit_a: 10_000_000,
            deposit_b: 5_000_000,
            challenge_blocks: 10,
            status: ChannelStatus::Open,
        }
    }

    fn state_args(extra: &[&str]) -> Result<StateArgs> {
        let mut argv = vec!["t", "state", "--channel", "42", "--out", "x.json"];
        argv.extend_from_slice(extra);
        match T::try_parse_from(argv).map_err(|e| anyhow!("{e}"))?.cmd {
            ChannelCmd::State(s) => Ok(s),
            other => bail!("parsed {other:?}"),
        }
    }

    fn build(extra: &[&str]) -> Result<ChannelState> {
        build_state(
            &state_args(extra)?,
            &record(),
            &meta(0, "BTC", 8),
            &FakeChain,
        )
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn states_from_human_amounts_and_the_record() {
        let s = build(&[
            "--nonce",
            "2",
            "--balance-a",
            "0.07 BTC",
            "--balance-b",
            "0.08",
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(
            s,
            ChannelState {
                channel: 42,
                nonce: 2,
                deposit_a: 10_000_000,
                deposit_b: 5_000_000,
                balance_a: 7_000_000,
                balance_b: 8_000_000,
                htlcs: vec![],
            }
        );
        let hash = "ab".repeat(32);
        let s = build(&[
            "--nonce",
            "3",
            "--deposit-b",
            "0",
            "--balance-a",
            "0.05",
            "--balance-b",
            "0.04",
            "--htlc",
            &format!("a->b:0.01 BTC:{hash}:+5"),
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(s.deposit_b, 0);
        assert_eq!(
            s.htlcs,
            vec![Htlc {
                a_to_b: true,
                amount: 1_000_000,
                hash: [0xab; 32],
                expiry: 1_005,
            }]
        );
    }

    #[test]
    fn inconsistent_states_are_refused() {
        let bad = |extra: &[&str]| err(build(extra));
        assert!(
            bad(&["--nonce", "1", "--balance-a", "0.1", "--balance-b", "0.1"])
                .contains("must be equal")
        );
        assert!(
            bad(&["--nonce", "0", "--balance-a", "0.1", "--balance-b", "0.05"]).contains("nonce 0")
        );
        assert!(bad(&[
            "--nonce",
            "1",
            "--deposit-a",
            "1",
            "--balance-a",
            "1",
            "--balance-b",
            "0.05"
        ])
        .contains("above the channel's"));
        assert!(
            bad(&["--nonce", "1", "--balance-a", "1 USDC", "--balance-b", "0"])
                .contains("needs BTC")
        );
        let h = "00".repeat(32);
        for spec in [
            "a->b:0.01:zz:5".to_string(),
            format!("c->b:0.01:{h}:5"),
            "a->b:0.01".to_string(),
            format!("a->b:0:{h}:5"),
            format!("a->b:0.01:{h}:soon"),
        ] {
            let e = bad(&[
                "--nonce",
                "1",
                "--balance-a",
                "0.1",
                "--balance-b",
                "0.04",
                "--htlc",
                &spec,
            ]);
            assert!(e.contains("--htlc"), "{spec}: {e}");
        }
    }

    #[test]
    fn state_files_round_trip_and_signatures_verify() {
        let (ka, kb) = keys();
        let ch = record();
        let state = ChannelState {
            channel: 42,
            nonce: 1,
            deposit_a: 10_000_000,
            deposit_b: 5_000_000,
            balance_a: u128::from(u64::MAX) * 3,
            balance_b: 0,
            htlcs: vec![],
        };
        let digest = channels::state_digest(7, &state);
        let mut f = StateFile {
            chain_id: 7,
            state,
            sig_a: Some(hex::encode(ka.sign_digest(&digest))),
            sig_b: None,
        };
        let text = serde_json::to_string_pretty(&f).unwrap_or_default();
        assert!(!text.contains("sig_b"), "{text}");
        assert_eq!(StateFile::parse(&text).ok(), Some(f.clone()));
        assert!(f.verify(&ch).is_ok());
        assert_eq!(f.signed_by(), vec!['a']);
        assert!(err(f.signed()).contains("no signature of party b"));
        f.sig_b = Some(hex::encode(kb.sign_digest(&digest)));
        let signed = f.signed().unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(signed.state, f.state);
        // A changed state, another chain or a swapped signature no longer verifies.
        let mut changed = f.clone();
        changed.state.balance_b = 1;
        assert!(err(changed.verify(&ch)).contains("party a"));
        let mut other_chain = f.clone();
        other_chain.chain_id = 8;
        assert!(err(other_chain.verify(&ch)).contains("does not verify"));
        let mut swapped = f.clone();
        swapped.sig_a = f.sig_b.clone();
        assert!(err(swapped.verify(&ch)).contains("party a"));
    }

    #[test]
    fn bad_state_files_are_refused_clearly() {
        assert!(err(StateFile::parse("{")).contains("not a channel state file"));
        assert!(err(StateFile::parse("{\"chain_id\": 1}")).contains("not a channel state file"));
        let good = StateFile {
            chain_id: 1,
            state: ChannelState {
                channel: 1,
                nonce: 1,
                deposit_a: 1,
                deposit_b: 0,
                balance_a: 1,
                balance_b: 0,
                htlcs: vec![],
            },
            sig_a: Some("00".repeat(63)),
            sig_b: None,
        };
        let text = serde_json::to_string(&good).unwrap_or_default();
        assert!(err(StateFile::parse(&text)).contains("128 hex digits"));
        let extra = text.replacen('{', "{\"extra\": 1, ", 1);
        assert!(err(StateFile::parse(&extra)).contains("not a channel state file"));
        let (a, _) = keys();
        let stranger = SigningKey::from_seed(b"stranger").address();
        let ch = record();
        assert_eq!(
            party(42, &ch, &a.address(), Network::Regtest).ok(),
            Some('a')
        );
        assert!(err(party(42, &ch, &stranger, Network::Regtest)).contains("not a party"));
    }

    #[test]
    fn rpc_objects_read_back_into_records() {
        let (a, b) = keys();
        let v = json!({
            "channel": 42, "a": a.address().to_string(), "b": b.address().to_bech32(Network::Regtest),
            "asset": 0, "deposit_a": "10", "deposit_b": "5", "challenge_blocks": 3,
            "status": "closing", "deadline": 77, "htlcs": [],
            "state": {"channel": 42, "nonce": 4, "deposit_a": "10", "deposit_b": "5",
                      "balance_a": "15", "balance_b": "0", "htlcs": []},
        });
        let ch = channel_from_json(&v).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((ch.a, ch.b, ch.deposit_a), (a.address(), b.address(), 10));
        match ch.status {
            ChannelStatus::Closing { state, deadline } => {
                assert_eq!((state.nonce, state.balance_a, deadline), (4, 15, 77));
            }
            other => panic!("{other:?}"),
        }
        let mut settled = v.clone();
        settled["status"] = json!("settled");
        settled["htlcs"] = json!([{"index": 2, "a_to_b": false, "amount": "3",
            "hash": "11".repeat(32), "expiry": 9}]);
        match channel_from_json(&settled).map(|c| c.status) {
            Ok(ChannelStatus::Settled { htlcs }) => {
                assert_eq!(htlcs.len(), 3);
                assert!(htlcs[0].is_none() && htlcs[2].as_ref().is_some_and(|h| h.amount == 3));
            }
            other => panic!("{other:?}"),
        }
        let mut bad = v;
        bad["status"] = json!("weird");
        assert!(channel_from_json(&bad).is_err());
    }
}
