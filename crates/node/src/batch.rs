//! The batch: a run of consecutive L2 blocks as written to Bitcoin, its compact encoding,
//! and its split into envelope-sized chunks (`DESIGN.md`, "Batch envelope").
//!
//! Format version [`BATCH_VERSION`] (2; version 1, one envelope of zstd(borsh(batch)), is
//! no longer read):
//! - The batch's **data** is zstd([`Batch::encode`]'s compact encoding). The compact encoding
//!   omits what every node knows and writes integers as LEB128 varints:
//!   `varint index, prev_hash[32], varint first_height, state_root[32], varint #blocks`, then
//!   per block its header (`varint height, parent_hash[32], varint timestamp_ms, tx_root[32],
//!   state_root[32], varint bitcoin_height, varint fees, varint tx_count`) and `varint #txs`,
//!   then per transaction: a tag byte (kind in the low 7 bits: 0 any call, 1 bank transfer;
//!   bit 7: the chain id follows as a varint, else it is the genesis chain id), the sender as
//!   an address reference, `varint nonce, varint fee`, the call (kind 1: `to` as an address
//!   reference, `varint asset, varint amount`; kind 0: borsh(call)), and the 64-byte signature.
//! - An **address reference** is a varint `r`: `r = 0` is followed by the 32-byte address,
//!   which is appended to the dictionary; `r ≥ 1` names dictionary entry `r − 1`. The
//!   dictionary starts as the genesis spec's funded accounts (`balances`, in order, each once;
//!   [`BatchCodec::from_genesis`]) and grows with the addresses the batch writes in full.
//! - The data is published in **chunks** of at most [`MAX_CHUNK_BYTES`], one per envelope of
//!   version [`BATCH_VERSION`]: envelope data = borsh([`ChunkHeader`]) (48 bytes: batch index,
//!   SHA-256 of the whole data, chunk number, chunk count) followed by the chunk's bytes. The
//!   batch is the concatenation of chunks `0..count` in chunk order, once all are present.
//!
//! Invariants:
//! - Decoding rebuilds exactly the encoded batch: the same blocks, the same
//!   `SignedTransaction`s (same borsh, same ids, signatures still verify), hence the same
//!   [`Batch::hash`] (property-tested over every call kind).
//! - A batch's blocks are consecutive: `blocks[0].height == first_height`, each block's parent
//!   hash is the previous block's hash, and `state_root` is the last block's state root.
//! - Batches chain: `prev_hash` is the previous batch's [`Batch::hash`] (zeros for batch 0), and
//!   each batch starts at the height after the previous one's last.
//! - Decoding never panics and never allocates more than [`MAX_BATCH_BYTES`] of decompressed
//!   data: a zstd bomb, damaged bytes, inconsistent chunks or a malformed batch is a
//!   [`BatchError`], and a follower skips it with the reason.

use std::collections::HashMap;
use std::io::Read;

use borsh::{BorshDeserialize, BorshSerialize};
use parabit_bitcoin::envelope::MAX_ENVELOPE_DATA;
use parabit_modules::{BankMsg, Call, GenesisSpec};
use parabit_primitives::{Address, AssetId, Block, BlockHeader, SignedTransaction, Transaction};
use sha2::{Digest, Sha256};

/// The envelope version of batch chunks.
pub const BATCH_VERSION: u8 = 2;
/// The largest decompressed batch accepted.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// zstd level used by the batcher.
pub const ZSTD_LEVEL: i32 = 15;
/// Bytes of a borsh-encoded [`ChunkHeader`].
pub const CHUNK_HEADER_BYTES: usize = 48;
/// Most batch data one chunk (one envelope) carries.
pub const MAX_CHUNK_BYTES: usize = MAX_ENVELOPE_DATA - CHUNK_HEADER_BYTES;
/// Most chunks one batch may have.
pub const MAX_CHUNKS: u32 = 256;

/// Transaction kinds of the compact encoding (low 7 bits of the tag byte).
const KIND_ANY: u8 = 0;
const KIND_TRANSFER: u8 = 1;
/// Tag bit: the chain id is written (it is not the genesis chain id).
const EXPLICIT_CHAIN: u8 = 0x80;

/// A run of consecutive L2 blocks and the state root after them.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Batch {
    /// Its position in the chain of batches, from 0.
    pub index: u64,
    /// The previous batch's hash; zeros for batch 0.
    pub prev_hash: [u8; 32],
    /// The first block's height.
    pub first_height: u64,
    /// The blocks, in order.
    pub blocks: Vec<Block<Call>>,
    /// The state root after the last block.
    pub state_root: [u8; 32],
}

/// Why a batch cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The envelope carries another version.
    #[error("unsupported batch version {0}")]
    Version(u8),
    /// The data is not zstd, or decompresses past the limit.
    #[error("batch data does not decompress: {0}")]
    Compression(String),
    /// The decompressed data is not a batch.
    #[error("batch does not decode: {0}")]
    Decode(String),
    /// The batch breaks one of the invariants above.
    #[error("inconsistent batch: {0}")]
    Inconsistent(String),
    /// A chunk, or a set of chunks, is malformed or does not fit together.
    #[error("bad chunk: {0}")]
    Chunk(String),
}

