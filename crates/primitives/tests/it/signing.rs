//! BIP-340 signing and verification, checked against the official test vectors from
//! <https://github.com/bitcoin/bips/blob/master/bip-0340/test-vectors.csv>.

use parabit_primitives::{
    verify_batch, verify_digest, Address, SignatureError, SignedTransaction, SigningKey,
};

use crate::{addr, hex32, sample_tx, TestCall};

fn sig64(s: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    hex::decode_to_slice(s, &mut out).expect("test hex");
    out
}

/// (index, secret key, public key, aux_rand, message, signature) of BIP-340 test vectors
/// 0, 1 and 2 (all "TRUE").
const VECTORS: [(u32, &str, &str, &str, &str, &str); 3] = [
    (
        0,
        "0000000000000000000000000000000000000000000000000000000000000003",
        "F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA821525F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0",
    ),
    (
        1,
        "B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "0000000000000000000000000000000000000000000000000000000000000001",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE33418906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A",
    ),
    (
        2,
        "C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B14E5C9",
        "DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8",
        "C87AA53824B4D7AE2EB035A2B5BBBCCC080E76CDC6D1692C4B0B62D798E6D906",
        "7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C",
        "5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1BAB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7",
    ),
];

#[test]
fn bip340_official_vectors() {
    for (index, secret, public, aux, msg, sig) in VECTORS {
        let key = SigningKey::from_secret_bytes(hex32(secret)).expect("vector secret");
        assert_eq!(key.address(), addr(public), "vector {index}: public key");
        let msg = hex32(msg);
        let sig = sig64(sig);
        assert_eq!(
            verify_digest(&key.address(), &msg, &sig),
            Ok(()),
            "vector {index}: verify"
        );
        // We sign with 32 zero bytes of auxiliary randomness; vector 0 uses exactly that, so
        // our signature must equal the published one bit for bit.
        if hex32(aux) == [0u8; 32] {
            assert_eq!(key.sign_digest(&msg), sig, "vector {index}: sign");
        }
        // A flipped bit of the message or the signature fails.
        let mut bad_msg = msg;
        bad_msg[31] ^= 1;
        assert_eq!(
            verify_digest(&key.address(), &bad_msg, &sig),
            Err(SignatureError::BadSignature)
        );
        let mut bad_sig = sig;
        bad_sig[63] ^= 1;
        assert_eq!(
            verify_digest(&key.address(), &msg, &bad_sig),
            Err(SignatureError::BadSignature)
        );
    }
}

#[test]
fn bip340_vector_5_public_key_not_on_curve() {
    let pk = addr("EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34");
    let msg = hex32("243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89");
    let sig = sig64("6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E17776969E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B");
    assert_eq!(
        verify_digest(&pk, &msg, &sig),
        Err(SignatureError::InvalidSender)
    );
}

#[test]
fn sign_then_verify() {
    let key = SigningKey::from_seed(b"signer");
    let stx = key.sign(sample_tx(&key));
    assert_eq!(stx.verify(), Ok(()));
    // Deterministic.
    assert_eq!(key.sign(sample_tx(&key)).signature, stx.signature);
    assert_eq!(stx.sighash(), stx.tx.sighash());
}

type Tamper<'a> = Box<dyn Fn(&mut SignedTransaction<TestCall>) + 'a>;

#[test]
fn tampered_transactions_are_rejected() {
    let key = SigningKey::from_seed(b"signer");
    let other = SigningKey::from_seed(b"other");
    let stx = key.sign(sample_tx(&key));
    let tampers: Vec<(&str, Tamper)> = vec![
        ("chain id", Box::new(|s| s.tx.chain_id += 1)),
        ("nonce", Box::new(|s| s.tx.nonce += 1)),
        ("fee", Box::new(|s| s.tx.fee -= 1)),
        ("call", Box::new(|s| s.tx.call = TestCall::Ping(1))),
        ("sender", Box::new(|s| s.tx.sender = other.address())),
        ("signature", Box::new(|s| s.signature[10] ^= 0x40)),
    ];
    for (what, tamper) in tampers {
        let mut t = stx.clone();
        tamper(&mut t);
        assert_eq!(
            t.verify(),
            Err(SignatureError::BadSignature),
            "tampered {what}"
        );
    }
    // Signed by a key that is not the sender's.
    let forged = other.sign(sample_tx(&key));
    assert_eq!(forged.verify(), Err(SignatureError::BadSignature));
    // A sender that is not a key at all.
    let mut t = stx.clone();
    t.tx.sender = Address(hex32(
        "EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34",
    ));
    assert_eq!(t.verify(), Err(SignatureError::InvalidSender));
}

#[test]
fn batch_verification_matches_one_by_one() {
    let keys: Vec<SigningKey> = (0u32..20)
        .map(|i| SigningKey::from_seed(&i.to_le_bytes()))
        .collect();
    let mut txs: Vec<SignedTransaction<TestCall>> = Vec::new();
    for i in 0..300usize {
        let key = &keys[i % keys.len()];
        let mut tx = sample_tx(key);
        tx.nonce = i as u64;
        let mut stx = key.sign(tx);
        if i % 7 == 3 {
            stx.signature[0] ^= 1;
        }
        txs.push(stx);
    }
    let expected: Vec<_> = txs.iter().map(|t| t.verify()).collect();
    assert!(expected.iter().filter(|r| r.is_err()).count() > 30);
    for threads in [1, 2, 4] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        assert_eq!(pool.install(|| verify_batch(&txs)), expected);
    }
}
