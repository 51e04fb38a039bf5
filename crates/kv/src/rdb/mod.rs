//! Redis 7.0's RDB serialization of one value, as DUMP writes it and
//! RESTORE reads it (`src/rdb.c`, `src/cluster.c`'s `createDumpPayload`
//! and `verifyDumpPayload`).
//!
//! A payload is the RDB object type byte, the object, the RDB version (u16
//! LE, 10 for Redis 7.0) and a CRC-64 ([`crc64`]) of everything before it
//! (u64 LE). Inside the object, lengths use RDB's 6/14/32/64-bit length
//! encoding and strings are stored as small integers, LZF-compressed
//! ([`lzf`]) or verbatim. Small hashes and sorted sets are [`listpack`]s,
//! lists are quicklists of listpack nodes, small sets of integers are
//! [`intset`]s; payloads of older Redis versions may hold [`ziplist`]s.
//!
//! # Layout
//!
//! - this module: the payload frame and RDB's length and string encodings;
//! - `encode`: a stored value to a payload (DUMP);
//! - `decode`: a payload to a value (RESTORE).

pub mod crc64;
mod decode;
mod encode;
pub mod intset;
pub mod listpack;
pub mod lzf;
pub mod ziplist;

pub use decode::{load, LoadError, Value};
pub use encode::dump;

/// `RDB_VERSION` of Redis 7.0.
pub const RDB_VERSION: u16 = 10;

// Object types (`rdb.h`).
pub const TYPE_STRING: u8 = 0;
pub const TYPE_LIST: u8 = 1;
pub const TYPE_SET: u8 = 2;
pub const TYPE_ZSET: u8 = 3;
pub const TYPE_HASH: u8 = 4;
pub const TYPE_ZSET_2: u8 = 5;
// 6 and 7 are module values, 9 Redis 2.4's zipmap hashes: refused.
pub const TYPE_LIST_ZIPLIST: u8 = 10;
pub const TYPE_SET_INTSET: u8 = 11;
pub const TYPE_ZSET_ZIPLIST: u8 = 12;
pub const TYPE_HASH_ZIPLIST: u8 = 13;
pub const TYPE_LIST_QUICKLIST: u8 = 14;
pub const TYPE_STREAM_LISTPACKS: u8 = 15;
pub const TYPE_HASH_LISTPACK: u8 = 16;
pub const TYPE_ZSET_LISTPACK: u8 = 17;
pub const TYPE_LIST_QUICKLIST_2: u8 = 18;
pub const TYPE_STREAM_LISTPACKS_2: u8 = 19;

/// Quicklist node containers (`QUICKLIST_NODE_CONTAINER_*`).
pub const CONTAINER_PLAIN: u64 = 1;
pub const CONTAINER_PACKED: u64 = 2;

/// The first byte of a special string encoding (`RDB_ENCVAL << 6`) and
/// the encodings (`RDB_ENC_*`).
const ENCVAL: u8 = 3 << 6;
const ENC_INT8: u8 = 0;
const ENC_INT16: u8 = 1;
const ENC_INT32: u8 = 2;
const ENC_LZF: u8 = 3;
/// `proto-max-bulk-len`: the longest string a RESTORE may inflate.
const STRING_BYTES_MAX: u64 = 512 * 1024 * 1024;
/// `RDB_32BITLEN`, `RDB_64BITLEN`.
const LEN_32: u8 = 0x80;
const LEN_64: u8 = 0x81;

/// `rdbSaveLen`.
pub fn put_len(out: &mut Vec<u8>, len: u64) {
    if len < 1 << 6 {
        out.push(len as u8);
    } else if len < 1 << 14 {
        out.push(((len >> 8) as u8) | (1 << 6));
        out.push(len as u8);
    } else if len <= u64::from(u32::MAX) {
        out.push(LEN_32);
        out.extend_from_slice(&(len as u32).to_be_bytes());
    } else {
        out.push(LEN_64);
        out.extend_from_slice(&len.to_be_bytes());
    }
}

