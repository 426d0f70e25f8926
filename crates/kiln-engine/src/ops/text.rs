//! String operators: StringNormalizer, StringConcat, StringSplit, RegexFullMatch, TfIdfVectorizer,
//! and com.microsoft Tokenizer.

#[cfg(not(target_arch = "wasm32"))]
mod re2;
mod rx;
mod tfidf;
mod tokenizer;

use std::collections::HashSet;

use kiln_tensor::{DType, Shape, Tensor, Value, ValueType};

use crate::bail;
use crate::error::{OpError, OpResult};
use crate::op::{Inputs, NodeInfo, Op};
use crate::ops::util::{broadcast_index_map, broadcast_shapes, broadcast_symbolic};
use crate::registry::Registry;

pub fn register(r: &mut Registry) {
    r.add("StringNormalizer", 10, build_string_normalizer);
    r.add("StringConcat", 20, |_| Ok(Box::new(StringConcatOp)));
    r.add("StringSplit", 20, build_string_split);
    r.add("RegexFullMatch", 20, build_regex_full_match);
    r.add("TfIdfVectorizer", 9, tfidf::build);
    r.add_in("com.microsoft", "Tokenizer", 1, tokenizer::build);
}

/// Input `i` as a string tensor.
fn string_input<'a>(inputs: &Inputs<'a>, i: usize, op: &str) -> OpResult<(&'a Tensor, &'a [String])> {
    let t = inputs.tensor(i)?;
    match t.as_slice::<String>() {
        Ok(s) => Ok((t, s)),
        Err(_) => bail!("{op} input {i} must be a string tensor, got {}", t.dtype()),
    }
}

/// The input type's shape if it is a string tensor (None when unknown).
fn input_shape_of<'a>(inputs: &[Option<&'a ValueType>], i: usize) -> Option<Option<&'a Shape>> {
    match inputs.get(i).copied().flatten()? {
        ValueType::Tensor { dtype: DType::String, shape } => Some(shape.as_ref()),
        _ => None,
    }
}

/// Unicode case mapping restricted to one-to-one character mappings (as `towupper`/`towlower`
/// do): characters whose full mapping expands to several characters are left as they are.
fn change_case(s: &str, upper: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if upper {
            let mut m = c.to_uppercase();
            match (m.next(), m.next()) {
                (Some(u), None) => out.push(u),
                _ => out.push(c),
            }
        } else {
            let mut m = c.to_lowercase();
            match (m.next(), m.next()) {
                (Some(l), None) => out.push(l),
                _ => out.push(c),
            }
        }
    }
    out
}

// ---------------------------------------------------------------- StringNormalizer

#[derive(Clone, Copy, PartialEq, Eq)]
enum CaseChange {
    None,
    Lower,
    Upper,
}

struct StringNormalizerOp {
    case: CaseChange,
    case_sensitive: bool,
    /// Stop words, lowercased when matching is case-insensitive.
    stopwords: HashSet<String>,
}

fn build_string_normalizer(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let case = match n.attr_string_or("case_change_action", "NONE")?.as_str() {
        "NONE" => CaseChange::None,
        "LOWER" => CaseChange::Lower,
        "UPPER" => CaseChange::Upper,
        other => bail!("StringNormalizer case_change_action must be NONE, LOWER or UPPER, got '{other}'"),
    };
    let case_sensitive = n.attr_int_or("is_case_sensitive", 0)? != 0;
    // The locale only selects case-mapping rules; Unicode's default mappings are used for all.
    let _locale = n.attr_string("locale")?;
    let stopwords = n
        .attr_strings("stopwords")?
        .unwrap_or_default()
        .into_iter()
        .map(|w| if case_sensitive { w } else { change_case(&w, false) })
        .collect();
    Ok(Box::new(StringNormalizerOp { case, case_sensitive, stopwords }))
}

impl StringNormalizerOp {
    fn is_stopword(&self, w: &str) -> bool {
        if self.stopwords.is_empty() {
            return false;
        }
        if self.case_sensitive {
            self.stopwords.contains(w)
        } else {
            self.stopwords.contains(&change_case(w, false))
        }
    }
}

