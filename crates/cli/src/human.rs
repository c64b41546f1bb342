//! Human input shared by the `tx` and `query` commands: asset references (`BTC` or `3`),
//! amounts in human units (`"0.5 BTC"`, `0.5` with `--asset 3`, `1000sat`), routes
//! (`BTC,ETH,USDC`), pools (`BTC-USDC`) and fees.
//!
//! Invariants:
//! - Amount parsing is exact (the wallet crate's decimal parser on `u128`): a value that
//!   is not exactly representable in the asset's decimals is an error, never rounded.
//! - An amount's unit and an explicit `--asset` must name the same asset; a unitless amount
//!   needs an asset from the flag or the command's context, or it is refused (never
//!   guessed).
//! - A bare fee number is satoshis (an integer), so `--fee 100` can never mean 100 BTC.

use anyhow::{anyhow, bail, Context, Result};
use parabit_primitives::AssetId;
use parabit_wallet::{parse_amount, parse_amount_with_unit};

use crate::client::{AssetMeta, Lookup};

/// An asset named by id (`3`) or symbol (`BTC`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssetRef {
    /// By id.
    Id(u64),
    /// By symbol (case-insensitive).
    Symbol(String),
}

impl std::str::FromStr for AssetRef {
    type Err = String;

    fn from_str(s: &str) -> Result<AssetRef, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty asset: give a symbol (BTC) or an id (3)".into());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return s
                .parse()
                .map(AssetRef::Id)
                .map_err(|_| format!("asset id {s} is too large"));
        }
        if s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(AssetRef::Symbol(s.to_ascii_uppercase()));
        }
        Err(format!(
            "invalid asset {s:?}: give a symbol (BTC) or an id (3)"
        ))
    }
}

impl std::fmt::Display for AssetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssetRef::Id(i) => write!(f, "{i}"),
            AssetRef::Symbol(s) => f.write_str(s),
        }
    }
}

impl AssetRef {
    /// The asset it names.
    pub fn resolve(&self, lk: &dyn Lookup) -> Result<AssetMeta> {
        match self {
            AssetRef::Id(i) => lk.asset(AssetId(*i)),
            AssetRef::Symbol(s) => lk.asset_by_symbol(s),
        }
    }
}

/// Resolves `--asset` if given.
pub fn resolve_opt(asset: Option<&AssetRef>, lk: &dyn Lookup) -> Result<Option<AssetMeta>> {
    asset.map(|a| a.resolve(lk)).transpose()
}

/// Parses a human amount. `asset`: the asset the command expects (from `--asset` or its
/// context: a pool's asset), if known. Returns the asset and the exact base units.
pub fn amount(
    what: &str,
    text: &str,
    asset: Option<&AssetMeta>,
    lk: &dyn Lookup,
) -> Result<(AssetMeta, u128)> {
    let (number, unit) = parse_amount_with_unit(text).with_context(|| what.to_string())?;
    let meta = match (unit, asset) {
        (Some(unit), expected) => {
            let lower = unit.to_ascii_lowercase();
            let (meta, number_decimals) = if lower == "sat" || lower == "sats" {
                (lk.asset(AssetId::BTC)?, 0)
            } else {
                let m = lk
                    .asset_by_symbol(&unit)
                    .with_context(|| format!("{what} {text:?}"))?;
                let d = m.decimals;
                (m, d)
            };
            if let Some(e) = expected {
                if e.id != meta.id {
                    bail!(
                        "{what} {text:?} is in {} but this needs {} (asset {})",
                        meta.symbol,
                        e.symbol,
                        e.id
                    );
                }
            }
            let v = parse_amount(&number, number_decimals)
                .with_context(|| format!("{what} {text:?}"))?;
            return Ok((meta, v));
        }
        (None, Some(e)) => e.clone(),
        (None, None) => {
            bail!("{what} {text:?} has no unit: write e.g. \"{text} BTC\" or give --asset")
        }
    };
    let v = parse_amount(&number, meta.decimals).with_context(|| {
        format!(
            "{what} {text:?} in {} ({} decimals)",
            meta.symbol, meta.decimals
        )
    })?;
    Ok((meta, v))
}

/// [`amount`] that must be positive.
pub fn positive_amount(
    what: &str,
    text: &str,
    asset: Option<&AssetMeta>,
    lk: &dyn Lookup,
) -> Result<(AssetMeta, u128)> {
    let (m, v) = amount(what, text, asset, lk)?;
    if v == 0 {
        bail!("{what} must be more than zero");
    }
    Ok((m, v))
}