/// Writes strings as `rdbSaveRawString` does (with `rdbcompression yes`),
/// keeping one LZF hash table for the whole payload.
#[derive(Default)]
pub struct StringWriter {
    lzf: lzf::Compressor,
}

impl StringWriter {
    pub fn put(&mut self, out: &mut Vec<u8>, s: &[u8]) {
        // A short canonical integer within 32 bits: RDB_ENC_INT8/16/32.
        if s.len() <= 11 {
            if let Some(v) = crate::num::parse_i64(s) {
                if let Ok(v8) = i8::try_from(v) {
                    out.extend_from_slice(&[ENCVAL | ENC_INT8, v8 as u8]);
                    return;
                }
                if let Ok(v16) = i16::try_from(v) {
                    out.push(ENCVAL | ENC_INT16);
                    out.extend_from_slice(&v16.to_le_bytes());
                    return;
                }
                if let Ok(v32) = i32::try_from(v) {
                    out.push(ENCVAL | ENC_INT32);
                    out.extend_from_slice(&v32.to_le_bytes());
                    return;
                }
            }
        }
        // LZF for more than 20 bytes, kept if it saves at least 4 bytes
        // (`rdbSaveLzfStringObject`).
        if s.len() > 20 {
            if let Some(z) = self.lzf.compress(s, s.len() - 4) {
                out.push(ENCVAL | ENC_LZF);
                put_len(out, z.len() as u64);
                put_len(out, s.len() as u64);
                out.extend_from_slice(&z);
                return;
            }
        }
        put_len(out, s.len() as u64);
        out.extend_from_slice(s);
    }
}

/// Appends the footer: RDB version and CRC-64 of everything so far.
pub fn finish_payload(mut payload: Vec<u8>) -> Vec<u8> {
    payload.extend_from_slice(&RDB_VERSION.to_le_bytes());
    let crc = crc64::crc64(0, &payload);
    payload.extend_from_slice(&crc.to_le_bytes());
    payload
}

/// `verifyDumpPayload`: at least the 10 footer bytes, a version no newer
/// than ours, and a matching checksum.
pub fn verify_payload(p: &[u8]) -> bool {
    if p.len() < 10 {
        return false;
    }
    let footer = &p[p.len() - 10..];
    let version = u16::from_le_bytes([footer[0], footer[1]]);
    if version > RDB_VERSION {
        return false;
    }
    let crc = crc64::crc64(0, &p[..p.len() - 8]);
    crc.to_le_bytes() == footer[2..]
}

