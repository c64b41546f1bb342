//! Account addresses: 32-byte x-only secp256k1 public keys (the keys of Bitcoin taproot),
//! shown as bech32m strings with the human-readable part `pb` (mainnet) or `pbrt` (regtest).
//!
//! Invariants:
//! - [`Address::to_bech32`] always yields lowercase bech32m with 32 data bytes and zero
//!   padding bits, and [`Address::parse`] of that string gives back the same network and
//!   address (round trip).
//! - [`Address::parse`] accepts only that canonical shape (either all-lowercase or
//!   all-uppercase, as bech32 allows): bech32m checksum, a known human-readable part,
//!   exactly 32 data bytes, zero padding bits, and bytes that are a valid x-only key. Every
//!   other input gives a typed [`AddressError`]; it never panics.
//! - An `Address` built directly from bytes (the field is public) may not be a valid key;
//!   signature verification then fails with a typed error, it never panics.

use std::fmt;
use std::str::FromStr;

use bech32::primitives::decode::{
    CheckedHrpstring, CheckedHrpstringError, ChecksumError, UncheckedHrpstring,
};
use bech32::{Bech32, Bech32m, ByteIterExt, Fe32IterExt, Hrp};
use borsh::{BorshDeserialize, BorshSerialize};

/// Human-readable part of mainnet addresses.
pub const MAINNET_HRP: &str = "pb";
/// Human-readable part of regtest addresses.
pub const REGTEST_HRP: &str = "pbrt";

const HRP_MAINNET: Hrp = Hrp::parse_unchecked(MAINNET_HRP);
const HRP_REGTEST: Hrp = Hrp::parse_unchecked(REGTEST_HRP);

/// The network an address string is meant for.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The main network: `pb1…`.
    Mainnet,
    /// A local regtest network: `pbrt1…`.
    Regtest,
}

impl Network {
    /// The bech32m human-readable part of this network's addresses.
    pub fn hrp_str(self) -> &'static str {
        match self {
            Network::Mainnet => MAINNET_HRP,
            Network::Regtest => REGTEST_HRP,
        }
    }

    fn hrp(self) -> Hrp {
        match self {
            Network::Mainnet => HRP_MAINNET,
            Network::Regtest => HRP_REGTEST,
        }
    }

    fn from_hrp(hrp: &Hrp) -> Option<Network> {
        if *hrp == HRP_MAINNET {
            Some(Network::Mainnet)
        } else if *hrp == HRP_REGTEST {
            Some(Network::Regtest)
        } else {
            None
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Network::Mainnet => "mainnet",
            Network::Regtest => "regtest",
        })
    }
}

/// Why a string is not a Parabit address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// Not a bech32 string at all (no `1` separator, invalid or mixed-case characters, a bad
    /// human-readable part, too long).
    #[error("not a bech32m address: {0}")]
    Malformed(String),
    /// The checksum does not match: a typo.
    #[error("invalid address checksum (is there a typo?)")]
    BadChecksum,
    /// A valid bech32 (BIP-173) checksum, but Parabit addresses use bech32m (BIP-350).
    #[error("address uses the bech32 checksum; Parabit addresses use bech32m")]
    WrongVariant,
    /// The human-readable part is neither `pb` nor `pbrt`.
    #[error("unknown address prefix {0:?}: expected \"pb\" (mainnet) or \"pbrt\" (regtest)")]
    UnknownHrp(String),
    /// The data part does not hold exactly 32 bytes.
    #[error("address holds {0} bytes; expected 32")]
    WrongLength(usize),
    /// The unused padding bits at the end of the data part are not zero.
    #[error("address has non-zero padding bits (not canonically encoded)")]
    NonCanonicalPadding,
    /// The 32 bytes are not the x coordinate of a point on secp256k1.
    #[error("address is not a valid x-only secp256k1 public key")]
    InvalidKey,
}

/// An account address: the 32-byte x-only secp256k1 public key that signs its transactions.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub struct Address(pub [u8; 32]);

