//! A strict, allocation-free JSON scanner for the shapes the normalisation reads millions of times
//! a day: the flat CloudWatch envelope, the members of an app message object, and both at once —
//! a compact message read in place inside its envelope string ([`envelope_members`]).
//!
//! It is a fast path only. Every function returns `None` as soon as the input is anything but
//! plain, valid JSON of the expected shape (an escaped key, a duplicate envelope field, a lone
//! surrogate, deep nesting, trailing text...), and the caller then takes the `serde_json` path,
//! which decides and words the error. The one exception is an object or array member read in
//! place ([`Member::Escaped`]): only its extent is found, and the caller checks the unescaped text
//! with [`is_value`]. The scanner is never more lenient than `serde_json`: what it accepts,
//! `serde_json` accepts with the same values (a differential test in `normalize` checks it).

use crate::model::EnvelopeHead;

/// Nesting accepted inside a value before giving up on the fast path (`serde_json` allows 128).
const MAX_DEPTH: u32 = 64;

/// The fields of an envelope line; `message` as its reader returned it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct EnvelopeParts<'a, M> {
    pub timestamp: i64,
    pub ingestion_time: Option<i64>,
    pub message: M,
    pub log_stream_name: &'a str,
    pub event_id: &'a str,
}

/// An envelope read by [`envelope`]; the message is borrowed from the line, or unescaped into the
/// caller's scratch buffer (`message == None`).
pub(crate) type EnvelopeRef<'a> = EnvelopeParts<'a, Option<&'a str>>;

/// The bytes of `w` (eight string bytes, little-endian) that end a plain string run — `"`, `\\` or a
/// control character (< 0x20) — as the high bit of each such byte. The classic SWAR zero-byte test,
/// applied to `w ^ '"'`, `w ^ '\\'` and `w - 0x20`: its lowest set bit is exact (borrows only ever
/// mark bytes above a true match), so `trailing_zeros / 8` is the index of the first special byte.
#[inline]
pub(crate) fn special_mask(w: u64) -> u64 {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    zero(w ^ (LO * b'"' as u64))
        | zero(w ^ (LO * b'\\' as u64))
        | (w.wrapping_sub(LO * 0x20) & !w & HI)
}

#[cfg(test)]
fn special8(w: u64) -> bool {
    special_mask(w) != 0
}

