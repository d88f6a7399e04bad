//! A validating JSON scanner over text that is already UTF-8: it checks the grammar, bounds the
//! nesting, and hands the caller the spans it asks for (object keys, strings, numbers), without
//! building values and without copying. The Greenhouse mapping drives it in one pass.
//!
//! It accepts exactly what `serde_json::from_str::<serde_json::Value>` accepts at the same depth:
//! RFC 8259 grammar, no lone surrogate in a `\u` escape, no number whose magnitude overflows an
//! f64 (`1e400`). The rare numbers that come near that bound, and the decoding of strings that
//! hold escapes, are handed to serde_json itself, so the two agree by construction there; the
//! differential tests in `greenhouse` check the rest against serde_json.
//!
//! Why not a crate: serde_json's own skip (`IgnoredAny`) accepts lone surrogates and `1e400`, its
//! validating paths build every string and float, and the SIMD parsers were no faster on
//! Greenhouse-sized bodies in a portable build (README, performance).

use std::borrow::Cow;

/// Why the scanner stopped, kept in the scanner (see [`Scanner::error`]) so that the hot paths
/// return a zero-sized error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    /// Not JSON: what was expected, and the byte offset where it was not found.
    Syntax { what: &'static str, at: usize },
    /// Nested deeper than the scanner's limit.
    TooDeep,
}

/// The scanner stopped; [`Scanner::error`] says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fail;

pub type Result<T> = std::result::Result<T, Fail>;

/// A string as it appears in the text: `quoted` includes the quotes, escapes intact.
#[derive(Debug, Clone, Copy)]
pub struct Str<'a> {
    pub quoted: &'a str,
    pub escaped: bool,
}

impl<'a> Str<'a> {
    /// The text between the quotes, escapes not decoded.
    pub fn inner(&self) -> &'a str {
        &self.quoted[1..self.quoted.len() - 1]
    }

    /// The decoded value. Borrowed when the string has no escapes (the common case).
    pub fn decode(&self) -> Result<Cow<'a, str>> {
        if !self.escaped {
            return Ok(Cow::Borrowed(self.inner()));
        }
        // The scanner validated the string; decoding it cannot fail.
        serde_json::from_str::<String>(self.quoted).map(Cow::Owned).map_err(|_| Fail)
    }

    /// Whether the decoded value is `s`, without decoding when there is nothing to decode.
    pub fn is(&self, s: &str) -> bool {
        if self.escaped { self.decode().is_ok_and(|d| d == s) } else { self.inner() == s }
    }
}