impl Address {
    /// The address's 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The bech32m form of this address on `network` (`pb1…` or `pbrt1…`), lowercase.
    pub fn to_bech32(&self, network: Network) -> String {
        let hrp = network.hrp();
        self.0
            .iter()
            .copied()
            .bytes_to_fes()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect()
    }

    /// Parses a bech32m address of either network.
    pub fn parse(s: &str) -> Result<(Network, Address), AddressError> {
        let unchecked =
            UncheckedHrpstring::new(s).map_err(|e| AddressError::Malformed(e.to_string()))?;
        let checked = match CheckedHrpstring::new::<Bech32m>(s) {
            Ok(c) => c,
            Err(CheckedHrpstringError::Checksum(ChecksumError::CodeLength(e))) => {
                return Err(AddressError::Malformed(e.to_string()))
            }
            Err(CheckedHrpstringError::Checksum(_)) => {
                return Err(if unchecked.has_valid_checksum::<Bech32>() {
                    AddressError::WrongVariant
                } else {
                    AddressError::BadChecksum
                })
            }
            Err(e) => return Err(AddressError::Malformed(e.to_string())),
        };
        let hrp = checked.hrp();
        let network =
            Network::from_hrp(&hrp).ok_or_else(|| AddressError::UnknownHrp(hrp.to_lowercase()))?;
        let len = checked.byte_iter().len();
        if len != 32 {
            return Err(AddressError::WrongLength(len));
        }
        checked
            .validate_segwit_padding()
            .map_err(|_| AddressError::NonCanonicalPadding)?;
        let mut bytes = [0u8; 32];
        for (slot, b) in bytes.iter_mut().zip(checked.byte_iter()) {
            *slot = b;
        }
        let address = Address(bytes);
        if !address.is_valid_key() {
            return Err(AddressError::InvalidKey);
        }
        Ok((network, address))
    }

    /// Whether the bytes are a valid x-only secp256k1 public key.
    pub fn is_valid_key(&self) -> bool {
        secp256k1::XOnlyPublicKey::from_slice(&self.0).is_ok()
    }
}

impl fmt::Display for Address {
    /// The mainnet bech32m form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32(Network::Mainnet))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_bech32(Network::Mainnet))
    }
}

impl FromStr for Address {
    type Err = AddressError;

    /// Parses an address of either network (the network is dropped).
    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse(s).map(|(_, a)| a)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x of the generator point G: a valid key.
    const G_X: [u8; 32] = [
        0x79, 0xbe, 0x66, 0x7e, 0xf9, 0xdc, 0xbb, 0xac, 0x55, 0xa0, 0x62, 0x95, 0xce, 0x87, 0x0b,
        0x07, 0x02, 0x9b, 0xfc, 0xdb, 0x2d, 0xce, 0x28, 0xd9, 0x59, 0xf2, 0x81, 0x5b, 0x16, 0xf8,
        0x17, 0x98,
    ];

    #[test]
    fn round_trip_both_networks() {
        let a = Address(G_X);
        let main = a.to_bech32(Network::Mainnet);
        let reg = a.to_bech32(Network::Regtest);
        assert!(main.starts_with("pb1"));
        assert!(reg.starts_with("pbrt1"));
        assert_eq!(Address::parse(&main), Ok((Network::Mainnet, a)));
        assert_eq!(Address::parse(&reg), Ok((Network::Regtest, a)));
        assert_eq!(
            Address::parse(&main.to_uppercase()),
            Ok((Network::Mainnet, a))
        );
        assert_eq!(a.to_string(), main);
        assert_eq!(reg.parse::<Address>(), Ok(a));
    }

    #[test]
    fn serde_is_the_bech32_string() {
        let a = Address(G_X);
        let json = serde_json::to_string(&a).expect("serialize");
        assert_eq!(json, format!("\"{a}\""));
        let back: Address = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, a);
        assert!(serde_json::from_str::<Address>("\"pb1nope\"").is_err());
    }
}
