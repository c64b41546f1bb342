use bech32::{Bech32, Bech32m, ByteIterExt, Fe32, Fe32IterExt, Hrp};
use parabit_primitives::{Address, AddressError, Network, SigningKey};
use proptest::prelude::*;

fn valid() -> Address {
    SigningKey::from_seed(b"address tests").address()
}

fn encode_raw<Ck: bech32::Checksum>(hrp: &str, data: &[u8]) -> String {
    let hrp = Hrp::parse(hrp).expect("hrp");
    bech32::encode::<Ck>(hrp, data).expect("encode")
}

#[test]
fn mainnet_and_regtest_prefixes() {
    let a = valid();
    assert!(a.to_bech32(Network::Mainnet).starts_with("pb1"));
    assert!(a.to_bech32(Network::Regtest).starts_with("pbrt1"));
    assert_eq!(
        a.to_bech32(Network::Mainnet),
        encode_raw::<Bech32m>("pb", &a.0)
    );
    assert_eq!(a.to_string(), a.to_bech32(Network::Mainnet));
}

#[test]
fn bad_checksum() {
    let s = valid().to_bech32(Network::Mainnet);
    let mut chars: Vec<char> = s.chars().collect();
    let i = chars.len() - 3;
    chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
    let typo: String = chars.into_iter().collect();
    assert_eq!(Address::parse(&typo), Err(AddressError::BadChecksum));
}

#[test]
fn bech32_instead_of_bech32m() {
    let s = encode_raw::<Bech32>("pb", &valid().0);
    assert_eq!(Address::parse(&s), Err(AddressError::WrongVariant));
}

#[test]
fn unknown_hrp() {
    let s = encode_raw::<Bech32m>("bc", &valid().0);
    assert_eq!(
        Address::parse(&s),
        Err(AddressError::UnknownHrp("bc".into()))
    );
}

#[test]
fn wrong_length() {
    let a = valid();
    assert_eq!(
        Address::parse(&encode_raw::<Bech32m>("pb", &a.0[..31])),
        Err(AddressError::WrongLength(31))
    );
    let mut long = a.0.to_vec();
    long.push(7);
    assert_eq!(
        Address::parse(&encode_raw::<Bech32m>("pbrt", &long)),
        Err(AddressError::WrongLength(33))
    );
}

#[test]
fn not_a_valid_xonly_key() {
    // BIP-340 test vector 5's public key: not the x coordinate of a curve point.
    let bad = crate::hex32("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34");
    assert_eq!(
        Address::parse(&encode_raw::<Bech32m>("pb", &bad)),
        Err(AddressError::InvalidKey)
    );
    // The field size p is not a valid x coordinate either.
    let p = crate::hex32("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F");
    assert_eq!(
        Address::parse(&encode_raw::<Bech32m>("pb", &p)),
        Err(AddressError::InvalidKey)
    );
}

#[test]
fn non_zero_padding() {
    let hrp = Hrp::parse("pb").expect("hrp");
    let mut fes: Vec<Fe32> = valid().0.iter().copied().bytes_to_fes().collect();
    let last = fes.len() - 1;
    fes[last] = Fe32::try_from(fes[last].to_u8() | 1).expect("fe32");
    let s: String = fes
        .into_iter()
        .with_checksum::<Bech32m>(&hrp)
        .chars()
        .collect();
    assert_eq!(Address::parse(&s), Err(AddressError::NonCanonicalPadding));
}

#[test]
fn malformed_strings() {
    for s in [
        "",
        "pb",
        "hello",
        "pb1",
        "pb1bbbbbb",
        "Pb1qqqq",
        "pb1\u{e9}",
    ] {
        assert!(
            matches!(
                Address::parse(s),
                Err(AddressError::Malformed(_) | AddressError::BadChecksum)
            ),
            "{s:?} gave {:?}",
            Address::parse(s)
        );
    }
    let msg = Address::parse("nonsense").unwrap_err().to_string();
    assert!(msg.starts_with("not a bech32m address"), "{msg}");
}

#[test]
fn uppercase_accepted_and_mixed_case_refused() {
    let a = valid();
    let s = a.to_bech32(Network::Regtest);
    assert_eq!(Address::parse(&s.to_uppercase()), Ok((Network::Regtest, a)));
    let mut mixed = s.clone();
    mixed.replace_range(0..1, "P");
    assert!(matches!(
        Address::parse(&mixed),
        Err(AddressError::Malformed(_))
    ));
}

#[test]
fn error_messages_are_readable() {
    assert_eq!(
        AddressError::UnknownHrp("bc".into()).to_string(),
        "unknown address prefix \"bc\": expected \"pb\" (mainnet) or \"pbrt\" (regtest)"
    );
    assert_eq!(
        AddressError::WrongLength(31).to_string(),
        "address holds 31 bytes; expected 32"
    );
}

proptest! {
    #[test]
    fn bech32_round_trip(seed in any::<[u8; 16]>(), regtest in any::<bool>()) {
        let a = SigningKey::from_seed(&seed).address();
        let net = if regtest { Network::Regtest } else { Network::Mainnet };
        let s = a.to_bech32(net);
        prop_assert_eq!(Address::parse(&s), Ok((net, a)));
        prop_assert_eq!(s.parse::<Address>(), Ok(a));
    }

    #[test]
    fn arbitrary_bytes_either_parse_or_fail_cleanly(bytes in any::<[u8; 32]>()) {
        let s = Address(bytes).to_bech32(Network::Mainnet);
        match Address::parse(&s) {
            Ok((net, a)) => {
                prop_assert_eq!(net, Network::Mainnet);
                prop_assert_eq!(a, Address(bytes));
            }
            Err(e) => prop_assert_eq!(e, AddressError::InvalidKey),
        }
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,100}") {
        let _ = Address::parse(&s);
    }

    #[test]
    fn parse_never_panics_near_valid(s in "(pb|pbrt|PB|bc)1[qpzry9x8gf2tvdw0s3jn54khce6mua7l]{0,70}") {
        let _ = Address::parse(&s);
    }
}