impl Op for StringNormalizerOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (x, words) = string_input(inputs, 0, "StringNormalizer")?;
        let two_d = match x.shape() {
            [_] => false,
            [1, _] => true,
            s => bail!("StringNormalizer accepts [C] or [1, C] input, got shape {s:?}"),
        };
        let mut out: Vec<String> = words
            .iter()
            .filter(|w| !self.is_stopword(w))
            .map(|w| match self.case {
                CaseChange::None => w.clone(),
                CaseChange::Lower => change_case(w, false),
                CaseChange::Upper => change_case(w, true),
            })
            .collect();
        if out.is_empty() {
            out.push(String::new());
        }
        let shape = if two_d { vec![1, out.len()] } else { vec![out.len()] };
        Ok(vec![Value::Tensor(Tensor::from_vec(shape, out)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = input_shape_of(inputs, 0)?;
        let out = shape.map(|s| {
            let mut d = s.0.clone();
            if let Some(last) = d.last_mut() {
                *last = kiln_tensor::Dim::unknown();
            }
            Shape(d)
        });
        Some(vec![ValueType::tensor(DType::String, out)])
    }
}

// ---------------------------------------------------------------- StringConcat

struct StringConcatOp;

impl Op for StringConcatOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (a, av) = string_input(inputs, 0, "StringConcat")?;
        let (b, bv) = string_input(inputs, 1, "StringConcat")?;
        let shape = broadcast_shapes(a.shape(), b.shape())?;
        let join = |x: &String, y: &String| {
            let mut s = String::with_capacity(x.len() + y.len());
            s.push_str(x);
            s.push_str(y);
            s
        };
        let out: Vec<String> = if a.shape() == b.shape() {
            av.iter().zip(bv).map(|(x, y)| join(x, y)).collect()
        } else {
            let ia = broadcast_index_map(a.shape(), &shape);
            let ib = broadcast_index_map(b.shape(), &shape);
            ia.iter().zip(&ib).map(|(&i, &j)| join(&av[i], &bv[j])).collect()
        };
        Ok(vec![Value::Tensor(Tensor::from_vec(shape, out)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let a = input_shape_of(inputs, 0)?;
        let b = input_shape_of(inputs, 1)?;
        let shape = match (a, b) {
            (Some(a), Some(b)) => broadcast_symbolic(a, b),
            _ => None,
        };
        Some(vec![ValueType::tensor(DType::String, shape)])
    }
}

// ---------------------------------------------------------------- StringSplit

struct StringSplitOp {
    /// None: split on runs of whitespace.
    delimiter: Option<String>,
    /// None: no limit.
    maxsplit: Option<usize>,
}

fn build_string_split(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let delimiter = n.attr_string("delimiter")?.filter(|d| !d.is_empty());
    let maxsplit = match n.attr_int("maxsplit")? {
        None => None,
        Some(m) if m < 0 => None,
        Some(m) => Some(usize::try_from(m).map_err(|_| OpError(format!("maxsplit {m} is too large")))?),
    };
    Ok(Box::new(StringSplitOp { delimiter, maxsplit }))
}

/// Whitespace as Python's `str.split()` sees it.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Splits on runs of whitespace, dropping leading/trailing whitespace; after `maxsplit` splits
/// the rest (without its leading and trailing whitespace) is one piece.
fn split_whitespace<'s>(s: &'s str, maxsplit: Option<usize>, out: &mut Vec<&'s str>) {
    let mut rest = s.trim_start_matches(is_py_space);
    let mut splits = 0usize;
    while !rest.is_empty() {
        if maxsplit.is_some_and(|m| splits >= m) {
            out.push(rest.trim_end_matches(is_py_space));
            return;
        }
        let end = rest.find(is_py_space).unwrap_or(rest.len());
        out.push(&rest[..end]);
        splits += 1;
        rest = rest[end..].trim_start_matches(is_py_space);
    }
}

impl StringSplitOp {
    fn split<'s>(&self, s: &'s str, out: &mut Vec<&'s str>) {
        match &self.delimiter {
            None => split_whitespace(s, self.maxsplit, out),
            Some(d) => match self.maxsplit {
                None => out.extend(s.split(d.as_str())),
                Some(m) => out.extend(s.splitn(m.saturating_add(1), d.as_str())),
            },
        }
    }
}

