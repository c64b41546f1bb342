//! The embedded chain's on-disk journal: an append-only file of checksummed records, replayed
//! in order at open.
//!
//! Format of `<dir>/chain.journal`: the 8-byte magic `PBRTJRN1`, then records
//! `kind: u8 | len: u32 LE | payload: len bytes | check: 4 bytes`, where `check` is the first four
//! bytes of SHA-256d(kind ‖ len ‖ payload). Kinds: 1 = a block connected on the tip (consensus
//! encoding), 2 = rewind to a height (u32 LE), 3 = a transaction admitted to the mempool
//! (consensus encoding), 4 = a mempool transaction evicted with its descendants (txid).
//!
//! Invariants:
//! - Records are written before the change they describe is applied in memory, and flushed
//!   (`sync_data`) before the call that made them returns, so a restart reproduces every change
//!   a caller was told about.
//! - Reading stops at the first incomplete, unreadable or failing record; the file is then
//!   truncated there with a warning (a torn write from a crash), never a panic.
//! - A file that does not start with the magic is refused, not overwritten.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{Block, Transaction, Txid};

/// File name inside the chain's directory.
pub const JOURNAL_FILE: &str = "chain.journal";
const MAGIC: &[u8; 8] = b"PBRTJRN1";
/// Largest record payload accepted (a block is at most 4 MB serialized).
const MAX_PAYLOAD: u32 = 8 * 1024 * 1024;

/// One journal entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A block connected on the tip.
    Block(Block),
    /// Blocks above this height disconnected.
    Rewind(u32),
    /// A transaction admitted to the mempool.
    Tx(Transaction),
    /// A mempool transaction evicted with its descendants.
    Evict(Txid),
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Block(_) => 1,
            Record::Rewind(_) => 2,
            Record::Tx(_) => 3,
            Record::Evict(_) => 4,
        }
    }

    fn payload(&self) -> Vec<u8> {
        match self {
            Record::Block(b) => serialize(b),
            Record::Rewind(h) => h.to_le_bytes().to_vec(),
            Record::Tx(t) => serialize(t),
            Record::Evict(id) => id.to_byte_array().to_vec(),
        }
    }

    fn decode(kind: u8, payload: &[u8]) -> Option<Record> {
        match kind {
            1 => deserialize(payload).ok().map(Record::Block),
            2 => Some(Record::Rewind(u32::from_le_bytes(payload.try_into().ok()?))),
            3 => deserialize(payload).ok().map(Record::Tx),
            4 => Some(Record::Evict(Txid::from_byte_array(
                payload.try_into().ok()?,
            ))),
            _ => None,
        }
    }

    /// The record's bytes as written.
    pub fn encode(&self) -> Vec<u8> {
        let payload = self.payload();
        let mut out = Vec::with_capacity(payload.len() + 9);
        out.push(self.kind());
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&payload);
        let check = sha256d::Hash::hash(&out);
        out.extend_from_slice(&check.as_byte_array()[..4]);
        out
    }
}

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// An I/O error on the journal file.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a Parabit regtest journal.
    #[error("journal {0}: not a Parabit regtest journal (bad magic)")]
    BadMagic(PathBuf),
}