pub struct Scanner<'a> {
    text: &'a str,
    i: usize,
    max_depth: usize,
    error: Option<ScanError>,
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Marks (high bit of the byte) the first byte of `w` that is `"`, `\` or a control character;
/// marks above the first may be spurious (borrows), so only the lowest mark is meaningful.
#[inline(always)]
fn specials(w: u64) -> u64 {
    let quote = w ^ (ONES * b'"' as u64);
    let backslash = w ^ (ONES * b'\\' as u64);
    let zero = |v: u64| v.wrapping_sub(ONES) & !v;
    (zero(quote) | zero(backslash) | w.wrapping_sub(ONES * 0x20) & !w) & HIGHS
}

/// The 8 bytes of `b` from `i` as one word, when there are 8. The word-at-a-time loops read
/// through it; where it gives none, their byte loops do the same work, one byte at a time.
#[inline(always)]
fn word_at(b: &[u8], i: usize) -> Option<u64> {
    b.get(i..)?.first_chunk::<8>().map(|w| u64::from_le_bytes(*w))
}

#[inline(always)]
fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

#[inline(always)]
fn hex(b: u8) -> Option<u16> {
    match b {
        b'0'..=b'9' => Some((b - b'0') as u16),
        b'a'..=b'f' => Some((b - b'a' + 10) as u16),
        b'A'..=b'F' => Some((b - b'A' + 10) as u16),
        _ => None,
    }
}

impl<'a> Scanner<'a> {
    /// A scanner over `text` that refuses containers nested deeper than `max_depth`.
    pub fn new(text: &'a str, max_depth: usize) -> Self {
        Scanner { text, i: 0, max_depth, error: None }
    }

    #[inline(always)]
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    pub fn offset(&self) -> usize {
        self.i
    }

    /// Goes back (or on) to `offset`, to read again what was scanned there.
    pub fn seek(&mut self, offset: usize) {
        self.i = offset.min(self.bytes().len());
    }

    /// Why the scanner stopped, after a [`Fail`].
    pub fn error(&self) -> ScanError {
        self.error.clone().unwrap_or(ScanError::Syntax { what: "valid JSON", at: self.i })
    }

    #[cold]
    #[inline(never)]
    fn fail<T>(&mut self, what: &'static str) -> Result<T> {
        self.error = Some(ScanError::Syntax { what, at: self.i });
        Err(Fail)
    }

    #[inline(always)]
    fn at(&self) -> Option<u8> {
        self.bytes().get(self.i).copied()
    }

    /// Skips whitespace. Between tokens there is usually none (compact JSON) or a newline and
    /// an indentation (pretty-printed, as Greenhouse's bodies are): runs go 8 bytes at a time.
    #[inline(always)]
    pub fn ws(&mut self) {
        if self.at().is_some_and(is_ws) {
            self.ws_run();
        }
    }

    fn ws_run(&mut self) {
        const SPACES: u64 = ONES * b' ' as u64;
        let b = self.bytes();
        let mut i = self.i;
        loop {
            // Spaces 8 at a time: the lowest byte that differs is the first that is not one.
            while let Some(w) = word_at(b, i) {
                let other = w ^ SPACES;
                if other != 0 {
                    i += (other.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(&c) if is_ws(c) => i += 1,
                _ => break,
            }
        }
        self.i = i;
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.at()
    }

    /// After the document: only whitespace may follow.
    pub fn end(&mut self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.fail("the end of the document"),
        }
    }

    /// Any value, validated and skipped. `depth` is the number of containers around it.
    pub fn skip(&mut self, depth: usize) -> Result<()> {
        match self.peek() {
            Some(b'"') => self.string_here().map(drop),
            Some(b'{') => self.object(depth, |s, _, inner| s.skip(inner)),
            Some(b'[') => self.array(depth, |s, inner| s.skip(inner)),
            Some(b'-' | b'0'..=b'9') => self.number_here().map(drop),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            _ => self.fail("a value"),
        }
    }

    /// After a member or element: `,` (false: more follow) or the closing bracket (true).
    #[inline(always)]
    fn close(&mut self, bracket: u8) -> Result<bool> {
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                Ok(false)
            }
            Some(c) if c == bracket => {
                self.i += 1;
                Ok(true)
            }
            _ if bracket == b'}' => self.fail("`,` or `}`"),
            _ => self.fail("`,` or `]`"),
        }
    }

    /// A member's key and its colon.
    #[inline(always)]
    fn key(&mut self) -> Result<Str<'a>> {
        if self.peek() != Some(b'"') {
            return self.fail("a string key");
        }
        let key = self.string_here()?;
        if self.peek() != Some(b':') {
            return self.fail("`:`");
        }
        self.i += 1;
        Ok(key)
    }

    fn literal(&mut self, word: &'static str) -> Result<()> {
        if self.bytes()[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(())
        } else {
            self.fail(word)
        }
    }

    /// At an opening bracket: consumes it and answers the depth inside.
    #[inline(always)]
    fn enter(&mut self, depth: usize) -> Result<usize> {
        if depth >= self.max_depth {
            self.error = Some(ScanError::TooDeep);
            return Err(Fail);
        }
        self.i += 1;
        Ok(depth + 1)
    }

    /// An object (the next value must be one), calling `member` at each value with its key and
    /// the depth of the value's surroundings; `member` must consume the value.
    #[inline]
    pub fn object(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, Str<'a>, usize) -> Result<()>,
    ) -> Result<()> {
        self.container(b'{', b'}', depth, |s, inner| {
            let key = s.key()?;
            member(s, key, inner)
        })
    }

    /// An array (the next value must be one), calling `element` at each element.
    #[inline]
    pub fn array(&mut self, depth: usize, element: impl FnMut(&mut Self, usize) -> Result<()>) -> Result<()> {
        self.container(b'[', b']', depth, element)
    }

    /// An object or an array between `open` and `close`, calling `item` at each member or
    /// element with the depth inside.
    #[inline(always)]
    fn container(
        &mut self,
        open: u8,
        close: u8,
        depth: usize,
        mut item: impl FnMut(&mut Self, usize) -> Result<()>,
    ) -> Result<()> {
        if self.peek() != Some(open) {
            return self.fail(if open == b'{' { "`{`" } else { "`[`" });
        }
        let inner = self.enter(depth)?;
        if self.peek() == Some(close) {
            self.i += 1;
            return Ok(());
        }
        loop {
            item(self, inner)?;
            if self.close(close)? {
                return Ok(());
            }
        }
    }

    /// A string (the next value must be one), validated: no control characters, valid escapes,
    /// surrogates only in pairs.
    pub fn string(&mut self) -> Result<Str<'a>> {
        if self.peek() != Some(b'"') {
            return self.fail("a string");
        }
        self.string_here()
    }

    /// The string whose opening quote is at `self.i`.
    #[inline(always)]
    fn string_here(&mut self) -> Result<Str<'a>> {
        let start = self.i;
        let b = self.bytes();
        let mut i = start + 1;
        let mut escaped = false;
        loop {
            while let Some(w) = word_at(b, i) {
                let m = specials(w);
                if m != 0 {
                    i += (m.trailing_zeros() / 8) as usize;
                    break;
                }
                i += 8;
            }
            match b.get(i) {
                Some(b'"') => {
                    self.i = i + 1;
                    return Ok(Str { quoted: &self.text[start..i + 1], escaped });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i = i;
                    i = self.escape()?;
                }
                Some(c) if *c < 0x20 => {
                    self.i = i;
                    return self.fail("no control character in a string");
                }
                Some(_) => i += 1,
                None => {
                    self.i = i;
                    return self.fail("the end of the string");
                }
            }
        }
    }

    /// The escape at `self.i` (a backslash); returns the offset after it.
    fn escape(&mut self) -> Result<usize> {
        let i = self.i;
        match self.bytes().get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let unit = self.hex4(i + 2)?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.bytes().get(i + 6) != Some(&b'\\') || self.bytes().get(i + 7) != Some(&b'u') {
                            self.i = i + 6;
                            return self.fail("the low surrogate of a pair");
                        }
                        match self.hex4(i + 8)? {
                            0xDC00..=0xDFFF => Ok(i + 12),
                            _ => {
                                self.i = i + 6;
                                self.fail("the low surrogate of a pair")
                            }
                        }
                    }
                    0xDC00..=0xDFFF => self.fail("no lone low surrogate"),
                    _ => Ok(i + 6),
                }
            }
            _ => self.fail("a valid escape"),
        }
    }

    fn hex4(&mut self, at: usize) -> Result<u16> {
        let mut v = 0u16;
        for k in 0..4 {
            match self.bytes().get(at + k).copied().and_then(hex) {
                Some(d) => v = v << 4 | d,
                None => {
                    self.i = at + k;
                    return self.fail("four hex digits");
                }
            }
        }
        Ok(v)
    }

    /// A number (the next value must be one), validated; returns its exact text.
    pub fn number(&mut self) -> Result<&'a str> {
        self.ws();
        self.number_here()
    }

    fn number_here(&mut self) -> Result<&'a str> {
        let b = self.bytes();
        let start = self.i;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i - from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        let int_digits = match b.get(i) {
            Some(b'0') => {
                i += 1;
                1
            }
            Some(b'1'..=b'9') => digits(&mut i),
            _ => {
                self.i = i;
                return self.fail("a digit");
            }
        };
        if b.get(i) == Some(&b'.') {
            i += 1;
            if digits(&mut i) == 0 {
                self.i = i;
                return self.fail("a digit after `.`");
            }
        }
        let mut exponent: &[u8] = &[];
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let negative = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let from = i;
            if digits(&mut i) == 0 {
                self.i = i;
                return self.fail("a digit in the exponent");
            }
            if !negative {
                exponent = &b[from..i];
            }
        }
        self.i = i;
        let text = &self.text[start..i];
        if may_overflow_f64(int_digits, exponent) && serde_json::from_str::<serde_json::Value>(text).is_err() {
            self.i = start;
            return self.fail("a number within the range of an f64");
        }
        Ok(text)
    }
}

/// May a number of `int_digits` integer digits and the exponent `exponent` (its digits; none
/// when it is negative or absent) be beyond an f64? Below 10^300 none is; nearer the bound,
/// serde_json decides, as it would. Saying "maybe" more often than needed only costs time.
#[inline(always)]
fn may_overflow_f64(int_digits: usize, exponent: &[u8]) -> bool {
    let exponent = exponent.iter().fold(0usize, |e, d| e.saturating_mul(10).saturating_add((d - b'0') as usize));
    int_digits.saturating_add(exponent) > 300
}

/// Line and column (1-based, in characters) of byte `at` in `text`, for error messages.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = &text[..text.floor_char_boundary(at.min(text.len()))];
    let line = before.bytes().filter(|&c| c == b'\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(text: &str) -> std::result::Result<(), ScanError> {
        let mut s = Scanner::new(text, 128);
        s.skip(0).and_then(|()| s.end()).map_err(|Fail| s.error())
    }

    #[test]
    fn specials_finds_the_first_special_byte() {
        for (word, first) in [
            (*b"abcdefgh", None),
            (*b"abc\"efgh", Some(3)),
            (*b"\\bcdefgh", Some(0)),
            (*b"abcdefg\x1f", Some(7)),
            (*b"\x00\x01\"\\\x7f\x80\xff ", Some(0)),
            (*b"\xc3\xa9\xe2\x82\xac\x7f\x20!", None),
            (*b"\x21\x22\x23\x5b\x5c\x5d\x1f\x20", Some(1)),
        ] {
            let m = specials(u64::from_le_bytes(word));
            assert_eq!((m != 0).then(|| (m.trailing_zeros() / 8) as usize), first, "{word:?}");
        }
    }

    #[test]
    fn whitespace_runs_end_at_the_first_other_byte() {
        for run in ["", " ", "\n", " \t\r\n", "        ", "         ", "\n            ", "\n\n        \t       \r"] {
            for after in ["x", "\u{b}", "\u{c}", "\u{a0}", "!", ""] {
                let text = format!("{run}{after}");
                let mut s = Scanner::new(&text, 1);
                s.ws();
                assert_eq!(s.offset(), run.len(), "{text:?}");
            }
        }
        let text = format!("{}[{}1{}]", " ".repeat(17), "\n\t\r ".repeat(9), " \n".repeat(5));
        assert_eq!(valid(&text), Ok(()));
    }

    #[test]
    fn grammar() {
        for ok in [
            "0",
            "-0",
            "1.5",
            "-1.5e-3",
            "1E+2",
            "123456789012345678901234567890",
            "1e308",
            "1e-400",
            "\"\"",
            "\"a\\u00e9\\ud83d\\ude00\\/\\b\\f\\n\\r\\t\\\"\\\\\"",
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ true , false , null ] } ] ",
            "\"é€😀\"",
            "\"\\uD83D\\uDE00\\uD7FF\\uE000\"",
            "\"\\uD83d\\udE00\"",
            // Within the last 8 bytes the byte loop reads: a space and DEL are no control characters.
            "\" \"",
            "[\"a b\u{7f}\"]",
        ] {
            assert_eq!(valid(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "01",
            "1.",
            ".5",
            "-",
            "+1",
            "1e",
            "1e+",
            "0x1",
            "tru",
            "nul",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{1:2}",
            "[1 2]",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud83d\"",
            "\"\\ud83d\\u0041\"",
            "\"\\ude00\"",
            "\"\\uD83D\"",
            "\"\\uD83D\\nDE00\"",
            "\"\\uD83D/uDE00\"",
            "\"\\uDBFF\\uD800\"",
            "\"\\uDE00\"",
            "\"\\uDFFF\"",
            "\"a\nb\"",
            "\"\t\"",
            "1e400",
            "-1e400",
            "[1]]",
            "{} {}",
            "NaN",
            "Infinity",
        ] {
            assert!(valid(bad).is_err(), "{bad}");
            assert!(serde_json::from_str::<serde_json::Value>(bad).is_err(), "{bad}");
        }
        let big = format!("1{}", "0".repeat(400));
        assert!(valid(&big).is_err());
        assert_eq!(valid(&format!("0.{}1e400", "0".repeat(200))), Ok(()));
    }

    #[test]
    fn a_container_where_another_value_is_says_which_bracket_was_expected() {
        let mut s = Scanner::new("[]", 8);
        assert_eq!(s.object(0, |_, _, _| Ok(())), Err(Fail));
        assert_eq!(s.error(), ScanError::Syntax { what: "`{`", at: 0 });
        let mut s = Scanner::new("{}", 8);
        assert_eq!(s.array(0, |_, _| Ok(())), Err(Fail));
        assert_eq!(s.error(), ScanError::Syntax { what: "`[`", at: 0 });
    }

    #[test]
    fn errors_say_what_was_expected_and_where() {
        for (text, what, at) in [
            ("[1 2]", "`,` or `]`", 3),
            ("{\"a\":1 \"b\":2}", "`,` or `}`", 7),
            ("{\"a\" 1}", "`:`", 5),
            ("{1:2}", "a string key", 1),
            ("\"\\uD83D\"", "the low surrogate of a pair", 7),
            ("[\"\\uD83D\\nDE00\"]", "the low surrogate of a pair", 8),
            ("\"\\uD83D\\u0041\"", "the low surrogate of a pair", 7),
            ("\"\\u12\"", "four hex digits", 5),
            ("[1e400]", "a number within the range of an f64", 1),
        ] {
            assert_eq!(valid(text), Err(ScanError::Syntax { what, at }), "{text}");
        }
    }

    #[test]
    fn depth_is_counted_in_containers() {
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let mut s = Scanner::new("", 3);
        assert_eq!(s.skip(0), Err(Fail));
        assert_eq!(s.error(), ScanError::Syntax { what: "a value", at: 0 });
        for (n, ok) in [(3, true), (4, false)] {
            let text = nest(n);
            let mut s = Scanner::new(&text, 3);
            assert_eq!(s.skip(0).is_ok(), ok, "{n}");
            if !ok {
                assert_eq!(s.error(), ScanError::TooDeep);
            }
        }
    }

    #[test]
    fn positions_for_messages() {
        assert_eq!(line_column("ab\ncdé\nf", 7), (2, 4));
        assert_eq!(line_column("x", 0), (1, 1));
    }
}