/// What the compact encoding leaves out because every node knows it: the genesis chain id and
/// the dictionary of genesis accounts. Build it once per chain (it indexes every account).
#[derive(Clone, Debug)]
pub struct BatchCodec {
    chain_id: u64,
    dict: Vec<Address>,
    index: HashMap<Address, u32>,
}

impl BatchCodec {
    /// A codec for `chain_id` whose dictionary starts with `accounts` (each once, first
    /// occurrence kept).
    pub fn new(chain_id: u64, accounts: impl IntoIterator<Item = Address>) -> BatchCodec {
        let mut dict = Vec::new();
        let mut index = HashMap::new();
        for a in accounts {
            if let Ok(i) = u32::try_from(dict.len()) {
                if let std::collections::hash_map::Entry::Vacant(e) = index.entry(a) {
                    e.insert(i);
                    dict.push(a);
                }
            }
        }
        BatchCodec {
            chain_id,
            dict,
            index,
        }
    }

    /// The codec of a chain: its chain id and its funded accounts in genesis order.
    pub fn from_genesis(spec: &GenesisSpec) -> BatchCodec {
        BatchCodec::new(spec.chain_id, spec.balances.iter().map(|b| b.address))
    }

    /// The chain id left out of transactions.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Accounts in the genesis dictionary.
    pub fn dictionary_len(&self) -> usize {
        self.dict.len()
    }
}

/// SHA-256 of `data` (a chunk header's `data_hash`).
pub fn data_hash(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn put_varint(out: &mut Vec<u8>, mut v: u128) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Writes addresses as references into the codec's dictionary plus the batch's own.
struct AddrWriter<'a> {
    codec: &'a BatchCodec,
    seen: HashMap<Address, u64>,
}

impl AddrWriter<'_> {
    fn put(&mut self, out: &mut Vec<u8>, a: &Address) {
        if let Some(i) = self.codec.index.get(a) {
            put_varint(out, u128::from(*i) + 1);
        } else if let Some(i) = self.seen.get(a) {
            put_varint(out, u128::from(*i) + 1);
        } else {
            out.push(0);
            out.extend_from_slice(a.as_bytes());
            let next = (self.codec.dict.len() + self.seen.len()) as u64;
            self.seen.insert(*a, next);
        }
    }
}

/// A cursor over compact-encoded bytes; every read is checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn err(what: &str) -> BatchError {
        BatchError::Decode(format!("truncated or malformed {what}"))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], BatchError> {
        if self.buf.len() < n {
            return Err(Self::err(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, BatchError> {
        Ok(self.bytes(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], BatchError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N, what)?);
        Ok(a)
    }

    /// A canonical LEB128 varint of at most `bits` (≤ 128) bits.
    fn varint(&mut self, bits: u32, what: &str) -> Result<u128, BatchError> {
        let overflow = || BatchError::Decode(format!("{what} overflows {bits} bits"));
        let mut v: u128 = 0;
        let mut shift = 0u32;
        loop {
            let b = self.u8(what)?;
            let part = u128::from(b & 0x7f);
            let room = bits
                .checked_sub(shift)
                .filter(|r| *r > 0)
                .ok_or_else(overflow)?;
            if room < 7 && part >> room != 0 {
                return Err(overflow());
            }
            v |= part << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(BatchError::Decode(format!("{what}: non-canonical varint")));
                }
                return Ok(v);
            }
            shift += 7;
        }
    }

    fn u64(&mut self, what: &str) -> Result<u64, BatchError> {
        u64::try_from(self.varint(64, what)?)
            .map_err(|_| BatchError::Decode(format!("{what} overflows 64 bits")))
    }

    fn u128(&mut self, what: &str) -> Result<u128, BatchError> {
        self.varint(128, what)
    }

    /// A count, bounded by the bytes left (each item takes at least `min_item` bytes).
    fn count(&mut self, min_item: usize, what: &str) -> Result<usize, BatchError> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| Self::err(what))?;
        if n.saturating_mul(min_item.max(1)) > self.buf.len() {
            return Err(BatchError::Decode(format!(
                "{what} of {n} exceeds the data left"
            )));
        }
        Ok(n)
    }
}

/// Reads address references (see the module doc).
struct AddrReader<'a> {
    codec: &'a BatchCodec,
    seen: Vec<Address>,
}

impl AddrReader<'_> {
    fn get(&mut self, r: &mut Reader<'_>, what: &str) -> Result<Address, BatchError> {
        let v = r.u64(what)?;
        if v == 0 {
            let a = Address(r.array::<32>(what)?);
            self.seen.push(a);
            return Ok(a);
        }
        let i = usize::try_from(v - 1).map_err(|_| Reader::err(what))?;
        let genesis = self.codec.dict.len();
        let found = if i < genesis {
            self.codec.dict.get(i)
        } else {
            self.seen.get(i - genesis)
        };
        found.copied().ok_or_else(|| {
            BatchError::Decode(format!(
                "{what}: address reference {i} past the dictionary ({} entries)",
                genesis + self.seen.len()
            ))
        })
    }
}

