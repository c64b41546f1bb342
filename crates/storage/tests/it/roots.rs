//! State roots: equal to a tree built from scratch, sensitive to the state, independent of the
//! order of writes and of the history that reached a state.

use parabit_exec::{KeyMap, Value, WriteSet};
use parabit_storage::{fresh_state_root, StoreConfig, EMPTY_ROOT};

use crate::{apply, commit_next, key, temp_store, tx, writes};

#[test]
fn roots_equal_fresh_tree_roots_and_change_with_state() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    let mut model = KeyMap::default();
    let genesis = writes(&[
        (1, Some(Value::Num(100))),
        (2, Some(Value::bytes(vec![1, 2]))),
    ]);
    apply(&mut model, &genesis);
    let b0 = commit_next(&store, &genesis, vec![]);
    assert_eq!(
        b0.header.state_root,
        fresh_state_root(&model).expect("root")
    );
    assert_ne!(b0.header.state_root, EMPTY_ROOT);

    let mut roots = vec![b0.header.state_root];
    let steps = [
        writes(&[(1, Some(Value::Num(99))), (3, Some(Value::Num(1)))]),
        writes(&[(2, None)]),
        writes(&[(1, Some(Value::Num(99)))]), // same value again: same root
        writes(&[(3, None), (1, None)]),
        writes(&[]), // empty block: same root
    ];
    for ws in &steps {
        apply(&mut model, ws);
        let b = commit_next(&store, ws, vec![tx(1, b0.header.height, 0)]);
        assert_eq!(b.header.state_root, fresh_state_root(&model).expect("root"));
        roots.push(b.header.state_root);
    }
    assert_ne!(roots[0], roots[1], "a changed value changes the root");
    assert_ne!(roots[1], roots[2], "a deletion changes the root");
    assert_eq!(
        roots[2], roots[3],
        "rewriting the same value keeps the root"
    );
    assert_ne!(roots[3], roots[4]);
    assert_eq!(roots[4], roots[5], "an empty block keeps the root");
    assert_eq!(store.load_state().expect("state"), model);
}

#[test]
fn empty_state_has_the_empty_root() {
    let (_dir, _path, store) = temp_store(StoreConfig::default());
    let b = commit_next(&store, &WriteSet::default(), vec![]);
    assert_eq!(b.header.state_root, EMPTY_ROOT);
    assert_eq!(
        fresh_state_root(&KeyMap::default()).expect("root"),
        EMPTY_ROOT
    );
    // Deleting keys that never existed changes nothing.
    let b = commit_next(&store, &writes(&[(5, None), (6, None)]), vec![]);
    assert_eq!(b.header.state_root, EMPTY_ROOT);
    let b = commit_next(
        &store,
        &writes(&[(5, Some(Value::Num(1))), (7, None)]),
        vec![],
    );
    assert_ne!(b.header.state_root, EMPTY_ROOT);
    let b = commit_next(&store, &writes(&[(5, None)]), vec![]);
    assert_eq!(b.header.state_root, EMPTY_ROOT);
}

#[test]
fn roots_do_not_depend_on_write_order_or_history() {
    let entries: Vec<(u32, Option<Value>)> = (0..50)
        .map(|i| (i, Some(Value::Num(u128::from(i) * 7))))
        .collect();
    let (_d1, _p1, a) = temp_store(StoreConfig::default());
    let (_d2, _p2, b) = temp_store(StoreConfig::default());
    let mut reversed = entries.clone();
    reversed.reverse();
    let ra = a
        .prepare(0, &writes(&entries))
        .expect("prepare")
        .state_root();
    let rb = b
        .prepare(0, &writes(&reversed))
        .expect("prepare")
        .state_root();
    assert_eq!(ra, rb);

    // Duplicate entries: the last one counts, as when applying the write set.
    let dup = writes(&[(1, Some(Value::Num(1))), (1, Some(Value::Num(2)))]);
    let single = writes(&[(1, Some(Value::Num(2)))]);
    assert_eq!(
        a.prepare(0, &dup).expect("prepare").state_root(),
        a.prepare(0, &single).expect("prepare").state_root()
    );

    // Store a reaches the state in one block; store b in three, through other values and a
    // key that is created and deleted again.
    commit_next(&a, &writes(&entries), vec![]);
    let (first, second) = entries.split_at(20);
    let mut detour: Vec<(u32, Option<Value>)> = second
        .iter()
        .map(|(k, _)| (*k, Some(Value::bytes(vec![9]))))
        .collect();
    detour.push((999, Some(Value::Num(5))));
    commit_next(&b, &writes(first), vec![]);
    commit_next(&b, &writes(&detour), vec![]);
    let mut finish = second.to_vec();
    finish.push((999, None));
    commit_next(&b, &writes(&finish), vec![]);
    let root_a = a.latest().expect("a").state_root;
    let root_b = b.latest().expect("b").state_root;
    assert_eq!(root_a, root_b);
    assert_eq!(a.load_state().expect("a"), b.load_state().expect("b"));
    assert_eq!(a.get(&key(3)).expect("get"), Some(Value::Num(21)));
    assert_eq!(b.get(&key(999)).expect("get"), None);
}
