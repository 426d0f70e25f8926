//! com.microsoft Tokenizer: splits each string of a [C] or [N, C] tensor into tokens, by
//! separator regexes, by a token regex or into characters, and pads the rows to equal length.
//!
//! Regexes use RE2 syntax with leftmost-longest matching (as onnxruntime configures RE2).
//! Output shape is the input shape plus a last axis of `max_tokens` (+2 with start/end marks,
//! "\u{2}" and "\u{3}"); rows are `[start] tokens [end] pad...`. When no row has any token the
//! last axis is 0, and an empty input gives [N, 0] (rank 2) or [0] (rank 1).

use kiln_tensor::{DType, Tensor, Value, ValueType};
#[cfg(not(target_arch = "wasm32"))]
use regex_automata::{meta, Anchored, Input, MatchKind};

#[cfg(not(target_arch = "wasm32"))]
use super::re2;
use super::rx;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::{bail, ensure};

const START_TEXT: &str = "\u{2}";
const END_TEXT: &str = "\u{3}";

/// A regex searched with leftmost-longest semantics: the earliest match start, and among the
/// matches starting there the longest. Natively the regex crate's automata match, for patterns
/// that pass `rx`'s RE2 checks (so every platform accepts the same patterns); in WebAssembly
/// builds `rx` itself.
pub(super) enum LongestRegex {
    /// `first` finds the leftmost match start; `all`, anchored there, the longest match end.
    #[cfg(not(target_arch = "wasm32"))]
    Crate { first: meta::Regex, all: meta::Regex },
    Own(rx::Regex),
}

impl LongestRegex {
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn new(pattern: &str, what: &str) -> OpResult<LongestRegex> {
        rx::check(pattern).map_err(|e| in_context(e, what))?;
        let translated = re2::translate(pattern)?;
        let err = |e: meta::BuildError| OpError(format!("Tokenizer {what} '{pattern}' is not a valid regex: {e}"));
        let first = meta::Regex::new(&translated).map_err(err)?;
        let all = meta::Regex::builder()
            .configure(meta::Regex::config().match_kind(MatchKind::All))
            .build(&translated)
            .map_err(err)?;
        Ok(LongestRegex::Crate { first, all })
    }

    #[cfg(target_arch = "wasm32")]
    pub(super) fn new(pattern: &str, what: &str) -> OpResult<LongestRegex> {
        LongestRegex::own(pattern, what)
    }

    /// Matching with `rx`, as WebAssembly builds do.
    #[cfg_attr(not(any(test, target_arch = "wasm32")), allow(dead_code))]
    pub(super) fn own(pattern: &str, what: &str) -> OpResult<LongestRegex> {
        rx::Regex::new(pattern).map(LongestRegex::Own).map_err(|e| in_context(e, what))
    }

    /// The leftmost-longest match in `hay[start..]` (with `hay` as context), as a byte range.
    pub(super) fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            LongestRegex::Crate { first, all } => {
                if start > hay.len() {
                    return None;
                }
                let m = first.find(Input::new(hay).range(start..))?;
                let end = all
                    .find(Input::new(hay).range(m.start()..).anchored(Anchored::Yes))
                    .map_or(m.end(), |l| l.end().max(m.end()));
                Some((m.start(), end))
            }
            LongestRegex::Own(re) => re.find_at(hay, start),
        }
    }
}

fn in_context(e: OpError, what: &str) -> OpError {
    OpError(format!("Tokenizer {what}: {}", e.0))
}

enum Mode {
    /// Every character is a token.
    Chars,
    /// Each separator in turn splits every token produced so far.
    Separators(Vec<LongestRegex>),
    /// Tokens are the matches of the expression.
    TokenExp(LongestRegex),
}

pub(super) struct TokenizerOp {
    mark: bool,
    pad_value: String,
    mincharnum: usize,
    mode: Mode,
}