/// Reads RDB encodings from a payload (`rio` over a buffer: reads may run
/// into the footer, as Redis's do).
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A length, or the special string encoding its first byte announces.
enum Len {
    Plain(u64),
    Encoded(u8),
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn bytes(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok()?;
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub fn byte(&mut self) -> Option<u8> {
        Some(self.bytes(1)?[0])
    }

    /// `rdbLoadLenByRef`.
    fn len_or_encoding(&mut self) -> Option<Len> {
        let b = self.byte()?;
        Some(match b >> 6 {
            0 => Len::Plain(u64::from(b & 0x3F)),
            1 => Len::Plain((u64::from(b & 0x3F) << 8) | u64::from(self.byte()?)),
            3 => Len::Encoded(b & 0x3F),
            _ if b == LEN_32 => Len::Plain(u64::from(u32::from_be_bytes(self.bytes(4)?.try_into().ok()?))),
            _ if b == LEN_64 => Len::Plain(u64::from_be_bytes(self.bytes(8)?.try_into().ok()?)),
            _ => return None,
        })
    }

    /// `rdbLoadLen`: a plain length (an encoding marker is an error).
    pub fn len(&mut self) -> Option<u64> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Some(n),
            Len::Encoded(_) => None,
        }
    }

    /// `rdbGenericLoadStringObject`: a string, integers in decimal.
    pub fn string(&mut self) -> Option<Vec<u8>> {
        match self.len_or_encoding()? {
            Len::Plain(n) => Some(self.bytes(n)?.to_vec()),
            Len::Encoded(ENC_INT8) => Some((self.byte()? as i8).to_string().into_bytes()),
            Len::Encoded(ENC_INT16) => Some(i16::from_le_bytes(self.bytes(2)?.try_into().ok()?).to_string().into_bytes()),
            Len::Encoded(ENC_INT32) => Some(i32::from_le_bytes(self.bytes(4)?.try_into().ok()?).to_string().into_bytes()),
            Len::Encoded(ENC_LZF) => {
                let clen = self.len()?;
                let len = usize::try_from(self.len()?).ok()?;
                // No string grows past `proto-max-bulk-len`: a payload that
                // announces more is refused rather than inflated.
                if len as u64 > STRING_BYTES_MAX {
                    return None;
                }
                let compressed = self.bytes(clen)?;
                let out = lzf::decompress(compressed, len)?;
                // Redis insists on exactly the announced length.
                (out.len() == len).then_some(out)
            }
            Len::Encoded(_) => None,
        }
    }

    /// `rdbLoadBinaryDoubleValue`.
    pub fn binary_double(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    /// `rdbLoadDoubleValue` (RDB_TYPE_ZSET): a length byte (253 NaN, 254
    /// +inf, 255 -inf) and the number as text, read with `sscanf("%lg")`.
    pub fn text_double(&mut self) -> Option<f64> {
        match self.byte()? {
            255 => Some(f64::NEG_INFINITY),
            254 => Some(f64::INFINITY),
            253 => Some(f64::NAN),
            n => {
                let text = self.bytes(u64::from(n))?;
                // sscanf stops at a NUL as at any other non-number byte.
                let text = &text[..text.iter().position(|&c| c == 0).unwrap_or(text.len())];
                let r = crate::num::strtod(text);
                (r.used > 0).then_some(r.value)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        StringWriter::default().put(&mut out, s);
        out
    }

    #[test]
    fn strings_are_saved_as_redis_saves_them() {
        assert_eq!(saved(b"-1"), b"\xc0\xff");
        assert_eq!(saved(b"300"), b"\xc1\x2c\x01");
        assert_eq!(saved(b"2147483647"), b"\xc2\xff\xff\xff\x7f");
        assert_eq!(saved(b"2147483648"), b"\x0a2147483648");
        assert_eq!(saved(b"007"), b"\x03007");
        assert_eq!(saved(b""), b"\x00");
        let a30 = [b'a'; 30];
        assert_eq!(saved(&a30), b"\xc3\x09\x1e\x01aa\xe0\x11\x00\x01aa");
        let incompressible = b"abcdefghijklmnopqrstuvwxyz";
        assert_eq!(saved(incompressible), [&[26u8][..], incompressible].concat());
    }

    #[test]
    fn strings_read_back() {
        let long: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        for s in [&b"-1"[..], b"300", b"-2147483648", b"12345678901", b"", b"007", &[b'a'; 300], &long] {
            let bytes = saved(s);
            let mut r = Reader::new(&bytes);
            assert_eq!(r.string().as_deref(), Some(s));
            assert_eq!(r.pos, bytes.len());
        }
    }

    #[test]
    fn lengths_round_trip() {
        for n in [0u64, 63, 64, 16383, 16384, u64::from(u32::MAX), u64::from(u32::MAX) + 1, u64::MAX] {
            let mut out = Vec::new();
            put_len(&mut out, n);
            assert_eq!(Reader::new(&out).len(), Some(n));
        }
        assert_eq!(Reader::new(&[0x82]).len(), None, "not a length encoding");
    }

    #[test]
    fn payload_footer_is_checked() {
        let p = finish_payload(vec![TYPE_STRING, 0x01, b'x']);
        assert!(verify_payload(&p));
        let mut flipped = p.clone();
        flipped[2] = b'y';
        assert!(!verify_payload(&flipped));
        let mut newer = vec![TYPE_STRING, 0x01, b'x'];
        newer.extend_from_slice(&11u16.to_le_bytes());
        let crc = crc64::crc64(0, &newer);
        newer.extend_from_slice(&crc.to_le_bytes());
        assert!(!verify_payload(&newer), "RDB 11 is newer than 7.0's");
        assert!(!verify_payload(b"short"));
    }
}
