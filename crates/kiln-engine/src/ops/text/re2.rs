//! Translation of RE2 patterns to the `regex` crate's syntax (native builds, where the regex
//! crate matches patterns that `rx` has already checked as RE2).
//!
//! The two dialects share almost everything; the differences handled here are: RE2's Perl
//! classes (`\d \s \w \b` and negations) are ASCII-only while the regex crate's are Unicode;
//! RE2 has octal escapes and `\Q...\E` literal quoting, escapes any ASCII punctuation to itself
//! (the regex crate reads `\<` as an assertion), and reads a `{` that starts no valid count as a
//! literal; inside a bracket class RE2 treats `[`, `&&`, `--` and `~~` literally where the regex
//! crate reads nested classes and set operations. Every escaped or class character is therefore
//! written as `\x{..}`. Group names are dropped (captures are not reported).

use regex::{Regex, RegexBuilder};

use super::rx;
use crate::error::{OpError, OpResult};

const WORD: &str = "0-9A-Za-z_";
const DIGIT: &str = "0-9";
const SPACE: &str = r"\t\n\f\r ";

/// Compiles `pattern` (RE2 syntax) as a regex that matches only whole strings.
pub fn compile_full_match(pattern: &str) -> OpResult<Regex> {
    let translated = translate(pattern)?;
    RegexBuilder::new(&format!(r"\A(?:{translated})\z"))
        .build()
        .map_err(|e| OpError(format!("invalid regex pattern '{pattern}': {e}")))
}

/// Rewrites an RE2 pattern into equivalent regex-crate syntax.
pub fn translate(pattern: &str) -> OpResult<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let bad = |what: &str| OpError(format!("invalid regex pattern '{pattern}': {what}"));
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    // Inside a bracket class; `class_start` marks where a leading `]` is still literal.
    let mut in_class = false;
    let mut class_start = false;
    while i < chars.len() {
        let c = chars[i];
        if in_class && c == ']' && !class_start {
            in_class = false;
            out.push(']');
            i += 1;
            continue;
        }
        class_start = false;
        if c == '\\' {
            let Some(&e) = chars.get(i + 1) else { return Err(bad("trailing backslash")) };
            match e {
                'Q' if !in_class => {
                    // Literal text up to \E (or the end).
                    i += 2;
                    while i < chars.len() {
                        if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                            i += 2;
                            break;
                        }
                        push_hex(&mut out, chars[i] as u32);
                        i += 1;
                    }
                }
                'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                    let set = match e.to_ascii_lowercase() {
                        'd' => DIGIT,
                        'w' => WORD,
                        _ => SPACE,
                    };
                    let negated = e.is_ascii_uppercase();
                    if in_class && !negated {
                        out.push_str(set);
                    } else {
                        out.push_str(if negated { "[^" } else { "[" });
                        out.push_str(set);
                        out.push(']');
                    }
                    i += 2;
                }
                'b' | 'B' | 'A' | 'z' if !in_class => {
                    out.push_str(match e {
                        'b' => r"(?-u:\b)",
                        'B' => r"(?-u:\B)",
                        'A' => r"\A",
                        _ => r"\z",
                    });
                    i += 2;
                }
                'p' | 'P' => {
                    // Unicode class, copied through: \pL or \p{Name}.
                    let len = match chars.get(i + 2) {
                        Some('{') => chars[i..].iter().position(|&c| c == '}').map_or(chars.len() - i, |p| p + 1),
                        _ => 3,
                    };
                    out.extend(chars[i..(i + len).min(chars.len())].iter());
                    i += len;
                }
                _ => {
                    if in_class {
                        i = class_member(&chars, i, &mut out).ok_or_else(|| bad("invalid escape"))?;
                    } else {
                        let (code, len) = rx::escape_char(&chars[i..]).ok_or_else(|| bad("invalid escape"))?;
                        push_hex(&mut out, code);
                        i += len;
                    }
                }
            }
            continue;
        }
        if in_class {
            if c == '[' && chars.get(i + 1) == Some(&':') {
                // POSIX class [:name:] / [:^name:] (`rx` checked the name), copied through.
                if let Some(end) = chars[i + 2..].windows(2).position(|w| w == [':', ']']) {
                    out.extend(chars[i..i + end + 4].iter());
                    i += end + 4;
                    continue;
                }
            }
            i = class_member(&chars, i, &mut out).ok_or_else(|| bad("invalid class"))?;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                class_start = true;
                out.push('[');
                i += 1;
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
            }
            '{' => match rx::counted_repeat(&chars[i..]) {
                Some((_, _, len)) => {
                    out.extend(chars[i..i + len].iter());
                    i += len;
                }
                None => {
                    out.push_str(r"\{");
                    i += 1;
                }
            },
            '(' if chars.get(i + 1) == Some(&'?') => {
                let rest = &chars[i + 2..];
                if matches!(rest, ['P', '<', ..] | ['<', ..]) {
                    // Named group: a plain group (names are not used).
                    let end = rest.iter().position(|&c| c == '>').ok_or_else(|| bad("invalid group name"))?;
                    out.push('(');
                    i += 2 + end + 1;
                } else if rest.first() == Some(&')') {
                    // An empty flag group changes nothing.
                    i += 3;
                } else {
                    out.push_str("(?");
                    i += 2;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    if in_class {
        return Err(bad("missing ]"));
    }
    Ok(out)
}

/// A class member at `chars[i]` — a character or escape, or a range of them — written as
/// `\x{..}` code points; returns the index after it.
fn class_member(chars: &[char], i: usize, out: &mut String) -> Option<usize> {
    let one = |i: usize| -> Option<(u32, usize)> {
        match chars.get(i)? {
            '\\' => rx::escape_char(&chars[i..]).map(|(c, len)| (c, i + len)),
            &c => Some((c as u32, i + 1)),
        }
    };
    let (lo, mut i) = one(i)?;
    push_hex(out, lo);
    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
        let (hi, next) = one(i + 1)?;
        out.push('-');
        push_hex(out, hi);
        i = next;
    }
    Some(i)
}

fn push_hex(out: &mut String, c: u32) {
    use std::fmt::Write;
    let _ = write!(out, "\\x{{{c:x}}}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(p: &str, s: &str) -> bool {
        compile_full_match(p).unwrap().is_match(s)
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert!(full(r"\w+", "abc_9"));
        assert!(!full(r"\w+", "abç"));
        assert!(full(r"\W", "ç"));
        assert!(!full(r"\d", "٣"));
        assert!(full(r"[\w.\-]+", "a.b-c"));
        assert!(full(r"[^\d]+", "ab"));
    }

    #[test]
    fn word_boundary_is_ascii() {
        assert!(full(r".*\bcom\b.*", "x.com"));
        // 'é' is not an ASCII word character, so there is a boundary between it and 'c'.
        assert!(full(r"é\bcom", "écom"));
    }

    #[test]
    fn full_match_only() {
        assert!(full("ab|abc", "abc"));
        assert!(!full("b", "abc"));
        assert!(full("", ""));
    }

    #[test]
    fn quoting_and_literal_brackets() {
        assert!(full(r"\Qa.b\E", "a.b"));
        assert!(!full(r"\Qa.b\E", "axb"));
        assert!(full(r"[a[]+", "a[a"));
        assert!(full(r"[]a]+", "]a"));
        assert!(full(r"[[:alpha:]]+", "Ab"));
        assert!(full(r"[a&&b]+", "a&b"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(compile_full_match("(").is_err());
        assert!(compile_full_match("[a").is_err());
        assert!(compile_full_match("a\\").is_err());
    }
}