/// A fee: a bare integer is satoshis; otherwise a BTC amount with its unit (`0.0001 BTC`,
/// `500sat`).
pub fn fee(text: &str, lk: &dyn Lookup) -> Result<u128> {
    let (number, unit) = parse_amount_with_unit(text).context("--fee")?;
    match unit {
        None => parse_amount(&number, 0)
            .with_context(|| format!("--fee {text:?}: a bare fee is whole satoshis")),
        Some(_) => {
            let btc = lk.asset(AssetId::BTC)?;
            amount("--fee", text, Some(&btc), lk).map(|(_, v)| v)
        }
    }
}

/// A route `A,B,C` of two or more assets.
pub fn route(text: &str) -> Result<Vec<AssetRef>> {
    let parts: Vec<AssetRef> = text
        .split(',')
        .map(|p| p.parse::<AssetRef>().map_err(|e| anyhow!("--route: {e}")))
        .collect::<Result<_>>()?;
    if parts.len() < 2 {
        bail!("--route {text:?} needs at least two assets, e.g. BTC,USDC");
    }
    Ok(parts)
}

/// A pool `A-B` (symbols or ids; `A/B` also accepted).
pub fn pool(text: &str) -> Result<(AssetRef, AssetRef)> {
    let (a, b) = text
        .split_once('-')
        .or_else(|| text.split_once('/'))
        .ok_or_else(|| anyhow!("pool {text:?}: expected two assets like BTC-USDC or 0-1"))?;
    let a: AssetRef = a.parse().map_err(|e| anyhow!("pool {text:?}: {e}"))?;
    let b: AssetRef = b.parse().map_err(|e| anyhow!("pool {text:?}: {e}"))?;
    Ok((a, b))
}

/// `value` less `bps` basis points, rounded down.
pub fn minus_bps(value: u128, bps: u32) -> u128 {
    let keep = 10_000u128.saturating_sub(u128::from(bps.min(10_000)));
    // value / 10_000 * keep + (value % 10_000) * keep / 10_000, without overflow.
    (value / 10_000) * keep + (value % 10_000) * keep / 10_000
}