/// The open journal, positioned at its end.
pub struct Journal {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` and reads its records. `accept` is called
    /// on each in order and returns whether it applied; the first record it refuses, and any torn
    /// or corrupt tail, is cut off with a warning.
    pub fn open(
        dir: &Path,
        mut accept: impl FnMut(Record) -> bool,
    ) -> Result<Journal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let io = |source| JournalError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let file_len = file.metadata().map_err(io)?.len();
        if file_len < MAGIC.len() as u64 {
            // Empty, or a crash while writing the magic: start afresh.
            file.set_len(0).map_err(io)?;
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            file.write_all(MAGIC).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Journal {
                path,
                file,
                len: MAGIC.len() as u64,
            });
        }
        let mut reader = BufReader::new(&mut file);
        let mut magic = [0u8; 8];
        reader.read_exact(&mut magic).map_err(io)?;
        if &magic != MAGIC {
            return Err(JournalError::BadMagic(path));
        }
        let mut good = MAGIC.len() as u64;
        let mut reason = None;
        loop {
            if good == file_len {
                break;
            }
            match read_record(&mut reader) {
                Ok((record, size)) => {
                    if !accept(record) {
                        reason = Some("a record the chain refused".to_string());
                        break;
                    }
                    good += size;
                }
                Err(why) => {
                    reason = Some(why);
                    break;
                }
            }
        }
        drop(reader);
        if let Some(why) = reason {
            tracing::warn!(
                path = %path.display(),
                offset = good,
                dropped_bytes = file_len - good,
                "regtest journal: truncating at {why}"
            );
            file.set_len(good).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::Start(good)).map_err(io)?;
        Ok(Journal {
            path,
            file,
            len: good,
        })
    }

    /// Appends records (not yet durable; see [`Self::sync`]).
    pub fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let bytes = record.encode();
        if let Err(source) = self.file.write_all(&bytes) {
            // Leave no partial record behind if possible.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(JournalError::Io {
                path: self.path.clone(),
                source,
            });
        }
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Bytes in the file.
    #[cfg(test)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the journal holds no records.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len == MAGIC.len() as u64
    }
}

/// Reads one record; `Err` says why the tail is unusable.
fn read_record(r: &mut impl Read) -> Result<(Record, u64), String> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head)
        .map_err(|_| "a torn record header".to_string())?;
    let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    if len > MAX_PAYLOAD {
        return Err(format!("a record length of {len} bytes"));
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)
        .map_err(|_| "a torn record".to_string())?;
    let mut check = [0u8; 4];
    r.read_exact(&mut check)
        .map_err(|_| "a torn record checksum".to_string())?;
    let mut hashed = Vec::with_capacity(payload.len() + 5);
    hashed.extend_from_slice(&head);
    hashed.extend_from_slice(&payload);
    if sha256d::Hash::hash(&hashed).as_byte_array()[..4] != check {
        return Err("a checksum mismatch".to_string());
    }
    let record = Record::decode(head[0], &payload)
        .ok_or_else(|| format!("an undecodable record of kind {}", head[0]))?;
    Ok((record, 9 + u64::from(len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reopen(dir: &Path) -> (Journal, Vec<Record>) {
        let mut seen = Vec::new();
        let j = Journal::open(dir, |r| {
            seen.push(r);
            true
        })
        .unwrap();
        (j, seen)
    }

    #[test]
    fn records_round_trip_and_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, seen) = reopen(dir.path());
        assert!(seen.is_empty());
        assert!(j.is_empty());
        let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
        let records = vec![
            Record::Block(genesis.clone()),
            Record::Rewind(7),
            Record::Tx(genesis.txdata[0].clone()),
            Record::Evict(genesis.txdata[0].compute_txid()),
        ];
        for r in &records {
            j.append(r).unwrap();
        }
        j.sync().unwrap();
        let full = j.len();
        drop(j);
        let (j, seen) = reopen(dir.path());
        assert_eq!(seen, records);
        assert_eq!(j.len(), full);
        drop(j);
        // Tear the last record: it is dropped, the rest survive, and the file is cut.
        let path = dir.path().join(JOURNAL_FILE);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 3).unwrap();
        drop(f);
        let (j, seen) = reopen(dir.path());
        assert_eq!(seen, records[..3].to_vec());
        let cut = j.len();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cut);
        assert_eq!(
            cut,
            full - Record::Evict(genesis.txdata[0].compute_txid())
                .encode()
                .len() as u64
        );
    }

    #[test]
    fn corrupt_byte_and_refused_record_truncate_there() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = reopen(dir.path());
        j.append(&Record::Rewind(1)).unwrap();
        j.append(&Record::Rewind(2)).unwrap();
        j.append(&Record::Rewind(3)).unwrap();
        j.sync().unwrap();
        drop(j);
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a payload byte of the second record (8 magic + 13 first record + 5 header).
        bytes[8 + 13 + 5] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (j, seen) = reopen(dir.path());
        assert_eq!(seen, vec![Record::Rewind(1)]);
        assert_eq!(j.len(), 8 + 13);
        drop(j);
        // A record the chain refuses is also cut, with what follows.
        let (mut j, _) = reopen(dir.path());
        j.append(&Record::Rewind(5)).unwrap();
        j.sync().unwrap();
        drop(j);
        let j = Journal::open(dir.path(), |r| r != Record::Rewind(5)).unwrap();
        assert_eq!(j.len(), 8 + 13);
    }

    #[test]
    fn foreign_file_is_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        std::fs::write(&path, b"not a journal at all").unwrap();
        assert!(matches!(
            Journal::open(dir.path(), |_| true),
            Err(JournalError::BadMagic(_))
        ));
        assert_eq!(std::fs::read(&path).unwrap(), b"not a journal at all");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]
        /// Any bytes after the magic: opening never panics, keeps a prefix of whole records,
        /// and a second open reads exactly the same records.
        #[test]
        fn arbitrary_tails_never_panic(tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(JOURNAL_FILE);
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&Record::Rewind(9).encode());
            bytes.extend_from_slice(&tail);
            std::fs::write(&path, &bytes).unwrap();
            let (j, first) = reopen(dir.path());
            proptest::prop_assert!(j.len() <= bytes.len() as u64);
            proptest::prop_assert_eq!(first.first(), Some(&Record::Rewind(9)));
            drop(j);
            let (_, second) = reopen(dir.path());
            proptest::prop_assert_eq!(first, second);
        }
    }

    #[test]
    fn huge_length_is_corruption_not_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[1, 0xff, 0xff, 0xff, 0xff, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        let (j, seen) = reopen(dir.path());
        assert!(seen.is_empty());
        assert_eq!(j.len(), 8);
    }
}
