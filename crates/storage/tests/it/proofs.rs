//! State proofs: present and absent keys at the latest and past heights verify against that
//! height's root; wrong values, keys or roots fail; proofs survive borsh and JSON.

use parabit_exec::Value;
use parabit_storage::{verify_proof, Proof, StoreConfig, StoreError};

use crate::{commit_next, key, temp_store, writes};

#[test]
fn proofs_verify_for_present_and_absent_keys_at_every_height() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    let initial: Vec<_> = (0..40)
        .map(|i| (i, Some(Value::Num(u128::from(i)))))
        .collect();
    let b0 = commit_next(&store, &writes(&initial), vec![]);
    let b1 = commit_next(
        &store,
        &writes(&[(1, Some(Value::bytes(vec![7; 100]))), (2, None)]),
        vec![],
    );
    let b2 = commit_next(&store, &writes(&[]), vec![]);

    // Latest height.
    for (height, root) in [(1, b1.header.state_root), (2, b2.header.state_root)] {
        let (v, proof) = store.get_with_proof(&key(1), height).expect("proof");
        assert_eq!(v, Some(Value::bytes(vec![7; 100])));
        verify_proof(root, &key(1), v.as_ref(), &proof).expect("inclusion verifies");
        let (v, proof) = store.get_with_proof(&key(2), height).expect("proof");
        assert_eq!(v, None);
        verify_proof(root, &key(2), None, &proof).expect("exclusion verifies");
        // Claims the proof does not support.
        assert!(verify_proof(root, &key(2), Some(&Value::Num(2)), &proof).is_err());
    }
    // A past height: the old values, against the old root.
    let root0 = b0.header.state_root;
    let (v, proof) = store.get_with_proof(&key(1), 0).expect("proof");
    assert_eq!(v, Some(Value::Num(1)));
    verify_proof(root0, &key(1), Some(&Value::Num(1)), &proof).expect("old value verifies");
    assert!(verify_proof(b1.header.state_root, &key(1), Some(&Value::Num(1)), &proof).is_err());
    let (v, proof) = store.get_with_proof(&key(2), 0).expect("proof");
    assert_eq!(v, Some(Value::Num(2)));
    verify_proof(root0, &key(2), v.as_ref(), &proof).expect("verifies");
    assert!(
        verify_proof(root0, &key(2), None, &proof).is_err(),
        "not an exclusion proof"
    );

    // Wrong value, wrong key, wrong root.
    let (v, proof) = store.get_with_proof(&key(5), 2).expect("proof");
    let root = b2.header.state_root;
    verify_proof(root, &key(5), v.as_ref(), &proof).expect("verifies");
    assert!(verify_proof(root, &key(5), Some(&Value::Num(6)), &proof).is_err());
    assert!(verify_proof(
        root,
        &key(5),
        Some(&Value::bytes(5u128.to_le_bytes().to_vec())),
        &proof
    )
    .is_err());
    assert!(verify_proof(root, &key(5), None, &proof).is_err());
    assert!(verify_proof(root, &key(6), v.as_ref(), &proof).is_err());
    let mut bad_root = root;
    bad_root[0] ^= 1;
    assert!(verify_proof(bad_root, &key(5), v.as_ref(), &proof).is_err());

    // A key that never existed.
    let (v, proof) = store.get_with_proof(&key(1000), 2).expect("proof");
    assert_eq!(v, None);
    verify_proof(root, &key(1000), None, &proof).expect("verifies");
    assert!(verify_proof(root, &key(1000), Some(&Value::Num(0)), &proof).is_err());

    // Heights not committed.
    assert!(matches!(
        store.get_with_proof(&key(1), 3),
        Err(StoreError::UnknownHeight(3))
    ));
}

#[test]
fn proofs_round_trip_through_borsh_and_json() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    let b = commit_next(
        &store,
        &writes(&[(1, Some(Value::Num(1))), (2, Some(Value::Num(2)))]),
        vec![],
    );
    let (v, proof) = store.get_with_proof(&key(1), 0).expect("proof");
    let bytes = proof.to_bytes();
    let back = Proof::from_bytes(&bytes).expect("decode");
    assert_eq!(back, proof);
    verify_proof(b.header.state_root, &key(1), v.as_ref(), &back).expect("verifies");
    let json = serde_json::to_string(&proof).expect("json");
    assert_eq!(json, format!("\"{}\"", hex::encode(&bytes)));
    assert_eq!(
        serde_json::from_str::<Proof>(&json).expect("json back"),
        proof
    );
    // Hostile encodings are errors, never panics.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(Proof::from_bytes(&trailing).is_err());
    for len in 0..bytes.len() {
        assert!(Proof::from_bytes(&bytes[..len]).is_err(), "prefix of {len}");
    }
    assert!(Proof::from_bytes(&[1, 0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    assert!(serde_json::from_str::<Proof>("\"zz\"").is_err());
}

#[test]
fn proof_of_an_empty_tree() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    assert!(matches!(
        store.get_with_proof(&key(1), 0),
        Err(StoreError::UnknownHeight(0))
    ));
    let b = commit_next(&store, &writes(&[]), vec![]);
    let (v, proof) = store.get_with_proof(&key(1), 0).expect("proof");
    assert_eq!(v, None);
    verify_proof(b.header.state_root, &key(1), None, &proof).expect("verifies");
    assert!(verify_proof(b.header.state_root, &key(1), Some(&Value::Num(0)), &proof).is_err());
}
