//! A minimal transfer VM shaped like the bank's (nonce check, fee debit, transfer, fee credit)
//! so the engine can be measured without signatures or module code.

use parabit_exec::{key_map_with_capacity, Key, KeyMap, StateResult, StateView, Value, Vm};
use rand::{Rng, SeedableRng};

pub struct Transfer {
    pub from: u32,
    pub to: u32,
    pub nonce: u64,
    pub amount: u128,
}

pub struct TransferVm;

pub fn balance(account: u32) -> Key {
    let mut k = [0u8; 41];
    k[0] = 1;
    k[1..5].copy_from_slice(&account.to_le_bytes());
    Key::from_array(k)
}

pub fn nonce(account: u32) -> Key {
    let mut k = [0u8; 33];
    k[0] = 2;
    k[1..5].copy_from_slice(&account.to_le_bytes());
    Key::from_array(k)
}

const FEE: u128 = 1;

impl Vm for TransferVm {
    type Txn = Transfer;
    type Output = bool;

    fn execute<V: StateView>(&self, t: &Transfer, view: &mut V) -> StateResult<bool> {
        let nk = nonce(t.from);
        let n = view.read(&nk)?.map_or(0, |v| v.as_num());
        if n != t.nonce as u128 {
            return Ok(false);
        }
        if !view.try_sub(balance(t.from), FEE)? {
            return Ok(false);
        }
        view.write(nk, Some(Value::Num(n + 1)));
        view.add(balance(u32::MAX), FEE);
        let cp = view.checkpoint();
        if view.try_sub(balance(t.from), t.amount)? {
            view.add(balance(t.to), t.amount);
            Ok(true)
        } else {
            view.rollback(cp);
            Ok(false)
        }
    }

    fn panic_output(&self, _: &Transfer, _: &str) -> bool {
        false
    }
}

/// `accounts` funded accounts and `txs` transfers; `hot` sends everything to account 0,
/// `serial` sends everything from account 0.
pub fn workload(
    accounts: u32,
    txs: usize,
    hot: bool,
    serial: bool,
) -> (KeyMap<Value>, Vec<Transfer>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut state = key_map_with_capacity(accounts as usize * 2);
    for a in 0..accounts {
        state.insert(balance(a), Value::Num(1_000_000_000));
        state.insert(nonce(a), Value::Num(0));
    }
    let mut nonces = vec![0u64; accounts as usize];
    let txns = (0..txs)
        .map(|_| {
            let from = if serial {
                0
            } else {
                rng.gen_range(0..accounts)
            };
            let to = if hot { 0 } else { rng.gen_range(0..accounts) };
            let n = nonces[from as usize];
            nonces[from as usize] += 1;
            Transfer {
                from,
                to,
                nonce: n,
                amount: rng.gen_range(1..1000),
            }
        })
        .collect();
    (state, txns)
}