impl Op for StringSplitOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (x, strs) = string_input(inputs, 0, "StringSplit")?;
        let mut pieces: Vec<&str> = Vec::new();
        let mut bounds: Vec<usize> = Vec::with_capacity(strs.len() + 1);
        bounds.push(0);
        for s in strs {
            self.split(s, &mut pieces);
            bounds.push(pieces.len());
        }
        let counts: Vec<i64> = bounds.windows(2).map(|w| (w[1] - w[0]) as i64).collect();
        let width = bounds.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
        let mut shape = x.shape().to_vec();
        shape.push(width);
        let n = kiln_tensor::checked_numel(&shape)?;
        let mut out: Vec<String> = Vec::with_capacity(n);
        for w in bounds.windows(2) {
            out.extend(pieces[w[0]..w[1]].iter().map(|p| p.to_string()));
            out.extend(std::iter::repeat_with(String::new).take(width - (w[1] - w[0])));
        }
        Ok(vec![
            Value::Tensor(Tensor::from_vec(shape, out)?),
            Value::Tensor(Tensor::from_vec(x.shape().to_vec(), counts)?),
        ])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = input_shape_of(inputs, 0)?;
        let subs = shape.map(|s| {
            let mut d = s.0.clone();
            d.push(kiln_tensor::Dim::unknown());
            Shape(d)
        });
        Some(vec![ValueType::tensor(DType::String, subs), ValueType::tensor(DType::I64, shape.cloned())])
    }
}

// ---------------------------------------------------------------- RegexFullMatch

/// RegexFullMatch's matcher: natively the regex crate, for patterns that pass `rx`'s RE2 checks
/// (so every platform accepts the same patterns); in WebAssembly builds `rx` itself.
enum FullMatcher {
    #[cfg(not(target_arch = "wasm32"))]
    Crate(regex::Regex),
    Own(rx::Regex),
}

impl FullMatcher {
    #[cfg(not(target_arch = "wasm32"))]
    fn new(pattern: &str) -> OpResult<FullMatcher> {
        rx::check(pattern)?;
        Ok(FullMatcher::Crate(re2::compile_full_match(pattern)?))
    }

    #[cfg(target_arch = "wasm32")]
    fn new(pattern: &str) -> OpResult<FullMatcher> {
        FullMatcher::own(pattern)
    }

    /// Matching with `rx`, as WebAssembly builds do.
    #[cfg_attr(not(any(test, target_arch = "wasm32")), allow(dead_code))]
    fn own(pattern: &str) -> OpResult<FullMatcher> {
        Ok(FullMatcher::Own(rx::Regex::new(pattern)?))
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            #[cfg(not(target_arch = "wasm32"))]
            FullMatcher::Crate(re) => re.is_match(s),
            FullMatcher::Own(re) => re.is_full_match(s),
        }
    }
}

struct RegexFullMatchOp(FullMatcher);

fn build_regex_full_match(n: &NodeInfo) -> OpResult<Box<dyn Op>> {
    let pattern =
        n.attr_string("pattern")?.ok_or_else(|| OpError::new("RegexFullMatch needs the 'pattern' attribute"))?;
    Ok(Box::new(RegexFullMatchOp(FullMatcher::new(&pattern)?)))
}

