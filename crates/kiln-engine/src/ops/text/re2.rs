//! Translation of RE2 patterns to the `regex` crate's syntax.
//!
//! The two dialects share almost everything; the differences handled here are: RE2's Perl
//! classes (`\d \s \w \b` and negations) are ASCII-only while the regex crate's are Unicode;
//! RE2 has `\Q...\E` literal quoting; inside a bracket class RE2 treats `[`, `&&`, `--` and `~~`
//! literally where the regex crate reads nested classes and set operations.

use crate::error::{OpError, OpResult};

#[cfg(not(target_arch = "wasm32"))]
use regex as rx;
#[cfg(target_arch = "wasm32")]
use regex_lite as rx;

pub use rx::Regex;

const WORD: &str = "0-9A-Za-z_";
const DIGIT: &str = "0-9";
const SPACE: &str = r"\t\n\f\r ";

/// Compiles `pattern` (RE2 syntax) as a regex that matches only whole strings.
pub fn compile_full_match(pattern: &str) -> OpResult<Regex> {
    let translated = translate(pattern)?;
    rx::RegexBuilder::new(&format!(r"\A(?:{translated})\z"))
        .build()
        .map_err(|e| OpError(format!("invalid regex pattern '{pattern}': {e}")))
}

/// Rewrites an RE2 pattern into equivalent regex-crate syntax.
pub fn translate(pattern: &str) -> OpResult<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    // Inside a bracket class; `class_start` marks where a leading `]` is still literal.
    let mut in_class = false;
    let mut class_start = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&e) = chars.get(i + 1) else {
                return Err(OpError(format!("invalid regex pattern '{pattern}': trailing backslash")));
            };
            i += 2;
            class_start = false;
            match e {
                'Q' => {
                    // Literal text up to \E (or the end).
                    let mut lit = String::new();
                    while i < chars.len() {
                        if chars[i] == '\\' && chars.get(i + 1) == Some(&'E') {
                            i += 2;
                            break;
                        }
                        lit.push(chars[i]);
                        i += 1;
                    }
                    if in_class {
                        for ch in lit.chars() {
                            push_class_literal(&mut out, ch);
                        }
                    } else {
                        out.push_str(&rx::escape(&lit));
                    }
                }
                'E' => {}
                'd' | 'D' | 'w' | 'W' | 's' | 'S' => {
                    let set = match e.to_ascii_lowercase() {
                        'd' => DIGIT,
                        'w' => WORD,
                        _ => SPACE,
                    };
                    let negated = e.is_ascii_uppercase();
                    match (in_class, negated) {
                        (true, false) => out.push_str(set),
                        _ => {
                            out.push('[');
                            if negated {
                                out.push('^');
                            }
                            out.push_str(set);
                            out.push(']');
                        }
                    }
                }
                'b' | 'B' if !in_class => {
                    out.push_str(if e == 'b' { r"(?-u:\b)" } else { r"(?-u:\B)" });
                }
                'C' => {
                    return Err(OpError(format!(
                        "regex pattern '{pattern}' uses \\C (any byte), which is not supported"
                    )))
                }
                _ => {
                    out.push('\\');
                    out.push(e);
                }
            }
            continue;
        }
        if in_class {
            match c {
                ']' if !class_start => {
                    in_class = false;
                    out.push(']');
                    i += 1;
                }
                '[' if chars.get(i + 1) == Some(&':') => {
                    // POSIX class [:name:] / [:^name:], copied through.
                    let rest: String = chars[i..].iter().collect();
                    match rest.find(":]") {
                        Some(end) if end >= 2 => {
                            out.push_str(&rest[..end + 2]);
                            i += rest[..end + 2].chars().count();
                        }
                        _ => {
                            out.push_str(r"\[");
                            i += 1;
                        }
                    }
                }
                '-' if chars.get(i + 1) == Some(&'-') => {
                    // RE2 reads "--" as a range ending/starting at '-', never as set difference.
                    out.push_str(r"\-");
                    i += 1;
                }
                _ => {
                    push_class_literal(&mut out, c);
                    i += 1;
                }
            }
            class_start = false;
            continue;
        }
        if c == '[' {
            in_class = true;
            out.push('[');
            i += 1;
            if chars.get(i) == Some(&'^') {
                out.push('^');
                i += 1;
            }
            if chars.get(i) == Some(&']') {
                out.push_str(r"\]");
                i += 1;
            }
            class_start = false;
            continue;
        }
        out.push(c);
        i += 1;
    }
    if in_class {
        return Err(OpError(format!("invalid regex pattern '{pattern}': missing ]")));
    }
    Ok(out)
}

/// A character that is literal inside a bracket class, escaped where the regex crate would
/// otherwise read nesting or set operators.
fn push_class_literal(out: &mut String, c: char) {
    match c {
        '[' | '&' | '~' => {
            out.push('\\');
            out.push(c);
        }
        '\\' | ']' | '^' => {
            out.push('\\');
            out.push(c);
        }
        _ => out.push(c),
    }
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
