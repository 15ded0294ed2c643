//! The positional `span` field: how a span's terms are written into a trace's document, the
//! tokenizer that reads them back at the span's position, and the duration buckets.
//!
//! A document's `span` text is a run of tokens, each `<byte length>:<token>`, with `;` between
//! spans. The tokenizer gives every token of a span the span's ordinal as its position, so a
//! phrase query whose terms share one offset matches only when one span has them all.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// The name the `span` field's tokenizer is registered under.
pub(crate) const TOKENIZER: &str = "spyglass_spans";

pub(crate) const SERVICE: &str = "s:";
pub(crate) const NAME: &str = "n:";
pub(crate) const ATTR: &str = "a:";
pub(crate) const DURATION: &str = "d:";
/// The token of a span whose status is error.
pub(crate) const ERROR: &str = "e:";

/// Values longer than this are indexed by their first bytes only.
pub const MAX_TERM_VALUE_BYTES: usize = 256;

pub(crate) fn truncated(value: &str) -> &str {
    if value.len() <= MAX_TERM_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_TERM_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Writes the term `<tag><value>` (the value cut at [`MAX_TERM_VALUE_BYTES`]) into `term`.
pub(crate) fn term(term: &mut String, tag: &str, value: &str) {
    term.clear();
    term.push_str(tag);
    term.push_str(truncated(value));
}

/// Writes the attribute term `a:<key>=<value>` into `term`.
pub(crate) fn attr_term(term: &mut String, key: &str, value: &str) {
    term.clear();
    term.push_str(ATTR);
    term.push_str(key);
    term.push('=');
    term.push_str(truncated(value));
}

/// The `span` text of one document, span after span.
#[derive(Default)]
pub(crate) struct SpanText {
    text: String,
    spans: usize,
}

impl SpanText {
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.spans = 0;
    }

    /// Starts the next span: its tokens take the next position.
    pub(crate) fn next_span(&mut self) {
        if self.spans > 0 {
            self.text.push(';');
        }
        self.spans += 1;
    }

    /// Adds a whole term (tag included) to the current span.
    pub(crate) fn push(&mut self, term: &str) {
        self.push_parts(&[term]);
    }

    /// Adds the attribute term [`attr_term`] makes, written in place.
    pub(crate) fn push_attr(&mut self, key: &str, value: &str) {
        self.push_parts(&[ATTR, key, "=", truncated(value)]);
    }

    /// Adds the term made of `parts` one after another.
    fn push_parts(&mut self, parts: &[&str]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.text.push_str(itoa::Buffer::new().format(len));
        self.text.push(':');
        for part in parts {
            self.text.push_str(part);
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.spans == 0
    }
}

/// Reads a [`SpanText`] back into tokens, one position per span.
#[derive(Clone, Default)]
pub(crate) struct SpanTokenizer {
    token: Token,
}

pub(crate) struct SpanTokenStream<'a> {
    text: &'a str,
    at: usize,
    position: usize,
    token: &'a mut Token,
}

impl Tokenizer for SpanTokenizer {
    type TokenStream<'a> = SpanTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> SpanTokenStream<'a> {
        self.token.reset();
        SpanTokenStream {
            text,
            at: 0,
            position: 0,
            token: &mut self.token,
        }
    }
}