fn put_header(out: &mut Vec<u8>, h: &BlockHeader) {
    put_varint(out, u128::from(h.height));
    out.extend_from_slice(&h.parent_hash);
    put_varint(out, u128::from(h.timestamp_ms));
    out.extend_from_slice(&h.tx_root);
    out.extend_from_slice(&h.state_root);
    put_varint(out, u128::from(h.bitcoin_height));
    put_varint(out, h.fees);
    put_varint(out, u128::from(h.tx_count));
}

fn get_header(r: &mut Reader<'_>) -> Result<BlockHeader, BatchError> {
    Ok(BlockHeader {
        height: r.u64("block height")?,
        parent_hash: r.array("parent hash")?,
        timestamp_ms: r.u64("timestamp")?,
        tx_root: r.array("tx root")?,
        state_root: r.array("state root")?,
        bitcoin_height: r.u64("bitcoin height")?,
        fees: r.u128("fees")?,
        tx_count: u32::try_from(r.u64("tx count")?)
            .map_err(|_| BatchError::Decode("tx count overflows 32 bits".into()))?,
    })
}

fn put_tx(
    out: &mut Vec<u8>,
    addrs: &mut AddrWriter<'_>,
    t: &SignedTransaction<Call>,
) -> Result<(), BatchError> {
    let tx = &t.tx;
    let transfer = match &tx.call {
        Call::Bank(BankMsg::Transfer { to, asset, amount }) => Some((to, asset, amount)),
        _ => None,
    };
    let mut tag = if transfer.is_some() {
        KIND_TRANSFER
    } else {
        KIND_ANY
    };
    if tx.chain_id != addrs.codec.chain_id {
        tag |= EXPLICIT_CHAIN;
    }
    out.push(tag);
    if tag & EXPLICIT_CHAIN != 0 {
        put_varint(out, u128::from(tx.chain_id));
    }
    addrs.put(out, &tx.sender);
    put_varint(out, u128::from(tx.nonce));
    put_varint(out, tx.fee);
    match transfer {
        Some((to, asset, amount)) => {
            addrs.put(out, to);
            put_varint(out, u128::from(asset.0));
            put_varint(out, *amount);
        }
        None => tx
            .call
            .serialize(out)
            .map_err(|e| BatchError::Decode(e.to_string()))?,
    }
    out.extend_from_slice(&t.signature);
    Ok(())
}

fn get_tx(
    r: &mut Reader<'_>,
    addrs: &mut AddrReader<'_>,
) -> Result<SignedTransaction<Call>, BatchError> {
    let tag = r.u8("transaction tag")?;
    let chain_id = if tag & EXPLICIT_CHAIN != 0 {
        r.u64("chain id")?
    } else {
        addrs.codec.chain_id
    };
    let sender = addrs.get(r, "sender")?;
    let nonce = r.u64("nonce")?;
    let fee = r.u128("fee")?;
    let call = match tag & !EXPLICIT_CHAIN {
        KIND_TRANSFER => {
            let to = addrs.get(r, "recipient")?;
            let asset = AssetId(r.u64("asset")?);
            let amount = r.u128("amount")?;
            Call::Bank(BankMsg::Transfer { to, asset, amount })
        }
        KIND_ANY => {
            let mut rest = r.buf;
            let call = Call::deserialize(&mut rest)
                .map_err(|e| BatchError::Decode(format!("call: {e}")))?;
            r.buf = rest;
            call
        }
        k => return Err(BatchError::Decode(format!("unknown transaction kind {k}"))),
    };
    let signature = r.array::<64>("signature")?;
    Ok(SignedTransaction {
        tx: Transaction {
            chain_id,
            sender,
            nonce,
            fee,
            call,
        },
        signature,
    })
}

