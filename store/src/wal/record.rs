//! WAL segment and record layout.
//!
//! A segment starts with the 8-byte header `SPYWAL` + format version (`u16` little endian).
//! Then records follow back to back:
//!
//! ```text
//! +-----------+-------------+------------------------------------------+
//! | len: u32  | crc32c: u32 | body (len bytes)                         |
//! +-----------+-------------+------------------------------------------+
//!                             body = lsn: u64 | signal: u8 | payload
//! ```
//! All integers are little endian; the CRC32C covers the whole body. `len` is at least
//! [`MIN_BODY`] and at most [`MAX_BODY`]; anything else is a bad length.

pub const SEGMENT_MAGIC: &[u8; 6] = b"SPYWAL";
pub const SEGMENT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_LEN: usize = 8;
pub const RECORD_HEADER_LEN: usize = 8;
/// lsn + signal tag.
pub const MIN_BODY: usize = 9;
/// Larger than any request ingest accepts after decompression (64 MiB by default) encoded.
pub const MAX_BODY: usize = 512 << 20;
/// The largest payload a record can carry: the writer refuses more, so that it never writes a
/// record replay would refuse to read.
pub const MAX_PAYLOAD: usize = MAX_BODY - MIN_BODY;

pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..6].copy_from_slice(SEGMENT_MAGIC);
    h[6..].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h
}

/// Appends one framed record to `out`.
pub fn encode(out: &mut Vec<u8>, lsn: u64, tag: u8, payload: &[u8]) {
    let body_len = MIN_BODY + payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&lsn.to_le_bytes());
    out.push(tag);
    out.extend_from_slice(payload);
    let crc = crc32c::crc32c(&out[start + RECORD_HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// One record read back from a segment.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<'a> {
    pub lsn: u64,
    pub tag: u8,
    pub payload: &'a [u8],
    /// Bytes the record takes in the segment, header included.
    pub framed_len: usize,
}

/// Why a segment stops being readable at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The file ends inside a record header or body: a write that never finished.
    Truncated,
    BadLength,
    BadChecksum,
    /// The frame is intact but its content cannot be used.
    BadContent,
    BadHeader,
    Unreadable,
}

impl Damage {
    pub fn as_str(self) -> &'static str {
        match self {
            Damage::Truncated => "truncated record",
            Damage::BadLength => "bad record length",
            Damage::BadChecksum => "bad checksum",
            Damage::BadContent => "bad record content",
            Damage::BadHeader => "bad segment header",
            Damage::Unreadable => "unreadable segment",
        }
    }
}

/// Decodes the record at the start of `buf`; `Ok(None)` at a clean end.
pub fn decode(buf: &[u8]) -> Result<Option<Decoded<'_>>, Damage> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf.len() < RECORD_HEADER_LEN {
        return Err(Damage::Truncated);
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if !(MIN_BODY..=MAX_BODY).contains(&len) {
        return Err(Damage::BadLength);
    }
    let Some(body) = buf.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + len) else {
        return Err(Damage::Truncated);
    };
    let crc = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != crc {
        return Err(Damage::BadChecksum);
    }
    Ok(Some(Decoded {
        lsn: u64::from_le_bytes(body[0..8].try_into().expect("8 bytes")),
        tag: body[8],
        payload: &body[MIN_BODY..],
        framed_len: RECORD_HEADER_LEN + len,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(records in proptest::collection::vec((any::<u64>(), any::<u8>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut buf = Vec::new();
            for (lsn, tag, payload) in &records {
                encode(&mut buf, *lsn, *tag, payload);
            }
            let mut rest = &buf[..];
            for (lsn, tag, payload) in &records {
                let d = decode(rest).unwrap().unwrap();
                prop_assert_eq!((d.lsn, d.tag, d.payload), (*lsn, *tag, &payload[..]));
                rest = &rest[d.framed_len..];
            }
            prop_assert_eq!(decode(rest), Ok(None));
        }

        #[test]
        fn any_single_flipped_bit_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..200), bit in 0usize..8 * 200) {
            let mut buf = Vec::new();
            encode(&mut buf, 7, 1, &payload);
            let bit = bit % (buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode(&buf).is_err());
        }
    }
}