impl Op for RegexFullMatchOp {
    fn run(&self, inputs: &Inputs) -> OpResult<Vec<Value>> {
        let (x, strs) = string_input(inputs, 0, "RegexFullMatch")?;
        let out: Vec<bool> = strs.iter().map(|s| self.0.is_match(s)).collect();
        Ok(vec![Value::Tensor(Tensor::from_vec(x.shape().to_vec(), out)?)])
    }
    fn infer(&self, inputs: &[Option<&ValueType>], _: &[Option<&Tensor>]) -> Option<Vec<ValueType>> {
        let shape = input_shape_of(inputs, 0)?;
        Some(vec![ValueType::tensor(DType::Bool, shape.cloned())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(shape: &[usize], v: &[&str]) -> Value {
        Value::Tensor(Tensor::from_vec(shape.to_vec(), v.iter().map(|s| s.to_string()).collect()).unwrap())
    }

    fn run(op: &dyn Op, vals: &[Value]) -> OpResult<Vec<Value>> {
        let refs: Vec<Option<&Value>> = vals.iter().map(Some).collect();
        op.run(&Inputs::new(&refs))
    }

    #[test]
    fn normalizer_case_insensitive_stopwords() {
        let op = StringNormalizerOp {
            case: CaseChange::Lower,
            case_sensitive: false,
            stopwords: ["the".to_string()].into_iter().collect(),
        };
        let out = run(&op, &[strs(&[1, 3], &["The", "Quick", "FOX"])]).unwrap();
        assert_eq!(out[0], strs(&[1, 2], &["quick", "fox"]));
        let out = run(&op, &[strs(&[2], &["THE", "the"])]).unwrap();
        assert_eq!(out[0], strs(&[1], &[""]));
        assert!(run(&op, &[strs(&[2, 1], &["a", "b"])]).is_err());
    }

    #[test]
    fn case_change_keeps_expanding_characters() {
        assert_eq!(change_case("straße é", true), "STRAßE É");
        assert_eq!(change_case("ÀB", false), "àb");
    }

    /// RegexFullMatch with each matcher: the platform's and `rx` (what WebAssembly builds run).
    fn full_match_ops(pattern: &str) -> [RegexFullMatchOp; 2] {
        [FullMatcher::new(pattern), FullMatcher::own(pattern)].map(|m| RegexFullMatchOp(m.unwrap()))
    }

    #[test]
    fn regex_full_match_onnx_examples() {
        // The ONNX backend tests' inputs and expected outputs.
        type Case<'a> = (&'a str, &'a [usize], &'a [&'a str], &'a [bool]);
        let cases: [Case; 2] = [
            (r"www\.[\w.-]+\.\bcom\b", &[3], &["www.google.com", "www.facebook.com", "www.bbc.co.uk"], &[true, true, false]),
            (
                r"(\W|^)[\w.\-]{0,25}@(yahoo|gmail)\.com(\W|$)",
                &[2, 2],
                &["account@gmail.com", "account@hotmail.com", "not email", "account2@yahoo.com"],
                &[true, false, false, true],
            ),
        ];
        for (pattern, shape, input, want) in cases {
            for op in &full_match_ops(pattern) {
                let out = run(op, &[strs(shape, input)]).unwrap();
                assert_eq!(out[0], Value::Tensor(Tensor::from_vec(shape.to_vec(), want.to_vec()).unwrap()));
                let out = run(op, &[strs(&[2, 0], &[])]).unwrap();
                assert_eq!(out[0], Value::Tensor(Tensor::from_vec::<bool>(vec![2, 0], vec![]).unwrap()));
            }
        }
    }

    #[test]
    fn regex_full_match_re2_syntax() {
        // (pattern, matching inputs, non-matching inputs), by RE2's syntax rules.
        let cases: [(&str, &[&str], &[&str]); 6] = [
            (r"\w+", &["abc_9"], &["abç", ""]),
            (r"(?i)straße|\d{2,3}", &["STRAßE", "12", "123"], &["STRASSE", "1", "1234"]),
            (r"[^\d\s]+", &["ab-", "é"], &["a1", "a b"]),
            (r"a{,2}\Q.*\E", &["a{,2}.*"], &["aa.*"]),
            (r"\101\x42\x{43}[[:digit:]]", &["ABC7"], &["ABCx"]),
            (r"(?s).+\bx", &["a\n x"], &["ax"]),
        ];
        for (pattern, yes, no) in cases {
            for op in &full_match_ops(pattern) {
                let input: Vec<&str> = yes.iter().chain(no).copied().collect();
                let want: Vec<bool> = input.iter().enumerate().map(|(i, _)| i < yes.len()).collect();
                let out = run(op, &[strs(&[input.len()], &input)]).unwrap();
                assert_eq!(out[0], Value::Tensor(Tensor::from_vec(vec![input.len()], want).unwrap()), "{pattern}");
            }
        }
        for bad in ["(", "a**", r"\1", "a{1001}", "[z-a]"] {
            assert!(FullMatcher::new(bad).is_err() && FullMatcher::own(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn concat_broadcasts() {
        let out = run(&StringConcatOp, &[strs(&[2, 1], &["a", "b"]), strs(&[2], &["x", "y"])]).unwrap();
        assert_eq!(out[0], strs(&[2, 2], &["ax", "ay", "bx", "by"]));
    }

    #[test]
    fn split_whitespace_with_maxsplit() {
        let mut v = Vec::new();
        split_whitespace("  a  b c  ", Some(1), &mut v);
        assert_eq!(v, vec!["a", "b c"]);
        v.clear();
        split_whitespace("   ", None, &mut v);
        assert!(v.is_empty());
    }

    #[test]
    fn split_pads_and_counts() {
        let op = StringSplitOp { delimiter: Some("-".into()), maxsplit: None };
        let out = run(&op, &[strs(&[2], &["a--b", ""])]).unwrap();
        assert_eq!(out[0], strs(&[2, 3], &["a", "", "b", "", "", ""]));
        assert_eq!(out[1], Value::Tensor(Tensor::from_vec(vec![2], vec![3i64, 1]).unwrap()));
    }
}