impl Batch {
    /// SHA-256 of the borsh encoding.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(borsh::to_vec(self).unwrap_or_default()).into()
    }

    /// The last block's height (`first_height - 1` for an empty batch).
    pub fn last_height(&self) -> u64 {
        (self.first_height + self.blocks.len() as u64).saturating_sub(1)
    }

    /// Transactions in all the blocks.
    pub fn tx_count(&self) -> usize {
        self.blocks.iter().map(|b| b.txs.len()).sum()
    }

    /// The compact encoding (before compression; see the module doc).
    pub fn to_compact(&self, codec: &BatchCodec) -> Result<Vec<u8>, BatchError> {
        let mut out = Vec::with_capacity(128 + self.tx_count() * 96);
        let mut addrs = AddrWriter {
            codec,
            seen: HashMap::new(),
        };
        put_varint(&mut out, u128::from(self.index));
        out.extend_from_slice(&self.prev_hash);
        put_varint(&mut out, u128::from(self.first_height));
        out.extend_from_slice(&self.state_root);
        put_varint(&mut out, self.blocks.len() as u128);
        for b in &self.blocks {
            put_header(&mut out, &b.header);
            put_varint(&mut out, b.txs.len() as u128);
            for t in &b.txs {
                put_tx(&mut out, &mut addrs, t)?;
            }
        }
        Ok(out)
    }

    /// Reads a compact encoding (no consistency check; see [`Batch::check`]).
    pub fn from_compact(codec: &BatchCodec, raw: &[u8]) -> Result<Batch, BatchError> {
        let mut r = Reader { buf: raw };
        let mut addrs = AddrReader {
            codec,
            seen: Vec::new(),
        };
        let index = r.u64("batch index")?;
        let prev_hash = r.array("previous batch hash")?;
        let first_height = r.u64("first height")?;
        let state_root = r.array("state root")?;
        // A header takes at least 100 bytes, a transaction at least 68.
        let nblocks = r.count(100, "block count")?;
        let mut blocks = Vec::with_capacity(nblocks);
        for _ in 0..nblocks {
            let header = get_header(&mut r)?;
            let ntx = r.count(68, "transaction count")?;
            let mut txs = Vec::with_capacity(ntx);
            for _ in 0..ntx {
                txs.push(get_tx(&mut r, &mut addrs)?);
            }
            blocks.push(Block { header, txs });
        }
        if !r.buf.is_empty() {
            return Err(BatchError::Decode(format!(
                "{} trailing bytes after the batch",
                r.buf.len()
            )));
        }
        Ok(Batch {
            index,
            prev_hash,
            first_height,
            blocks,
            state_root,
        })
    }

    /// The batch data: zstd of the compact encoding.
    pub fn encode(&self, codec: &BatchCodec) -> Result<Vec<u8>, BatchError> {
        let raw = self.to_compact(codec)?;
        zstd::bulk::compress(&raw, ZSTD_LEVEL).map_err(|e| BatchError::Compression(e.to_string()))
    }

    /// Reads batch data (the chunks put together), checking the batch's internal consistency.
    pub fn decode(codec: &BatchCodec, data: &[u8]) -> Result<Batch, BatchError> {
        let decoder = zstd::stream::read::Decoder::new(data)
            .map_err(|e| BatchError::Compression(e.to_string()))?;
        let mut raw = Vec::new();
        decoder
            .take(MAX_BATCH_BYTES as u64 + 1)
            .read_to_end(&mut raw)
            .map_err(|e| BatchError::Compression(e.to_string()))?;
        if raw.len() > MAX_BATCH_BYTES {
            return Err(BatchError::Compression(format!(
                "more than {MAX_BATCH_BYTES} bytes"
            )));
        }
        let batch = Batch::from_compact(codec, &raw)?;
        batch.check()?;
        Ok(batch)
    }

    /// Encodes and splits into chunks of at most `max_chunk_bytes` (clamped to
    /// `1..=MAX_CHUNK_BYTES`). Returns the whole data too.
    pub fn to_chunks(
        &self,
        codec: &BatchCodec,
        max_chunk_bytes: usize,
    ) -> Result<(Vec<u8>, Vec<Chunk>), BatchError> {
        let data = self.encode(codec)?;
        let chunks = split_chunks(self.index, &data, max_chunk_bytes)?;
        Ok((data, chunks))
    }

    /// Puts `chunks` (any order) together and decodes them; the batch's index must be the
    /// chunks'.
    pub fn from_chunks(codec: &BatchCodec, chunks: &[Chunk]) -> Result<Batch, BatchError> {
        let data = assemble_chunks(chunks)?;
        let batch = Batch::decode(codec, &data)?;
        if let Some(c) = chunks.first() {
            if c.header.index != batch.index {
                return Err(BatchError::Inconsistent(format!(
                    "chunks say batch {} but the data holds batch {}",
                    c.header.index, batch.index
                )));
            }
        }
        Ok(batch)
    }

    /// The internal invariants: consecutive linked blocks, the root of the last one.
    pub fn check(&self) -> Result<(), BatchError> {
        let fail = |s: String| Err(BatchError::Inconsistent(s));
        let Some(last) = self.blocks.last() else {
            return fail("no blocks".into());
        };
        for (i, b) in self.blocks.iter().enumerate() {
            if b.header.height != self.first_height.wrapping_add(i as u64) {
                return fail(format!(
                    "block {i} has height {}, expected {}",
                    b.header.height,
                    self.first_height.wrapping_add(i as u64)
                ));
            }
            if i > 0
                && Some(b.header.parent_hash) != self.blocks.get(i - 1).map(|p| p.header.hash())
            {
                return fail(format!(
                    "block {} does not follow its predecessor",
                    b.header.height
                ));
            }
            if !b.txs_match_header() {
                return fail(format!(
                    "block {}'s transactions do not match its header",
                    b.header.height
                ));
            }
        }
        if last.header.state_root != self.state_root {
            return fail("state root is not the last block's".into());
        }
        Ok(())
    }
}