impl TokenStream for SpanTokenStream<'_> {
    fn advance(&mut self) -> bool {
        let bytes = self.text.as_bytes();
        while self.at < bytes.len() && bytes[self.at] == b';' {
            self.position += 1;
            self.at += 1;
        }
        // The decimal length, then `:`.
        let (mut len, mut colon) = (0usize, self.at);
        while let Some(&digit) = bytes.get(colon).filter(|b| b.is_ascii_digit()) {
            let Some(longer) = len
                .checked_mul(10)
                .and_then(|l| l.checked_add(usize::from(digit - b'0')))
            else {
                return false;
            };
            len = longer;
            colon += 1;
        }
        if colon == self.at || bytes.get(colon) != Some(&b':') {
            return false;
        }
        let from = colon + 1;
        let to = from + len;
        let Some(text) = self.text.get(from..to) else {
            return false;
        };
        self.token.text.clear();
        self.token.text.push_str(text);
        self.token.offset_from = from;
        self.token.offset_to = to;
        self.token.position = self.position;
        self.token.position_length = 1;
        self.at = to;
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// The highest duration bucket (of `u64::MAX` nanoseconds).
pub(crate) const MAX_BUCKET: u32 = 495;

/// The log-linear bucket of a duration in nanoseconds: values below 16 are their own bucket;
/// above, eight buckets per power of two (each at most 12.5% wide).
pub(crate) fn bucket(nanos: u64) -> u32 {
    if nanos < 16 {
        return nanos as u32;
    }
    let e = 63 - nanos.leading_zeros();
    let m = ((nanos >> (e - 3)) & 7) as u32;
    8 * (e - 2) + m
}

/// The smallest duration in bucket `b`.
pub(crate) fn bucket_floor(b: u32) -> u64 {
    if b < 16 {
        return u64::from(b);
    }
    let (e, m) = (b / 8 + 2, u64::from(b % 8));
    (8 + m) << (e - 3)
}

/// The largest duration in bucket `b`.
pub(crate) fn bucket_ceiling(b: u32) -> u64 {
    if b >= MAX_BUCKET {
        u64::MAX
    } else {
        bucket_floor(b + 1) - 1
    }
}

/// Writes the duration term of `nanos` into `term`.
pub(crate) fn duration_term(term: &mut String, nanos: u64) {
    bucket_term(term, bucket(nanos));
}

/// Writes the term of duration bucket `b` into `term` (fixed-width hex, so terms sort as
/// their buckets do).
pub(crate) fn bucket_term(term: &mut String, b: u32) {
    use std::fmt::Write;
    term.clear();
    term.push_str(DURATION);
    let _ = write!(term, "{b:03x}");
}

/// The bucket a duration term names.
pub(crate) fn term_bucket(term: &[u8]) -> Option<u32> {
    let digits = std::str::from_utf8(term.strip_prefix(DURATION.as_bytes())?).ok()?;
    u32::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_duration_in_order() {
        let mut last = 0;
        for nanos in (0..20_000).chain([99_999_999, 100_000_000, 1 << 40, u64::MAX - 1, u64::MAX]) {
            let b = bucket(nanos);
            assert!(b >= last, "buckets grow with the duration");
            assert!(
                bucket_floor(b) <= nanos && nanos <= bucket_ceiling(b),
                "{nanos} in {b}"
            );
            last = b;
        }
        assert_eq!(bucket(u64::MAX), MAX_BUCKET);
        let mut term = String::new();
        for b in 0..MAX_BUCKET {
            assert_eq!(bucket_ceiling(b) + 1, bucket_floor(b + 1));
            assert_eq!(bucket(bucket_floor(b)), b);
            bucket_term(&mut term, b);
            assert_eq!(term_bucket(term.as_bytes()), Some(b));
        }
    }

    #[test]
    fn text_that_is_not_a_span_text_ends_the_tokens() {
        let mut tokenizer = SpanTokenizer::default();
        for text in ["x", ":a", "3:ab", "99999999999999999999999:a", "2:ab1"] {
            let mut stream = tokenizer.token_stream(text);
            let mut got = Vec::new();
            while stream.advance() {
                got.push(stream.token().text.clone());
            }
            let expected: &[&str] = if text == "2:ab1" { &["ab"] } else { &[] };
            assert_eq!(got, expected, "{text}");
        }
    }

    #[test]
    fn spans_are_positions_and_tokens_keep_any_character() {
        let mut text = SpanText::default();
        text.next_span();
        text.push("s:web");
        text.push("a:k=v;1:x:");
        text.push_attr("key", "é".repeat(MAX_TERM_VALUE_BYTES).as_str());
        text.next_span();
        text.push("s:db");
        let mut tokenizer = SpanTokenizer::default();
        let mut stream = tokenizer.token_stream(text.as_str());
        let mut got = Vec::new();
        while stream.advance() {
            got.push((stream.token().position, stream.token().text.clone()));
        }
        assert_eq!(
            got,
            [
                (0, "s:web".to_string()),
                (0, "a:k=v;1:x:".to_string()),
                (0, {
                    let mut term = String::new();
                    attr_term(&mut term, "key", &"é".repeat(MAX_TERM_VALUE_BYTES));
                    term
                }),
                (1, "s:db".to_string())
            ]
        );
    }
}