/// `value` plus `bps` basis points, rounded up (saturating).
pub fn plus_bps(value: u128, bps: u32) -> u128 {
    let extra = (value / 10_000)
        .saturating_mul(u128::from(bps))
        .saturating_add(((value % 10_000) * u128::from(bps)).div_ceil(10_000));
    value.saturating_add(extra)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::client::Lookup;

    /// A fixed chain: BTC (0, 8 decimals), USDC (1, 6), ETH (2, 18), LP (7, 0).
    pub struct FakeChain;

    pub fn meta(id: u64, symbol: &str, decimals: u8) -> AssetMeta {
        AssetMeta {
            id: AssetId(id),
            symbol: symbol.into(),
            decimals,
        }
    }

    const ASSETS: [(u64, &str, u8); 4] =
        [(0, "BTC", 8), (1, "USDC", 6), (2, "ETH", 18), (7, "LP", 0)];

    impl Lookup for FakeChain {
        fn asset(&self, id: AssetId) -> Result<AssetMeta> {
            ASSETS
                .iter()
                .find(|a| a.0 == id.0)
                .map(|a| meta(a.0, a.1, a.2))
                .ok_or_else(|| anyhow!("unknown asset {id}"))
        }
        fn asset_by_symbol(&self, symbol: &str) -> Result<AssetMeta> {
            ASSETS
                .iter()
                .find(|a| a.1.eq_ignore_ascii_case(symbol))
                .map(|a| meta(a.0, a.1, a.2))
                .ok_or_else(|| anyhow!("unknown asset symbol {symbol:?}"))
        }
        fn height(&self) -> Result<u64> {
            Ok(1_000)
        }
        fn quote_exact_in(&self, path: &[AssetId], amount_in: u128, batch: bool) -> Result<u128> {
            // 1 BTC sat = 600 USDC micro-units; batch quotes 1% worse.
            let base = amount_in * 600 / (path.len() as u128 - 1);
            Ok(if batch { base * 99 / 100 } else { base })
        }
        fn quote_exact_out(&self, _path: &[AssetId], amount_out: u128) -> Result<u128> {
            Ok(amount_out.div_ceil(600))
        }
        fn staking_pool_assets(&self, pool: u64) -> Result<(AssetId, AssetId)> {
            match pool {
                5 => Ok((AssetId(2), AssetId(1))),
                _ => Err(anyhow!("unknown staking pool {pool}")),
            }
        }
        fn insurance_pool_asset(&self, pool: u64) -> Result<AssetId> {
            match pool {
                9 => Ok(AssetId(1)),
                _ => Err(anyhow!("unknown insurance pool {pool}")),
            }
        }
        fn cover_pool(&self, cover: u64) -> Result<u64> {
            match cover {
                11 => Ok(9),
                _ => Err(anyhow!("unknown cover {cover}")),
            }
        }
        fn quote_premium(&self, _pool: u64, amount: u128, period_blocks: u64) -> Result<u128> {
            Ok(amount * u128::from(period_blocks) / 1_000_000)
        }
    }

    fn ok<T>(r: Result<T>) -> T {
        r.unwrap_or_else(|e| panic!("{e:#}"))
    }

    fn err<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn amounts_with_units_and_assets() {
        let lk = FakeChain;
        assert_eq!(
            ok(amount("--amount", "0.5 BTC", None, &lk)),
            (meta(0, "BTC", 8), 50_000_000)
        );
        assert_eq!(ok(amount("--amount", "0.5btc", None, &lk)).1, 50_000_000);
        assert_eq!(
            ok(amount("--amount", "1000sat", None, &lk)),
            (meta(0, "BTC", 8), 1000)
        );
        let usdc = meta(1, "USDC", 6);
        assert_eq!(
            ok(amount("--amount", "12.25", Some(&usdc), &lk)).1,
            12_250_000
        );
        assert_eq!(
            ok(amount("--amount", "12.25 USDC", Some(&usdc), &lk)).1,
            12_250_000
        );
        assert_eq!(ok(amount("--amount", "1 ETH", None, &lk)).1, 10u128.pow(18));
    }

    #[test]
    fn bad_amounts_are_refused_clearly() {
        let lk = FakeChain;
        let usdc = meta(1, "USDC", 6);
        assert!(err(amount("--amount", "0.5", None, &lk)).contains("no unit"));
        assert!(err(amount("--amount", "0.5 BTC", Some(&usdc), &lk)).contains("needs USDC"));
        assert!(err(amount("--amount", "0.0000001", Some(&usdc), &lk)).contains("decimal places"));
        assert!(err(amount("--amount", "1 DOGE", None, &lk)).contains("DOGE"));
        assert!(err(amount("--amount", "-1 BTC", None, &lk)).contains("negative"));
        assert!(err(amount("--amount", "1.5sat", None, &lk)).contains("1.5sat"));
        assert!(err(positive_amount("--amount", "0 BTC", None, &lk)).contains("more than zero"));
    }

    #[test]
    fn fees_default_to_satoshis() {
        let lk = FakeChain;
        assert_eq!(ok(fee("100", &lk)), 100);
        assert_eq!(ok(fee("250sat", &lk)), 250);
        assert_eq!(ok(fee("0.0001 BTC", &lk)), 10_000);
        assert!(err(fee("0.5", &lk)).contains("whole satoshis"));
        assert!(err(fee("1 USDC", &lk)).contains("needs BTC"));
    }

    #[test]
    fn asset_refs_routes_and_pools() {
        assert_eq!(
            "btc".parse::<AssetRef>(),
            Ok(AssetRef::Symbol("BTC".into()))
        );
        assert_eq!("42".parse::<AssetRef>(), Ok(AssetRef::Id(42)));
        assert!("a-b".parse::<AssetRef>().is_err());
        assert!("99999999999999999999999".parse::<AssetRef>().is_err());
        assert_eq!(ok(route("BTC,2,usdc")).len(), 3);
        assert!(err(route("BTC")).contains("two assets"));
        assert_eq!(
            ok(pool("BTC-1")),
            (AssetRef::Symbol("BTC".into()), AssetRef::Id(1))
        );
        assert!(err(pool("BTC")).contains("BTC-USDC"));
    }

    #[test]
    fn slippage_math() {
        assert_eq!(minus_bps(10_000, 50), 9_950);
        assert_eq!(minus_bps(u128::MAX, 0), u128::MAX);
        assert_eq!(minus_bps(u128::MAX, 10_000), 0);
        assert_eq!(minus_bps(7, 100), 6);
        assert_eq!(plus_bps(10_000, 50), 10_050);
        assert_eq!(plus_bps(7, 100), 8);
        assert_eq!(plus_bps(u128::MAX, 1), u128::MAX);
    }
}