/// The label in front of each chunk's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct ChunkHeader {
    /// The batch's index.
    pub index: u64,
    /// SHA-256 of the batch's whole data (all chunks put together).
    pub data_hash: [u8; 32],
    /// This chunk's number, `0..count`.
    pub chunk: u32,
    /// How many chunks the batch has (1 to [`MAX_CHUNKS`]).
    pub count: u32,
}

/// One envelope's worth of a batch's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Which batch and which piece.
    pub header: ChunkHeader,
    /// The piece of the batch data.
    pub bytes: Vec<u8>,
}

impl Chunk {
    /// The envelope data: borsh(header) ‖ bytes.
    pub fn to_envelope_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHUNK_HEADER_BYTES + self.bytes.len());
        out.extend_from_slice(&self.header.index.to_le_bytes());
        out.extend_from_slice(&self.header.data_hash);
        out.extend_from_slice(&self.header.chunk.to_le_bytes());
        out.extend_from_slice(&self.header.count.to_le_bytes());
        out.extend_from_slice(&self.bytes);
        out
    }

    /// Reads envelope data of `version`: a well-formed header (chunk number below a count of
    /// 1 to [`MAX_CHUNKS`]) and 1 to [`MAX_CHUNK_BYTES`] bytes.
    pub fn from_envelope(version: u8, data: &[u8]) -> Result<Chunk, BatchError> {
        if version != BATCH_VERSION {
            return Err(BatchError::Version(version));
        }
        if data.len() < CHUNK_HEADER_BYTES {
            return Err(BatchError::Chunk(format!(
                "{} bytes, shorter than a chunk header",
                data.len()
            )));
        }
        let (head, bytes) = data.split_at(CHUNK_HEADER_BYTES);
        let header = ChunkHeader::try_from_slice(head)
            .map_err(|e| BatchError::Chunk(format!("header: {e}")))?;
        if header.count == 0 || header.count > MAX_CHUNKS {
            return Err(BatchError::Chunk(format!(
                "chunk count {} is not 1 to {MAX_CHUNKS}",
                header.count
            )));
        }
        if header.chunk >= header.count {
            return Err(BatchError::Chunk(format!(
                "chunk {} out of range (count {})",
                header.chunk, header.count
            )));
        }
        if bytes.is_empty() || bytes.len() > MAX_CHUNK_BYTES {
            return Err(BatchError::Chunk(format!(
                "{} bytes of data, not 1 to {MAX_CHUNK_BYTES}",
                bytes.len()
            )));
        }
        Ok(Chunk {
            header,
            bytes: bytes.to_vec(),
        })
    }
}

/// Splits batch `index`'s `data` into chunks of at most `max_bytes` (clamped to
/// `1..=MAX_CHUNK_BYTES`).
pub fn split_chunks(index: u64, data: &[u8], max_bytes: usize) -> Result<Vec<Chunk>, BatchError> {
    if data.is_empty() {
        return Err(BatchError::Chunk("no data".into()));
    }
    let size = max_bytes.clamp(1, MAX_CHUNK_BYTES);
    let count = data.len().div_ceil(size);
    let count = u32::try_from(count)
        .ok()
        .filter(|c| *c <= MAX_CHUNKS)
        .ok_or_else(|| {
            BatchError::Chunk(format!(
                "{} bytes need {count} chunks of {size}, over {MAX_CHUNKS}",
                data.len()
            ))
        })?;
    let hash = data_hash(data);
    Ok(data
        .chunks(size)
        .zip(0u32..)
        .map(|(bytes, chunk)| Chunk {
            header: ChunkHeader {
                index,
                data_hash: hash,
                chunk,
                count,
            },
            bytes: bytes.to_vec(),
        })
        .collect())
}