pub(super) fn build(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let required = |name: &str| OpError(format!("Tokenizer requires the '{name}' attribute"));
    let mark = n.attr_int("mark")?.ok_or_else(|| required("mark"))? != 0;
    let pad_value = n.attr_string("pad_value")?.ok_or_else(|| required("pad_value"))?;
    let mincharnum = n.attr_int("mincharnum")?.ok_or_else(|| required("mincharnum"))?;
    ensure!(mincharnum > 0, "Tokenizer mincharnum must be positive, got {mincharnum}");
    let mincharnum = usize::try_from(mincharnum).map_err(|_| OpError(format!("Tokenizer mincharnum {mincharnum} is too large")))?;
    let mode = match n.attr_strings("separators")? {
        Some(seps) => {
            ensure!(!seps.is_empty(), "Tokenizer separators must not be an empty list");
            if seps.len() == 1 && seps[0].is_empty() {
                Mode::Chars
            } else {
                Mode::Separators(seps.iter().map(|s| LongestRegex::new(s, "separator")).collect::<OpResult<_>>()?)
            }
        }
        None => {
            let Some(exp) = n.attr_string("tokenexp")? else {
                bail!("Tokenizer needs either the 'separators' or the 'tokenexp' attribute");
            };
            ensure!(!exp.is_empty(), "Tokenizer tokenexp must not be empty");
            if exp == "." {
                Mode::Chars
            } else {
                Mode::TokenExp(LongestRegex::new(&exp, "tokenexp")?)
            }
        }
    };
    if matches!(mode, Mode::Chars) {
        ensure!(mincharnum < 2, "Tokenizer mincharnum {mincharnum} is too big for character tokenization (must be 1)");
    }
    Ok(Box::new(TokenizerOp { mark, pad_value, mincharnum, mode }))
}

fn char_count(s: &str) -> usize {
    s.chars().count()
}

/// Byte length of the character starting at `i` (1 past the end).
fn char_len_at(s: &str, i: usize) -> usize {
    s.get(i..).and_then(|t| t.chars().next()).map_or(1, char::len_utf8)
}

impl TokenizerOp {
    /// Splits `text` on the matches of `sep`, keeping pieces of at least `mincharnum` characters.
    /// An empty match also consumes the character it stands before.
    fn split<'a>(&self, sep: &LongestRegex, text: &'a str, out: &mut Vec<&'a str>) {
        let mut start = 0;
        while start <= text.len() {
            match sep.find_at(text, start) {
                Some((ms, me)) => {
                    if let Some(piece) = text.get(start..ms) {
                        if char_count(piece) >= self.mincharnum {
                            out.push(piece);
                        }
                    }
                    if me > ms {
                        start = me;
                    } else if ms >= text.len() {
                        break;
                    } else {
                        start = ms + char_len_at(text, ms);
                    }
                }
                None => {
                    if let Some(piece) = text.get(start..) {
                        if char_count(piece) >= self.mincharnum {
                            out.push(piece);
                        }
                    }
                    break;
                }
            }
        }
    }

    /// The matches of `exp` in `text` of at least `mincharnum` characters; after a shorter match
    /// the search resumes one character past its start.
    fn matches<'a>(&self, exp: &LongestRegex, text: &'a str, out: &mut Vec<&'a str>) {
        let mut start = 0;
        while let Some((ms, me)) = exp.find_at(text, start) {
            let token = text.get(ms..me).unwrap_or("");
            if char_count(token) >= self.mincharnum {
                out.push(token);
                start = me.max(ms + 1);
            } else if ms >= text.len() {
                break;
            } else {
                start = ms + char_len_at(text, ms);
            }
        }
    }

    fn tokenize<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut row = Vec::new();
        match &self.mode {
            Mode::Chars => {
                row.extend(text.char_indices().map(|(i, c)| text.get(i..i + c.len_utf8()).unwrap_or("")));
            }
            Mode::TokenExp(exp) => self.matches(exp, text, &mut row),
            Mode::Separators(seps) => {
                row.push(text);
                let mut next = Vec::new();
                for sep in seps {
                    next.clear();
                    for piece in &row {
                        self.split(sep, piece, &mut next);
                    }
                    std::mem::swap(&mut row, &mut next);
                }
            }
        }
        row
    }
}

