//! Reading the protobuf wire format field by field, for the fast paths
//! (<https://protobuf.dev/programming-guides/encoding/>).
//!
//! The reader never fails with a message of its own: whatever it does not take (a truncated
//! field, a group, a varint over ten bytes, a key over 32 bits, field number zero) is
//! [`Fallback`], and the request goes to prost, which then answers with its own error.

/// Why a request leaves the fast path. It is not an error: the general path takes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

pub(crate) type Result<T> = std::result::Result<T, Fallback>;

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    pub(crate) fn varint(self) -> Result<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(Fallback),
        }
    }

    pub(crate) fn fixed64(self) -> Result<u64> {
        match self {
            Value::Fixed64(v) => Ok(v),
            _ => Err(Fallback),
        }
    }

    pub(crate) fn fixed32(self) -> Result<u32> {
        match self {
            Value::Fixed32(v) => Ok(v),
            _ => Err(Fallback),
        }
    }

    pub(crate) fn bytes(self) -> Result<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(Fallback),
        }
    }

    /// A `string` field: UTF-8, as prost requires.
    pub(crate) fn str(self) -> Result<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Fallback)
    }
}

/// The fields of one message, in order.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn varint(&mut self) -> Result<u64> {
        // Most keys and lengths fit in one byte.
        if let Some((&byte, rest)) = self.buf.split_first()
            && byte < 0x80
        {
            self.buf = rest;
            return Ok(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            // The tenth byte may only carry the top bit of a u64.
            if i == 9 && byte > 1 {
                return Err(Fallback);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(Fallback)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Fallback);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next field's number and value; `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u32, Value<'a>)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        // A key is a 32-bit varint, as prost reads it: a longer one is malformed, not a field
        // number beyond 2^29.
        let key = u32::try_from(self.varint()?).map_err(|_| Fallback)?;
        let number = key >> 3;
        if number == 0 {
            return Err(Fallback);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Fallback)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            _ => return Err(Fallback),
        };
        Ok(Some((number, value)))
    }
}

/// A packed `repeated uint64` field's elements. Unpacked elements (wire type 0), which prost
/// also reads, are the caller's to refuse.
pub(crate) fn packed_varints(bytes: &[u8]) -> Result<Vec<u64>> {
    let mut fields = Fields::new(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    while !fields.buf.is_empty() {
        out.push(fields.varint()?);
    }
    Ok(out)
}

/// A `sint32` from its varint, truncated to 32 bits first as prost does.
pub(crate) fn zigzag32(varint: u64) -> i32 {
    let value = varint as u32;
    ((value >> 1) as i32) ^ -((value & 1) as i32)
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::{Fallback, Fields, Value, packed_varints, zigzag32};

    #[derive(Clone, PartialEq, prost::Message)]
    struct Sample {
        #[prost(uint64, tag = "1")]
        a: u64,
        #[prost(fixed64, tag = "2")]
        b: u64,
        #[prost(string, tag = "3")]
        c: String,
        #[prost(fixed32, tag = "4")]
        d: u32,
        #[prost(int64, tag = "536870911")]
        e: i64,
    }

    fn fields(bytes: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Fallback> {
        let mut fields = Fields::new(bytes);
        let mut out = Vec::new();
        while let Some(field) = fields.next_field()? {
            out.push(field);
        }
        Ok(out)
    }

    #[test]
    fn reads_what_prost_writes() {
        let sample = Sample {
            a: u64::MAX,
            b: 7,
            c: "héllo".into(),
            d: 0xdead_beef,
            e: -1,
        };
        let bytes = sample.encode_to_vec();
        let read = fields(&bytes).unwrap();
        assert_eq!(
            read,
            vec![
                (1, Value::Varint(u64::MAX)),
                (2, Value::Fixed64(7)),
                (3, Value::Bytes("héllo".as_bytes())),
                (4, Value::Fixed32(0xdead_beef)),
                (536_870_911, Value::Varint(u64::MAX)),
            ]
        );
        assert_eq!(read[2].1.str(), Ok("héllo"));
    }

    #[test]
    fn what_it_does_not_take_falls_back() {
        // Truncated varint, length past the end, field number 0, a group, an 11-byte varint,
        // invalid UTF-8 in a string.
        assert_eq!(fields(&[0x08, 0x80]), Err(Fallback));
        assert_eq!(fields(&[0x1a, 0x05, b'a']), Err(Fallback));
        assert_eq!(fields(&[0x00, 0x01]), Err(Fallback));
        assert_eq!(fields(&[0x0b]), Err(Fallback));
        assert_eq!(
            fields(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02
            ]),
            Err(Fallback)
        );
        // A key over 32 bits (here 16,700,302,298: wire type 2, "field" 2,087,537,787).
        let long_key = [0xda, 0xc7, 0xa9, 0x9b, 0x3e, 0x01];
        assert_eq!(fields(&long_key), Err(Fallback));
        let bad = fields(&[0x1a, 0x01, 0xff]).unwrap();
        assert_eq!(bad[0].1.str(), Err(Fallback));
        // prost refuses each of these too.
        for bytes in [
            &[0x08, 0x80][..],
            &[0x1a, 0x05, b'a'],
            &[0x00, 0x01],
            &[0x1a, 0x01, 0xff],
            &long_key,
        ] {
            assert!(Sample::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[derive(Clone, PartialEq, prost::Message)]
    struct Buckets {
        #[prost(sint32, tag = "1")]
        offset: i32,
        #[prost(uint64, repeated, tag = "2")]
        counts: Vec<u64>,
    }

    #[test]
    fn packed_varints_and_sint32_read_as_prost_writes_them() {
        for offset in [0, 1, -1, 63, -64, i32::MAX, i32::MIN] {
            let counts = vec![0, 1, 127, 128, 300, u64::MAX];
            let bytes = Buckets {
                offset,
                counts: counts.clone(),
            }
            .encode_to_vec();
            let read = fields(&bytes).unwrap();
            // prost leaves a zero offset out.
            let z = match read[..] {
                [(1, Value::Varint(z)), _] => z,
                _ => 0,
            };
            let Some((2, Value::Bytes(packed))) = read.last() else {
                panic!("{read:?}");
            };
            assert_eq!(zigzag32(z), offset);
            assert_eq!(packed_varints(packed), Ok(counts));
        }
        // A sint32 written as a 64-bit varint keeps its low 32 bits, as in prost.
        let mut wide = vec![0x08];
        wide.extend([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        let read = fields(&wide).unwrap();
        let (_, Value::Varint(z)) = read[0] else {
            panic!()
        };
        assert_eq!(zigzag32(z), Buckets::decode(&wide[..]).unwrap().offset);
        // A packed run cut in the middle of a varint.
        assert_eq!(packed_varints(&[0x01, 0x80]), Err(Fallback));
        assert!(Buckets::decode(&[0x12, 0x02, 0x01, 0x80][..]).is_err());
    }
}