/// Puts a batch's chunks (any order) back together: they must share index, data hash and
/// count, hold every number `0..count` exactly once, and hash to the data hash.
pub fn assemble_chunks(chunks: &[Chunk]) -> Result<Vec<u8>, BatchError> {
    let Some(first) = chunks.first() else {
        return Err(BatchError::Chunk("no chunks".into()));
    };
    let h = first.header;
    if chunks.len() != h.count as usize {
        return Err(BatchError::Chunk(format!(
            "{} chunks for a count of {}",
            chunks.len(),
            h.count
        )));
    }
    let mut ordered: Vec<Option<&Chunk>> = vec![None; chunks.len()];
    for c in chunks {
        let o = c.header;
        if (o.index, o.data_hash, o.count) != (h.index, h.data_hash, h.count) {
            return Err(BatchError::Chunk(
                "chunks of different batches (index, data hash or count differ)".into(),
            ));
        }
        match ordered.get_mut(o.chunk as usize) {
            Some(slot @ None) => *slot = Some(c),
            Some(Some(_)) => return Err(BatchError::Chunk(format!("chunk {} twice", o.chunk))),
            None => {
                return Err(BatchError::Chunk(format!(
                    "chunk {} out of range (count {})",
                    o.chunk, o.count
                )))
            }
        }
    }
    let mut data = Vec::new();
    for c in ordered.into_iter().flatten() {
        data.extend_from_slice(&c.bytes);
    }
    if data_hash(&data) != h.data_hash {
        return Err(BatchError::Chunk(
            "the chunks put together do not hash to their data hash".into(),
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parabit_primitives::{tx_root, SigningKey};
    use proptest::prelude::*;

    fn key(i: u64) -> SigningKey {
        SigningKey::from_seed(&i.to_le_bytes())
    }

    fn codec() -> BatchCodec {
        BatchCodec::new(7, (0..8).map(|i| key(i).address()))
    }

    fn block(height: u64, parent: [u8; 32], txs: Vec<SignedTransaction<Call>>) -> Block<Call> {
        Block {
            header: BlockHeader {
                height,
                parent_hash: parent,
                timestamp_ms: 1_700_000_000_000 + height,
                tx_root: tx_root(&txs.iter().map(SignedTransaction::id).collect::<Vec<_>>()),
                state_root: [height as u8; 32],
                bitcoin_height: 100 + height,
                fees: u128::from(height) * 3,
                tx_count: txs.len() as u32,
            },
            txs,
        }
    }

    fn transfer(from: u64, nonce: u64, to: Address, amount: u128) -> SignedTransaction<Call> {
        key(from).sign(Transaction {
            chain_id: 7,
            sender: key(from).address(),
            nonce,
            fee: 10,
            call: Call::Bank(BankMsg::Transfer {
                to,
                asset: AssetId::BTC,
                amount,
            }),
        })
    }

    fn batch_of(blocks: Vec<Vec<SignedTransaction<Call>>>) -> Batch {
        let mut out: Vec<Block<Call>> = Vec::new();
        for txs in blocks {
            let parent = out.last().map_or([1; 32], |b| b.header.hash());
            out.push(block(5 + out.len() as u64, parent, txs));
        }
        Batch {
            index: 2,
            prev_hash: [9; 32],
            first_height: 5,
            state_root: out.last().map_or([0; 32], |b| b.header.state_root),
            blocks: out,
        }
    }

    fn batch() -> Batch {
        batch_of(vec![
            vec![
                transfer(0, 0, key(1).address(), 5),
                transfer(9, 3, key(10).address(), u128::MAX),
            ],
            vec![transfer(10, 0, key(9).address(), 1)],
        ])
    }

    #[test]
    fn round_trips_and_checks() {
        let c = codec();
        let b = batch();
        let data = b.encode(&c).expect("encode");
        assert_eq!(Batch::decode(&c, &data).expect("decode"), b);
        assert_eq!(b.last_height(), 6);
        assert!(matches!(
            Batch::decode(&c, b"not zstd"),
            Err(BatchError::Compression(_))
        ));
        let mut broken = batch();
        broken.blocks[1].header.parent_hash = [0; 32];
        let data = broken.encode(&c).expect("encode");
        assert!(matches!(
            Batch::decode(&c, &data),
            Err(BatchError::Inconsistent(_))
        ));
        let mut wrong_root = batch();
        wrong_root.state_root = [7; 32];
        assert!(wrong_root.check().is_err());
    }

    #[test]
    fn the_compact_form_leaves_out_what_nodes_know() {
        let c = codec();
        // Two genesis accounts: sender and recipient are 1-byte references; chain id left out.
        let known = batch_of(vec![vec![transfer(0, 1, key(1).address(), 1000)]]);
        let unknown = batch_of(vec![vec![transfer(20, 1, key(21).address(), 1000)]]);
        let k = known.to_compact(&c).expect("compact").len();
        let u = unknown.to_compact(&c).expect("compact").len();
        assert_eq!(u - k, 2 * 32, "two addresses written in full");
        // Batch: index 1 + 32 + 1 + 32 + block count 1; block: 1+32+6+32+32+1+1+1, tx count 1.
        let fixed = 67 + 107;
        // tag 1, sender 1, nonce 1, fee 1, to 1, asset 1, amount 2, signature 64.
        assert_eq!(k, fixed + 72);
        // An address seen earlier in the batch is a reference the second time.
        let twice = batch_of(vec![vec![
            transfer(20, 1, key(21).address(), 1000),
            transfer(20, 2, key(21).address(), 1000),
        ]]);
        let t = twice.to_compact(&c).expect("compact").len();
        assert_eq!(t - u, 72);
        // Another chain id is written out and comes back.
        let mut other = transfer(0, 1, key(1).address(), 1000);
        other.tx.chain_id = 99;
        let odd = batch_of(vec![vec![other.clone()]]);
        let back = Batch::from_compact(&c, &odd.to_compact(&c).expect("compact")).expect("back");
        assert_eq!(back.blocks[0].txs[0], other);
    }

    #[test]
    fn varints_are_canonical_and_bounded() {
        for v in [0u128, 1, 127, 128, 300, u64::MAX as u128, u128::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut r = Reader { buf: &out };
            assert_eq!(r.u128("v").expect("read"), v);
            assert!(r.buf.is_empty());
        }
        let mut r = Reader { buf: &[0x80, 0x00] };
        assert!(r.u128("v").is_err(), "non-canonical");
        let mut big = Vec::new();
        put_varint(&mut big, u128::from(u64::MAX) + 1);
        assert!(Reader { buf: &big }.u64("v").is_err(), "past 64 bits");
        assert!(
            Reader { buf: &[0xff; 30] }.u128("v").is_err(),
            "past 128 bits"
        );
        assert!(Reader { buf: &[0x80] }.u128("v").is_err(), "truncated");
    }

    #[test]
    fn chunks_split_and_assemble_in_any_order() {
        let c = codec();
        let b = batch();
        let (data, chunks) = b.to_chunks(&c, 50).expect("chunks");
        assert!(chunks.len() > 2);
        assert!(chunks.iter().all(|k| k.bytes.len() <= 50));
        let mut reversed = chunks.clone();
        reversed.reverse();
        assert_eq!(assemble_chunks(&reversed).expect("assemble"), data);
        assert_eq!(Batch::from_chunks(&c, &reversed).expect("batch"), b);
        // Envelope data round trip; the header is its borsh encoding.
        for k in &chunks {
            let env = k.to_envelope_data();
            assert_eq!(
                &env[..CHUNK_HEADER_BYTES],
                &borsh::to_vec(&k.header).unwrap()[..]
            );
            assert_eq!(
                &Chunk::from_envelope(BATCH_VERSION, &env).expect("chunk"),
                k
            );
        }
        assert!(matches!(
            Chunk::from_envelope(1, &chunks[0].to_envelope_data()),
            Err(BatchError::Version(1))
        ));
        // Missing, duplicated, foreign, out-of-range or altered chunks are refused.
        assert!(assemble_chunks(&chunks[1..]).is_err());
        let mut dup = chunks.clone();
        dup[1] = dup[0].clone();
        assert!(matches!(assemble_chunks(&dup), Err(BatchError::Chunk(m)) if m.contains("twice")));
        let mut foreign = chunks.clone();
        foreign[1].header.index = 3;
        assert!(assemble_chunks(&foreign).is_err());
        let mut altered = chunks.clone();
        altered[0].bytes[0] ^= 1;
        assert!(
            matches!(assemble_chunks(&altered), Err(BatchError::Chunk(m)) if m.contains("hash"))
        );
        let mut range = chunks[0].to_envelope_data();
        range[40..44].copy_from_slice(&99u32.to_le_bytes());
        assert!(Chunk::from_envelope(BATCH_VERSION, &range).is_err());
        let mut zero = chunks[0].to_envelope_data();
        zero[44..48].copy_from_slice(&0u32.to_le_bytes());
        assert!(Chunk::from_envelope(BATCH_VERSION, &zero).is_err());
        assert!(Chunk::from_envelope(BATCH_VERSION, &[0; CHUNK_HEADER_BYTES]).is_err());
        // A chunk set claiming another batch than its data is inconsistent.
        let relabeled: Vec<Chunk> = split_chunks(5, &data, 50).expect("split");
        assert!(matches!(
            Batch::from_chunks(&c, &relabeled),
            Err(BatchError::Inconsistent(_))
        ));
        assert!(split_chunks(0, &[], 10).is_err());
        assert!(split_chunks(0, &[0; 1000], 1).is_err(), "over MAX_CHUNKS");
    }

    /// Calls of every kind the runtime knows: each (module, message) tag pair that decodes
    /// with zeroed fields.
    fn every_call_kind() -> Vec<Call> {
        let mut out = Vec::new();
        for module in 0u8..16 {
            for msg in 0u8..32 {
                let mut bytes = vec![module, msg];
                bytes.extend([0u8; 512]);
                let mut rest = &bytes[..];
                if let Ok(call) = Call::deserialize(&mut rest) {
                    out.push(call);
                }
            }
        }
        out
    }

    #[test]
    fn every_call_kind_round_trips() {
        let calls = every_call_kind();
        assert!(calls.len() >= 30, "only {} call kinds", calls.len());
        let c = codec();
        let txs: Vec<_> = calls
            .into_iter()
            .enumerate()
            .map(|(i, call)| {
                key(i as u64 % 12).sign(Transaction {
                    chain_id: 7,
                    sender: key(i as u64 % 12).address(),
                    nonce: i as u64,
                    fee: i as u128,
                    call,
                })
            })
            .collect();
        let b = batch_of(vec![txs]);
        let back = Batch::decode(&c, &b.encode(&c).expect("encode")).expect("decode");
        assert_eq!(back.hash(), b.hash());
        assert!(back.blocks[0].txs.iter().all(|t| t.verify().is_ok()));
        assert_eq!(back, b);
    }

    fn arb_call() -> impl Strategy<Value = Call> {
        let kinds = every_call_kind();
        prop_oneof![
            (0u64..20, any::<u64>(), any::<u128>()).prop_map(|(to, asset, amount)| {
                Call::Bank(BankMsg::Transfer {
                    to: key(to).address(),
                    asset: AssetId(asset),
                    amount,
                })
            }),
            (
                0..kinds.len(),
                proptest::collection::vec(any::<u8>(), 0..600)
            )
                .prop_map(move |(k, noise)| {
                    // A kind's zeroed encoding with random bytes laid over its fields.
                    let mut bytes = borsh::to_vec(&kinds[k]).unwrap_or_default();
                    for (i, b) in noise.iter().enumerate().skip(2) {
                        if let Some(x) = bytes.get_mut(i) {
                            if b % 3 == 0 {
                                *x = *b;
                            }
                        }
                    }
                    let mut rest = &bytes[..];
                    Call::deserialize(&mut rest).unwrap_or_else(|_| kinds[k].clone())
                }),
        ]
    }

    fn arb_tx() -> impl Strategy<Value = SignedTransaction<Call>> {
        (
            0u64..20,
            any::<u64>(),
            any::<u128>(),
            arb_call(),
            any::<bool>(),
            any::<u64>(),
        )
            .prop_map(|(from, nonce, fee, call, other_chain, chain)| {
                key(from).sign(Transaction {
                    chain_id: if other_chain { chain } else { 7 },
                    sender: key(from).address(),
                    nonce,
                    fee,
                    call,
                })
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Random blocks of random transactions (every call kind, known and new addresses,
        /// other chain ids) come back exactly: same batch hash, same ids, valid signatures.
        #[test]
        fn random_batches_round_trip(
            blocks in proptest::collection::vec(proptest::collection::vec(arb_tx(), 0..12), 1..4),
            chunk in 64usize..400,
        ) {
            let c = codec();
            let b = batch_of(blocks);
            let (_, chunks) = b.to_chunks(&c, chunk).expect("chunks");
            let envs: Vec<Vec<u8>> = chunks.iter().map(Chunk::to_envelope_data).collect();
            let back: Vec<Chunk> = envs
                .iter()
                .rev()
                .map(|e| Chunk::from_envelope(BATCH_VERSION, e).expect("chunk"))
                .collect();
            let d = Batch::from_chunks(&c, &back).expect("decode");
            prop_assert_eq!(d.hash(), b.hash());
            for (x, y) in d.blocks.iter().zip(&b.blocks) {
                prop_assert_eq!(x.tx_ids(), y.tx_ids());
                prop_assert!(x.txs.iter().all(|t| t.verify().is_ok()));
            }
            prop_assert_eq!(d, b);
        }
    }

    proptest! {
        /// Arbitrary data, and every single-bit change of a valid encoding (compressed,
        /// compact or chunk), never panics; what decodes is consistent (also the cargo-fuzz
        /// target `crates/node/fuzz`).
        #[test]
        fn decoding_arbitrary_or_damaged_data_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            at in any::<usize>(),
            bit in 0u8..8,
        ) {
            let c = codec();
            if let Ok(b) = Batch::decode(&c, &data) {
                prop_assert!(b.check().is_ok());
            }
            let _ = Batch::from_compact(&c, &data);
            if let Ok(chunk) = Chunk::from_envelope(BATCH_VERSION, &data) {
                let _ = Batch::from_chunks(&c, &[chunk]);
            }
            let mut good = batch().encode(&c).expect("encode");
            let i = at % good.len();
            good[i] ^= 1 << bit;
            if let Ok(b) = Batch::decode(&c, &good) {
                prop_assert!(b.check().is_ok());
            }
            let raw = batch().to_compact(&c).expect("compact");
            let mut damaged = raw.clone();
            let j = at % damaged.len();
            damaged[j] ^= 1 << bit;
            let _ = Batch::from_compact(&c, &damaged);
            let packed = zstd::bulk::compress(&damaged, 1).expect("compress");
            if let Ok(b) = Batch::decode(&c, &packed) {
                prop_assert!(b.check().is_ok());
            }
            let truncated = &raw[..at % raw.len()];
            prop_assert!(Batch::from_compact(&c, truncated).is_err());
            let mut env = split_chunks(1, &good, 64).expect("split")[0].to_envelope_data();
            let k = at % env.len();
            env[k] ^= 1 << bit;
            if let Ok(chunk) = Chunk::from_envelope(BATCH_VERSION, &env) {
                let _ = Batch::from_chunks(&c, &[chunk]);
            }
        }
    }

    #[test]
    fn a_decompression_bomb_is_refused() {
        let zeros = vec![0u8; MAX_BATCH_BYTES + 10];
        let data = zstd::bulk::compress(&zeros, 3).expect("compress");
        assert!(data.len() < 1_000_000);
        assert!(matches!(
            Batch::decode(&codec(), &data),
            Err(BatchError::Compression(_))
        ));
    }
}