impl Op for TokenizerOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let x = inputs.tensor(0)?;
        let Ok(texts) = x.as_slice::<String>() else {
            bail!("Tokenizer input must be a string tensor, got {}", x.dtype());
        };
        let dims = x.shape().to_vec();
        ensure!(
            dims.len() == 1 || dims.len() == 2,
            "Tokenizer input must have shape [C] or [N, C], got {dims:?}"
        );
        if texts.is_empty() {
            let shape = if dims.len() == 2 { vec![dims[0], 0] } else { vec![0] };
            return Ok(vec![Value::Tensor(Tensor::from_vec::<String>(shape, Vec::new())?)]);
        }
        let rows: Vec<Vec<&str>> = texts.iter().map(|t| self.tokenize(t)).collect();
        let max_tokens = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut shape = dims;
        if max_tokens == 0 {
            shape.push(0);
            return Ok(vec![Value::Tensor(Tensor::from_vec::<String>(shape, Vec::new())?)]);
        }
        let width = max_tokens + if self.mark { 2 } else { 0 };
        shape.push(width);
        let mut out: Vec<String> = Vec::with_capacity(rows.len() * width);
        for row in &rows {
            if self.mark {
                out.push(START_TEXT.to_string());
            }
            out.extend(row.iter().map(|t| t.to_string()));
            if self.mark {
                out.push(END_TEXT.to_string());
            }
            out.extend(std::iter::repeat_n(&self.pad_value, max_tokens - row.len()).cloned());
        }
        Ok(vec![Value::Tensor(Tensor::from_vec(shape, out)?)])
    }

    fn infer(&self, _inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        // The output rank depends on whether the input is empty, so only the type is stated.
        Some(vec![ValueType::tensor(DType::String, None)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Attrs {
        mark: bool,
        mincharnum: usize,
        separators: Option<Vec<&'static str>>,
        tokenexp: Option<&'static str>,
    }

    /// The op with each matcher: the platform's and `rx` (what WebAssembly builds run).
    struct Ops([TokenizerOp; 2]);

    fn op(a: Attrs) -> Ops {
        let build = |own: bool| {
            let re = |p: &str, what: &str| {
                if own { LongestRegex::own(p, what) } else { LongestRegex::new(p, what) }.unwrap()
            };
            let mode = match (&a.separators, a.tokenexp) {
                (Some(s), _) if s == &[""] => Mode::Chars,
                (Some(s), _) => Mode::Separators(s.iter().map(|p| re(p, "separator")).collect()),
                (None, Some(".")) => Mode::Chars,
                (None, Some(e)) => Mode::TokenExp(re(e, "tokenexp")),
                (None, None) => unreachable!(),
            };
            TokenizerOp { mark: a.mark, pad_value: "#".into(), mincharnum: a.mincharnum, mode }
        };
        Ops([build(false), build(true)])
    }

    fn exp(e: &'static str) -> Ops {
        op(Attrs { mark: false, mincharnum: 1, separators: None, tokenexp: Some(e) })
    }

    fn seps(s: &[&'static str], mincharnum: usize) -> Ops {
        op(Attrs { mark: false, mincharnum, separators: Some(s.to_vec()), tokenexp: None })
    }

    /// Runs both matchers' ops, which must agree.
    fn run(ops: &Ops, shape: Vec<usize>, texts: &[&str]) -> (Vec<usize>, Vec<String>) {
        let t = Tensor::from_vec(shape, texts.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let v = Value::Tensor(t);
        let vals = [Some(&v)];
        let [a, b] = [&ops.0[0], &ops.0[1]].map(|op| {
            let out = op.run(&Inputs::new(&vals)).unwrap();
            let t = out[0].as_tensor().unwrap();
            (t.shape().to_vec(), t.as_slice::<String>().unwrap().to_vec())
        });
        assert_eq!(a, b, "matchers disagree on {texts:?}");
        a
    }

    #[test]
    fn token_expression_with_marks_and_padding() {
        let o = op(Attrs { mark: true, mincharnum: 1, separators: None, tokenexp: Some("[a-z]+") });
        let (shape, v) = run(&o, vec![2, 2], &["ab cd e", "x", "", "f"]);
        assert_eq!(shape, vec![2, 2, 5]);
        let want = [
            "\u{2}", "ab", "cd", "e", "\u{3}", //
            "\u{2}", "x", "\u{3}", "#", "#", //
            "\u{2}", "\u{3}", "#", "#", "#", //
            "\u{2}", "f", "\u{3}", "#", "#",
        ];
        assert_eq!(v, want);
    }

    #[test]
    fn rank_one_input_gives_c_by_tokens() {
        let (shape, v) = run(&exp("[a-z]+"), vec![2], &["ab cd", "x"]);
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(v, ["ab", "cd", "x", "#"]);
    }

    #[test]
    fn matching_is_leftmost_longest() {
        // Leftmost-first would take "a" out of "ab" for a|ab.
        assert_eq!(run(&exp("a|ab"), vec![1], &["abab cab"]).1, ["ab", "ab", "ab"]);
        assert_eq!(run(&exp("(?i)AB|abc"), vec![1], &["xABCy"]).1, ["ABC"]);
        assert_eq!(run(&seps(&["a|ab"], 1), vec![1], &["xabyaz"]).1, ["x", "y", "z"]);
    }

    #[test]
    fn short_matches_are_skipped_and_rescanned() {
        let o = op(Attrs { mark: false, mincharnum: 3, separators: None, tokenexp: Some("[a-z]+") });
        assert_eq!(run(&o, vec![1], &["ab abcd abc"]).1, ["abcd", "abc"]);
        // Empty matches produce nothing; the scan moves one character on.
        assert_eq!(run(&exp("x*"), vec![1], &["axxb"]).1, ["xx"]);
        assert_eq!(run(&exp("a*"), vec![1], &["baab"]).1, ["aa"]);
    }

    #[test]
    fn separators_apply_in_turn() {
        assert_eq!(run(&seps(&[" ", ","], 1), vec![1], &["ab, cd,e  f"]).1, ["ab", "cd", "e", "f"]);
        assert_eq!(run(&seps(&["b", " "], 1), vec![1], &["abc bd xb"]).1, ["a", "c", "d", "x"]);
        assert_eq!(run(&seps(&[" "], 2), vec![1], &["ab c def g"]).1, ["ab", "def"]);
        assert_eq!(run(&seps(&[" "], 1), vec![1], &[" ab  "]).1, ["ab"]);
        // '^' only matches at the start of each piece being split.
        assert_eq!(run(&seps(&["^a"], 1), vec![1], &["aba a"]).1, ["ba a"]);
    }

    #[test]
    fn empty_separator_matches_swallow_characters() {
        // Every position matches x* (empty), each empty match consumes the next character.
        let (shape, v) = run(&seps(&["x*"], 1), vec![1], &["axxb"]);
        assert_eq!(shape, vec![1, 0]);
        assert!(v.is_empty());
        assert_eq!(run(&seps(&["é?"], 1), vec![1], &["héllo"]).0, vec![1, 0]);
    }

    #[test]
    fn perl_classes_are_ascii() {
        assert_eq!(run(&exp(r"\w+"), vec![1], &["héllo wörld"]).1, ["h", "llo", "w", "rld"]);
        assert_eq!(run(&seps(&[r"\s"], 1), vec![1], &["ab\u{a0}cd ef"]).1, ["ab\u{a0}cd", "ef"]);
    }

    #[test]
    fn character_tokenization() {
        let o = op(Attrs { mark: true, mincharnum: 1, separators: Some(vec![""]), tokenexp: None });
        let (shape, v) = run(&o, vec![2], &["héllo", "ab"]);
        assert_eq!(shape, vec![2, 7]);
        let want = ["\u{2}", "h", "é", "l", "l", "o", "\u{3}", "\u{2}", "a", "b", "\u{3}", "#", "#", "#"];
        assert_eq!(v, want);
        assert_eq!(run(&exp("."), vec![1], &["a\nb"]).1, ["a", "\n", "b"]);
    }

    #[test]
    fn empty_results_and_inputs() {
        let o = op(Attrs { mark: true, mincharnum: 1, separators: None, tokenexp: Some("[a-z]+") });
        assert_eq!(run(&o, vec![2], &["12", "3"]), (vec![2, 0], vec![]));
        assert_eq!(run(&o, vec![0], &[]), (vec![0], vec![]));
        assert_eq!(run(&o, vec![2, 0], &[]), (vec![2, 0], vec![]));
        assert_eq!(run(&o, vec![0, 3], &[]), (vec![0, 0], vec![]));
        let c = op(Attrs { mark: true, mincharnum: 1, separators: None, tokenexp: Some(".") });
        assert_eq!(run(&c, vec![2], &["", ""]), (vec![2, 0], vec![]));
    }

    #[test]
    fn bad_inputs_are_errors() {
        for o in &exp("[a-z]+").0 {
            let t = Tensor::from_vec(vec![1, 1, 1], vec!["ab".to_string()]).unwrap();
            let v = Value::Tensor(t);
            let vals = [Some(&v)];
            assert!(o.run(&Inputs::new(&vals)).is_err());
            let f = Value::Tensor(Tensor::from_vec(vec![1], vec![1.0f32]).unwrap());
            let vals = [Some(&f)];
            assert!(o.run(&Inputs::new(&vals)).is_err());
        }
        assert!(LongestRegex::new("(", "separator").is_err());
        assert!(LongestRegex::own("(", "separator").is_err());
    }
}