/// The length of the run of `b` before its first byte that ends a plain string (see
/// [`special_mask`]), eight bytes at a time.
#[inline]
pub(crate) fn plain_len(b: &[u8]) -> usize {
    let mut i = 0;
    while let Some(w) = b[i..].first_chunk::<8>() {
        let m = special_mask(u64::from_le_bytes(*w));
        if m != 0 {
            return i + (m.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

struct Cursor<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Cursor {
            text,
            b: text.as_bytes(),
            i: 0,
        }
    }

    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// Advances over string bytes that need no attention, eight at a time where it can.
    #[inline]
    fn skip_plain(&mut self) {
        self.i += plain_len(&self.b[self.i..]);
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// After a member or element: `,` (`Some(true)`, another follows) or `close` (`Some(false)`).
    #[inline]
    fn more(&mut self, close: u8) -> Option<bool> {
        let c = self.peek()?;
        if c == b',' || c == close {
            self.i += 1;
            Some(c == b',')
        } else {
            None
        }
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes, borrowed (the cursor is on its opening quote).
    fn plain_str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        self.skip_plain();
        self.eat(b'"')?;
        Some(&self.text[start..self.i - 1])
    }

    /// A string: borrowed when it has no escapes, else unescaped into `out` (`Some(None)`).
    fn str_into(&mut self, out: &mut String) -> Option<Option<&'a str>> {
        self.eat(b'"')?;
        let start = self.i;
        self.skip_plain();
        match *self.b.get(self.i)? {
            b'"' => {
                self.i += 1;
                return Some(Some(&self.text[start..self.i - 1]));
            }
            b'\\' => {}
            _ => return None,
        }
        // Escaped: unescape byte by byte into a reused buffer (runs between escapes are short in
        // JSON-in-JSON messages, so one call per run would cost more than it copies).
        let mut buf = std::mem::take(out).into_bytes();
        buf.clear();
        buf.reserve(self.b.len() - start);
        buf.extend_from_slice(&self.b[start..self.i]);
        let done = self.unescape(&mut buf);
        // Unescaping valid UTF-8 with valid escapes gives valid UTF-8; the check is cheap.
        *out = String::from_utf8(buf).ok()?;
        done?;
        Some(None)
    }

    /// The rest of a string from its first backslash, unescaped into `buf`.
    fn unescape(&mut self, buf: &mut Vec<u8>) -> Option<()> {
        loop {
            if let Some(w) = self.b[self.i..].first_chunk::<8>() {
                let m = special_mask(u64::from_le_bytes(*w));
                // Copy the whole word (a fixed-size copy), then keep only the plain prefix.
                let len = buf.len();
                buf.extend_from_slice(w);
                if m == 0 {
                    self.i += 8;
                    continue;
                }
                let k = (m.trailing_zeros() / 8) as usize;
                buf.truncate(len + k);
                self.i += k;
            }
            let c = *self.b.get(self.i)?;
            if c != b'"' && c != b'\\' && c >= 0x20 {
                buf.push(c);
                self.i += 1;
                continue;
            }
            match c {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    let e = match *self.b.get(self.i)? {
                        b'"' => b'"',
                        b'\\' => b'\\',
                        b'/' => b'/',
                        b'b' => 8,
                        b'f' => 12,
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'u' => {
                            self.i += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                // A high surrogate must be followed by an escaped low one.
                                if self.b.get(self.i..self.i + 2)? != b"\\u" {
                                    return None;
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return None;
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let ch = char::from_u32(code)?;
                            buf.extend_from_slice(ch.encode_utf8(&mut [0u8; 4]).as_bytes());
                            continue;
                        }
                        _ => return None,
                    };
                    buf.push(e);
                    self.i += 1;
                }
                _ => return None,
            }
        }
    }

    /// Four hex digits of a `\u` escape, as a number.
    fn hex4(&mut self) -> Option<u32> {
        let digits = self.b.get(self.i..self.i + 4)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// An integer that fits an `i64` (no fraction or exponent).
    fn int(&mut self) -> Option<i64> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let n = self.i - digits;
        if n == 0 || (n > 1 && self.b[digits] == b'0') {
            return None;
        }
        if matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        self.text[start..self.i].parse().ok()
    }

    /// Skips one valid JSON value, returning its text.
    fn value(&mut self, depth: u32) -> Option<&'a str> {
        let start = self.i;
        match self.peek()? {
            b'"' => self.skip_str()?,
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b'}').is_none() {
                    loop {
                        self.ws();
                        self.skip_str()?;
                        self.ws();
                        self.eat(b':')?;
                        self.ws();
                        self.value(depth + 1)?;
                        self.ws();
                        if !self.more(b'}')? {
                            break;
                        }
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b']').is_none() {
                    loop {
                        self.ws();
                        self.value(depth + 1)?;
                        self.ws();
                        if !self.more(b']')? {
                            break;
                        }
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            b'-' | b'0'..=b'9' => self.number()?,
            _ => return None,
        }
        Some(&self.text[start..self.i])
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? == word {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        self.i - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let first = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.b[first] == b'0') {
            return None;
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// Skips a string, checking its escapes (as `serde_json` does when it skips one).
    fn skip_str(&mut self) -> Option<()> {
        self.eat(b'"')?;
        loop {
            self.skip_plain();
            match *self.b.get(self.i)? {
                b'"' => {
                    self.i += 1;
                    return Some(());
                }
                b'\\' => {
                    self.i += 1;
                    match *self.b.get(self.i)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            self.i += 1;
                            self.hex4()?;
                        }
                        _ => return None,
                    }
                }
                _ => return None,
            }
        }
    }

    /// Walks a whole text that is one object: for each member (unescaped keys only), `value` reads
    /// the value at the cursor. Only whitespace may follow the object.
    fn object(&mut self, mut value: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.ws();
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_none() {
            loop {
                self.ws();
                let key = self.plain_str()?;
                self.ws();
                self.eat(b':')?;
                self.ws();
                value(self, key)?;
                self.ws();
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.ws();
        (self.i == self.b.len()).then_some(())
    }
}

/// Walks a CloudWatch-shaped envelope line (`timestamp`, `ingestionTime`, `message`,
/// `logStreamName`, `eventId`, in any order; other keys skipped); `message` reads the message's
/// value at the cursor.
fn walk_envelope<'a, M>(
    line: &'a str,
    mut message: impl FnMut(&mut Cursor<'a>) -> Option<M>,
) -> Option<EnvelopeParts<'a, M>> {
    let (mut timestamp, mut ingestion, mut msg, mut stream, mut id) =
        (None, None, None, None, None);
    Cursor::new(line).object(|c, key| {
        match key {
            "timestamp" if timestamp.is_none() => timestamp = Some(c.int()?),
            "ingestionTime" if ingestion.is_none() => {
                ingestion = Some(if c.peek() == Some(b'n') {
                    c.literal(b"null")?;
                    None
                } else {
                    Some(c.int()?)
                });
            }
            "message" if msg.is_none() => msg = Some(message(c)?),
            "logStreamName" if stream.is_none() => stream = Some(c.plain_str()?),
            "eventId" if id.is_none() => id = Some(c.plain_str()?),
            // A repeated envelope field: serde_json rejects it.
            "timestamp" | "ingestionTime" | "message" | "logStreamName" | "eventId" => return None,
            _ => {
                c.value(1)?;
            }
        }
        Some(())
    })?;
    Some(EnvelopeParts {
        timestamp: timestamp?,
        ingestion_time: ingestion.flatten(),
        message: msg?,
        log_stream_name: stream?,
        event_id: id?,
    })
}

/// Reads a CloudWatch-shaped envelope line (see [`walk_envelope`]). An escaped message is
/// unescaped into `scratch`.
pub(crate) fn envelope<'a>(line: &'a str, scratch: &mut String) -> Option<EnvelopeRef<'a>> {
    walk_envelope(line, |c| c.str_into(scratch))
}

/// The envelope members found in the first bytes of a line (see [`EnvelopeHead`]): members are
/// read in order while they are complete and plain (unescaped key, followed by `,` or `}` within
/// the head), so that a number or string cut by the head's end is never taken for its prefix.
pub(crate) fn envelope_head(head: &str) -> EnvelopeHead<'_> {
    let mut out = EnvelopeHead::default();
    let (mut timestamps, mut streams, mut ids) = (0u32, 0u32, 0u32);
    let mut c = Cursor::new(head);
    c.ws();
    if c.eat(b'{').is_none() {
        return out;
    }
    loop {
        c.ws();
        let Some(key) = c.plain_str() else { break };
        c.ws();
        if c.eat(b':').is_none() {
            break;
        }
        c.ws();
        // (timestamp, string): the value of an envelope field, once read.
        let value = match key {
            "timestamp" => c.int().map(|t| (Some(t), None)),
            "logStreamName" | "eventId" => c.plain_str().map(|s| (None, Some(s))),
            _ => c.value(1).map(|_| (None, None)),
        };
        let Some((timestamp, text)) = value else {
            break;
        };
        c.ws();
        // Complete only when something follows it.
        let Some(more) = c.more(b'}') else { break };
        match key {
            "timestamp" => {
                timestamps += 1;
                out.timestamp = timestamp;
            }
            "logStreamName" => {
                streams += 1;
                out.log_stream_name = text;
            }
            "eventId" => {
                ids += 1;
                out.event_id = text;
            }
            _ => {}
        }
        if !more {
            break;
        }
    }
    if timestamps > 1 {
        out.timestamp = None;
    }
    if streams > 1 {
        out.log_stream_name = None;
    }
    if ids > 1 {
        out.event_id = None;
    }
    out
}

/// A member value of an app message, read where it lies in the envelope line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Member<'a> {
    /// The text of a number or a literal.
    Json(&'a str),
    /// The content of a string that has no escapes.
    Str(&'a str),
    /// An object or array with its quotes still escaped (`{\"k\":1}`): its JSON text is
    /// [`unescape_quotes`] of it, which [`is_value`] must accept.
    Escaped(&'a str),
}

/// Reads an envelope whose message is the common shape of app logs — one compact JSON object
/// whose strings have no escapes of their own — calling `member(key, value)` for each member of
/// the message without unescaping it first (one pass over the line instead of two). `None` for
/// anything else (whitespace, escapes, a plain-text message...), or as soon as `member` returns
/// `None`: the caller then takes [`envelope`].
pub(crate) fn envelope_members<'a>(
    line: &'a str,
    mut member: impl FnMut(&'a str, Member<'a>) -> Option<()>,
) -> Option<EnvelopeParts<'a, ()>> {
    walk_envelope(line, |c| {
        c.eat(b'"')?;
        c.escaped_members(&mut member)
    })
}

/// The JSON text of a [`Member::Escaped`] value: its `\"` become `"`.
pub(crate) fn unescape_quotes(escaped: &str, out: &mut String) {
    out.clear();
    for (i, part) in escaped.split("\\\"").enumerate() {
        if i > 0 {
            out.push('"');
        }
        out.push_str(part);
    }
}

/// Whether `text` is exactly one valid JSON value (nothing around it).
pub(crate) fn is_value(text: &str) -> bool {
    let mut c = Cursor::new(text);
    c.value(1).is_some() && c.i == text.len()
}

impl<'a> Cursor<'a> {
    /// `\"content\"`: a string of an escaped message, without escapes of its own.
    fn escaped_str(&mut self) -> Option<&'a str> {
        self.literal(b"\\\"")?;
        let start = self.i;
        self.skip_plain();
        let end = self.i;
        self.literal(b"\\\"")?;
        Some(&self.text[start..end])
    }

    /// The members of a compact object inside an envelope string (the cursor is just after the
    /// string's opening quote), through to the string's closing quote.
    fn escaped_members(
        &mut self,
        member: &mut impl FnMut(&'a str, Member<'a>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.eat(b'}').is_none() {
            loop {
                let key = self.escaped_str()?;
                self.eat(b':')?;
                let value = match self.peek()? {
                    b'\\' => Member::Str(self.escaped_str()?),
                    b'{' | b'[' => Member::Escaped(self.escaped_nested()?),
                    // A literal or a number: the same text escaped or not.
                    b't' | b'f' | b'n' | b'-' | b'0'..=b'9' => Member::Json(self.value(1)?),
                    _ => return None,
                };
                member(key, value)?;
                if !self.more(b'}')? {
                    break;
                }
            }
        }
        self.eat(b'"')
    }

    /// The extent of an object or array inside an envelope string, whose strings are `\"...\"`
    /// without other escapes; its validity is checked once unescaped ([`is_value`]).
    fn escaped_nested(&mut self) -> Option<&'a str> {
        let start = self.i;
        let (mut depth, mut in_string) = (0u32, false);
        loop {
            let c = *self.b.get(self.i)?;
            match c {
                b'\\' => {
                    if self.b.get(self.i + 1) != Some(&b'"') {
                        return None;
                    }
                    in_string = !in_string;
                    self.i += 2;
                    continue;
                }
                b'"' => return None,
                c if c < 0x20 => return None,
                b'{' | b'[' if !in_string => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return None;
                    }
                }
                b'}' | b']' if !in_string => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Some(&self.text[start..self.i]);
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }
}

/// Calls `each(key, raw value)` for every member of the JSON object `text`; `None` when `text` is
/// not a plain object (or a key is escaped), and as soon as `each` returns `None`.
pub(crate) fn object_members<'a>(
    text: &'a str,
    mut each: impl FnMut(&'a str, &'a str) -> Option<()>,
) -> Option<()> {
    Cursor::new(text).object(|c, key| {
        let value = c.value(1)?;
        each(key, value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_envelopes_in_any_order() {
        let mut s = String::new();
        let e = envelope(
            r#"{"eventId":"9","logStreamName":"a/b","message":"hi","timestamp":-5,"ingestionTime":null,"x":[1,{"y":2.5e3}]}"#,
            &mut s,
        )
        .unwrap();
        assert_eq!(
            e,
            EnvelopeRef {
                timestamp: -5,
                ingestion_time: None,
                message: Some("hi"),
                log_stream_name: "a/b",
                event_id: "9",
            }
        );
        let e = envelope(
            r#" { "timestamp" : 1 , "message" : "{\"a\":\"\u00e9\ud83d\ude00\\n\"}" , "logStreamName":"s","eventId":"e" } "#,
            &mut s,
        )
        .unwrap();
        assert_eq!(e.message, None);
        assert_eq!(s, "{\"a\":\"é😀\\n\"}");
    }

    #[test]
    fn leaves_anything_unusual_to_serde() {
        let mut s = String::new();
        for bad in [
            r#"{"timestamp":1,"message":"m","logStreamName":"s"}"#,
            r#"{"timestamp":1,"timestamp":2,"message":"m","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":1.0,"message":"m","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":01,"message":"m","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":99999999999999999999,"message":"m","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":1,"message":"\ud800","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":1,"message":"\x","logStreamName":"s","eventId":"e"}"#,
            r#"{"timestamp":1,"message":"m","logStreamName":"s\"","eventId":"e"}"#,
            r#"{"timestamp":1,"message":"m","logStreamName":"s","eventId":"e"} x"#,
            r#"{"timestamp":1,"message":"m","logStreamName":"s","eventId":"e",}"#,
            "{\"timestamp\":1,\"message\":\"a\tb\",\"logStreamName\":\"s\",\"eventId\":\"e\"}",
            r#"{"timestamp":1,"message":"m","logStreamName":"s","eventId":"e","x":01}"#,
            r#"{"timestamp":1,"message":"m","logStreamName":"s","eventId":"e","x":[1,]}"#,
        ] {
            assert_eq!(envelope(bad, &mut s), None, "{bad}");
        }
    }

    #[test]
    fn envelope_heads_give_the_members_before_the_cut() {
        let line = r#" { "logStreamName" : "s", "x":[1,{"y":2}], "timestamp":1793577600123, "eventId":"e1","message":"aaaa"}"#;
        let full = EnvelopeHead {
            timestamp: Some(1_793_577_600_123),
            log_stream_name: Some("s"),
            event_id: Some("e1"),
        };
        assert_eq!(envelope_head(line), full);
        for cut in 0..line.len() {
            let h = envelope_head(&line[..cut]);
            // A member counts once complete; never a prefix of its value.
            let at = |needle: &str| line.find(needle).unwrap() + needle.len();
            let want = EnvelopeHead {
                timestamp: (cut > at("1793577600123")).then_some(1_793_577_600_123),
                log_stream_name: (cut > at(r#""s""#)).then_some("s"),
                event_id: (cut > at(r#""e1""#)).then_some("e1"),
            };
            assert_eq!(h, want, "{}", &line[..cut]);
        }
        let twice = r#"{"timestamp":1,"eventId":"a","timestamp":2,"message":"#;
        assert_eq!(envelope_head(twice).timestamp, None);
        assert_eq!(envelope_head(twice).event_id, Some("a"));
        for unusual in [
            r#"{"time\u0073tamp":1,"timestamp":2,"message":"#,
            r#"{"a":tru,"timestamp":2,"message":"#,
            r#"{"timestamp":1.5,"message":"#,
            r#"{"timestamp":"1","message":"#,
            r#"["timestamp",1,"#,
            "",
        ] {
            assert_eq!(envelope_head(unusual).timestamp, None, "{unusual}");
        }
    }

    #[test]
    fn special_bytes_are_found_in_any_lane() {
        for lane in 0..8 {
            for (c, special) in [
                (b'"', true),
                (b'\\', true),
                (0x1f, true),
                (0, true),
                (b' ', false),
                (0xc3, false),
                (b'~', false),
            ] {
                let mut w = *b"abcdefgh";
                w[lane] = c;
                assert_eq!(
                    special8(u64::from_le_bytes(w)),
                    special,
                    "{c:#x} in lane {lane}"
                );
            }
        }
    }

    #[test]
    fn the_first_special_byte_is_located_exactly() {
        for first in 0..8 {
            for later in first..8 {
                for (a, b) in [(b'"', 0x01), (0x00, b'\\'), (b'\\', b'"'), (0x1f, 0x00)] {
                    let mut w = *b"abcdefgh";
                    w[later] = b;
                    w[first] = a;
                    let m = special_mask(u64::from_le_bytes(w));
                    assert_eq!((m.trailing_zeros() / 8) as usize, first, "{w:?}");
                }
            }
        }
    }

    #[test]
    fn walks_object_members() {
        let mut seen = Vec::new();
        object_members(
            r#"{"a":1,"b":{"c":[true,false,null]},"d":"x\"y"}"#,
            |k, v| {
                seen.push((k, v));
                Some(())
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            vec![
                ("a", "1"),
                ("b", r#"{"c":[true,false,null]}"#),
                ("d", r#""x\"y""#)
            ]
        );
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(object_members(&deep, |_, _| Some(())), None);
        assert_eq!(object_members(r#"{"a\n":1}"#, |_, _| Some(())), None);
        assert_eq!(object_members(r#"{"a":1}}"#, |_, _| Some(())), None);
    }

    #[test]
    fn reads_compact_messages_in_place() {
        let line = serde_json::json!({
            "timestamp": 7,
            "message": r#"{"event_id":"e-1","latency_ms":-12,"ok":true,"x":null,"props":{"a":[1,{"b":"c"}]},"n":2.5e3}"#,
            "logStreamName": "s",
            "eventId": "9",
        })
        .to_string();
        let mut seen = Vec::new();
        let e = envelope_members(&line, |k, v| {
            seen.push((k, v));
            Some(())
        })
        .unwrap();
        assert_eq!((e.timestamp, e.log_stream_name, e.event_id), (7, "s", "9"));
        let props = r#"{\"a\":[1,{\"b\":\"c\"}]}"#;
        assert_eq!(
            seen,
            vec![
                ("event_id", Member::Str("e-1")),
                ("latency_ms", Member::Json("-12")),
                ("ok", Member::Json("true")),
                ("x", Member::Json("null")),
                ("props", Member::Escaped(props)),
                ("n", Member::Json("2.5e3")),
            ]
        );
        let mut text = String::new();
        unescape_quotes(props, &mut text);
        assert_eq!(text, r#"{"a":[1,{"b":"c"}]}"#);
        assert!(is_value(&text));
        assert!(!is_value(r#"{"a":[1}]"#) && !is_value("1 2") && !is_value("{} "));
        // Anything else is left to the other paths.
        for message in [
            r#"{"a": 1}"#,
            r#" {"a":1}"#,
            r#"{"a":1} "#,
            r#"{"a":"x\"y"}"#,
            "{\"a\":\"line\nbreak\"}",
            r#"{"a":"\u00e9"}"#,
            r#"{"a":{"b":"\/"}}"#,
            r#"{"a":01}"#,
            r#"{"a":tru}"#,
            "plain text",
            "",
        ] {
            let line = serde_json::json!({
                "timestamp": 7, "message": message, "logStreamName": "s", "eventId": "9",
            })
            .to_string();
            assert_eq!(envelope_members(&line, |_, _| Some(())), None, "{message}");
        }
    }
}
