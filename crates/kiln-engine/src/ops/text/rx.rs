//! A compact regular-expression engine for RE2 syntax: the matcher of RegexFullMatch and
//! Tokenizer in WebAssembly builds, and the pattern checker on every platform.
//!
//! A pattern is parsed straight from RE2 syntax into a small tree, compiled to a Thompson NFA over
//! chars and run by a Pike VM: matching takes time linear in the haystack length times the
//! program size, with no backtracking. Supported: literals and escapes (`\a \f \t \n \r \v`,
//! octal, `\xHH`, `\x{...}`, escaped punctuation), `.`, bracket classes (ranges, negation, POSIX
//! `[:alpha:]` classes; `[`, `&&` and `--` are literal, as in RE2), the ASCII Perl classes
//! `\d \s \w` and their negations, `\b \B ^ $ \A \z`, capturing, named and non-capturing groups,
//! the flags `i m s U` (also scoped, `(?i:...)`), alternation, greedy and lazy `* + ? {n} {n,}
//! {n,m}`, and `\Q...\E`. Unicode classes (`\pL`, `\p{Greek}`) and `\C` are rejected.
//!
//! Both entry points (a whole-string match, and the leftmost-longest match) are independent of
//! match priority, so lazy quantifiers parse but match as greedy ones, and each VM thread only
//! carries where its match started. Case-insensitive matching compares characters by
//! lowercase(uppercase(c)) (single-character mappings), which yields Unicode simple case folding's
//! classes (k, K and the Kelvin sign; s, S and ſ; σ, ς and Σ) for all but a few characters.
//!
//! Limits, as in RE2: repetition counts up to 1000, nested counts multiplying to at most 1000;
//! also a program of at most `MAX_INSTS` instructions and `MAX_DEPTH` nested groups. Larger
//! patterns are errors, so memory and time stay bounded.

use std::cmp::Ordering;

use crate::error::{OpError, OpResult};

const MAX_CHAR: u32 = 0x10FFFF;
/// No character above this has a case mapping.
const MAX_CASED: u32 = 0x1F000;
const MAX_REPEAT: u32 = 1000;
const MAX_INSTS: usize = 100_000;
const MAX_DEPTH: u32 = 250;

/// Perl and POSIX classes as inclusive byte ranges (pairs).
const DIGIT: &[u8] = b"09";
const SPACE: &[u8] = b"\t\n\x0c\r  ";
const WORD: &[u8] = b"09AZ__az";
const POSIX: [(&str, &[u8]); 14] = [
    ("alnum", b"09AZaz"),
    ("alpha", b"AZaz"),
    ("ascii", b"\x00\x7f"),
    ("blank", b"\t\t  "),
    ("cntrl", b"\x00\x1f\x7f\x7f"),
    ("digit", DIGIT),
    ("graph", b"!~"),
    ("lower", b"az"),
    ("print", b" ~"),
    ("punct", b"!/:@[`{~"),
    ("space", b"\t\r  "),
    ("upper", b"AZ"),
    ("word", WORD),
    ("xdigit", b"09AFaf"),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Look {
    Start,
    End,
    LineStart,
    LineEnd,
    Word,
    NotWord,
}

impl Look {
    fn holds(self, prev: Option<char>, cur: Option<char>) -> bool {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        match self {
            Look::Start => prev.is_none(),
            Look::End => cur.is_none(),
            Look::LineStart => prev.is_none_or(|c| c == '\n'),
            Look::LineEnd => cur.is_none_or(|c| c == '\n'),
            Look::Word => word(prev) != word(cur),
            Look::NotWord => word(prev) == word(cur),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Inst {
    /// One character (a code point; surrogates never match).
    Char(u32),
    /// A character in `sets[i]`.
    Set(u32),
    Look(Look),
    Split(u32, u32),
    Jmp(u32),
    Match,
}

/// A character class: sorted, disjoint ranges. With `fold`, the ranges hold the case-fold keys
/// ([`fold_key`]) of the class members and a character matches when its key is in them.
struct Set {
    ranges: Vec<(u32, u32)>,
    fold: bool,
}

impl Set {
    fn has(&self, c: char) -> bool {
        let c = if self.fold { fold_key(c) } else { c } as u32;
        self.ranges
            .binary_search_by(|&(lo, hi)| {
                if hi < c {
                    Ordering::Less
                } else if lo > c {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            })
            .is_ok()
    }
}

/// The representative of `c`'s case-fold class: lowercase(uppercase(c)), keeping `c` where a
/// mapping is not a single character. U+0131 (dotless i) only folds with I under Turkish rules.
fn fold_key(c: char) -> char {
    fn single(mut it: impl Iterator<Item = char>) -> Option<char> {
        let first = it.next()?;
        it.next().is_none().then_some(first)
    }
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    if c == '\u{131}' {
        return c;
    }
    let upper = single(c.to_uppercase()).unwrap_or(c);
    single(upper.to_lowercase()).unwrap_or(upper)
}

/// Sorts and merges ranges.
fn normalize(mut r: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    r.sort_unstable();
    let mut out: Vec<(u32, u32)> = Vec::with_capacity(r.len());
    for (lo, hi) in r {
        match out.last_mut() {
            Some(last) if lo <= last.1 + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out
}

/// The complement of normalized ranges within 0..=MAX_CHAR.
fn negate(r: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::with_capacity(r.len() + 1);
    let mut next = 0;
    for &(lo, hi) in r {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi + 1;
    }
    if next <= MAX_CHAR {
        out.push((next, MAX_CHAR));
    }
    out
}

/// Collects a class's ranges; with `fold`, adds the fold key of every member as well.
struct ClassBuilder {
    ranges: Vec<(u32, u32)>,
    fold: bool,
}

impl ClassBuilder {
    fn add(&mut self, lo: u32, hi: u32) {
        self.ranges.push((lo, hi));
        if self.fold {
            for c in lo..=hi.min(MAX_CASED) {
                if let Some(ch) = char::from_u32(c) {
                    let k = fold_key(ch) as u32;
                    if k < lo || k > hi {
                        self.ranges.push((k, k));
                    }
                }
            }
        }
    }

    /// Adds a Perl or POSIX class (byte-range pairs) or its complement. As in RE2, a negated class
    /// under case folding is the complement of the folded class.
    fn add_group(&mut self, pairs: &[u8], negated: bool) {
        let mut g = ClassBuilder { ranges: Vec::new(), fold: self.fold };
        for p in pairs.chunks_exact(2) {
            g.add(u32::from(p[0]), u32::from(p[1]));
        }
        if negated {
            self.ranges.extend(negate(&normalize(g.ranges)));
        } else {
            self.ranges.extend(g.ranges);
        }
    }
}

enum Node {
    Empty,
    Char(u32),
    Set(u32),
    Look(Look),
    Cat(Vec<Node>),
    Alt(Vec<Node>),
    /// Sub-expression, minimum count, maximum count (None: unbounded).
    Rep(Box<Node>, u32, Option<u32>),
}

#[derive(Clone, Copy, Default)]
struct Flags {
    fold: bool,
    multi_line: bool,
    dot_nl: bool,
}

/// A parse error: message and the pattern's char range it concerns.
type PResult<T> = Result<T, (&'static str, usize, usize)>;

struct Parser<'a> {
    p: &'a [char],
    i: usize,
    sets: Vec<Set>,
    names: Vec<String>,
    depth: u32,
    /// Characters, classes and assertions so far: each needs at least one instruction.
    atoms: usize,
    /// Accept Unicode classes as placeholders (checking patterns for another matcher).
    unicode_ok: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.p.get(self.i).copied()
    }

    fn peek_at(&self, k: usize) -> Option<char> {
        self.p.get(self.i + k).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        let hit = self.peek() == Some(c);
        self.i += usize::from(hit);
        hit
    }

    fn set(&mut self, ranges: Vec<(u32, u32)>, fold: bool) -> Node {
        self.atoms += 1;
        self.sets.push(Set { ranges, fold });
        Node::Set(self.sets.len() as u32 - 1)
    }

    fn lit(&mut self, c: u32, f: Flags) -> Node {
        match char::from_u32(c) {
            Some(ch) if f.fold => {
                let k = fold_key(ch) as u32;
                self.set(vec![(k, k)], true)
            }
            _ => {
                self.atoms += 1;
                Node::Char(c)
            }
        }
    }

    fn look(&mut self, l: Look) -> Node {
        self.atoms += 1;
        Node::Look(l)
    }

    /// Alternatives up to an unmatched `)` or the end.
    fn alt(&mut self, mut f: Flags) -> PResult<Node> {
        let mut branches = vec![self.concat(&mut f)?];
        while self.eat('|') {
            branches.push(self.concat(&mut f)?);
        }
        Ok(if branches.len() == 1 { branches.pop().unwrap_or(Node::Empty) } else { Node::Alt(branches) })
    }

    /// A sequence up to `|`, `)` or the end. Flag groups such as `(?i)` change `f` for the rest
    /// of the enclosing group.
    fn concat(&mut self, f: &mut Flags) -> PResult<Node> {
        let mut items: Vec<Node> = Vec::new();
        let mut after_repeat = false;
        while let Some(c) = self.peek() {
            if self.atoms > MAX_INSTS {
                return Err(("pattern too large", 0, 0));
            }
            let at = self.i;
            let mut repeat = None;
            self.i += 1;
            match c {
                '|' | ')' => {
                    self.i -= 1;
                    break;
                }
                '(' => {
                    let mut inner = *f;
                    if self.eat('?') && !self.group_flags(&mut inner, at)? {
                        *f = inner;
                        after_repeat = false;
                        continue;
                    }
                    self.depth += 1;
                    if self.depth > MAX_DEPTH {
                        return Err(("groups nested too deeply", at, self.i));
                    }
                    let node = self.alt(inner)?;
                    self.depth -= 1;
                    if !self.eat(')') {
                        return Err(("missing )", at, self.p.len()));
                    }
                    items.push(node);
                }
                '*' => repeat = Some((0, None)),
                '+' => repeat = Some((1, None)),
                '?' => repeat = Some((0, Some(1))),
                '{' => match counted_repeat(&self.p[at..]) {
                    Some((min, max, len)) => {
                        self.i = at + len;
                        repeat = Some((min, max));
                    }
                    None => items.push(self.lit('{' as u32, *f)),
                },
                '^' => items.push(self.look(if f.multi_line { Look::LineStart } else { Look::Start })),
                '$' => items.push(self.look(if f.multi_line { Look::LineEnd } else { Look::End })),
                '.' => {
                    let r = if f.dot_nl { vec![(0, MAX_CHAR)] } else { vec![(0, 9), (11, MAX_CHAR)] };
                    items.push(self.set(r, false));
                }
                '[' => {
                    let node = self.class(*f, at)?;
                    items.push(node);
                }
                '\\' => {
                    self.i = at;
                    self.escape_item(*f, &mut items)?;
                }
                _ => items.push(self.lit(c as u32, *f)),
            }
            if let Some((min, max)) = repeat {
                // Lazy and greedy forms match the same strings here.
                self.eat('?');
                if after_repeat {
                    return Err(("bad repetition operator", at, self.i));
                }
                if min > MAX_REPEAT || max.is_some_and(|m| m > MAX_REPEAT || m < min) {
                    return Err(("bad repetition operator", at, self.i));
                }
                let Some(last) = items.pop() else {
                    return Err(("missing argument to repetition operator", at, self.i));
                };
                items.push(Node::Rep(Box::new(last), min, max));
            }
            after_repeat = repeat.is_some();
        }
        Ok(match items.len() {
            0 => Node::Empty,
            1 => items.pop().unwrap_or(Node::Empty),
            _ => Node::Cat(items),
        })
    }

    /// After "(?": a named group or `flags:` (returns true, `f` set for the group), or
    /// `flags)` (returns false, `f` set for the rest of the enclosing group).
    fn group_flags(&mut self, f: &mut Flags, at: usize) -> PResult<bool> {
        let bad = |i| Err(("invalid or unsupported Perl syntax", at, i));
        if self.peek() == Some('<') || (self.peek() == Some('P') && self.peek_at(1) == Some('<')) {
            self.i += if self.peek() == Some('P') { 2 } else { 1 };
            let start = self.i;
            let Some(len) = self.p[start..].iter().position(|&c| c == '>') else {
                return Err(("invalid named capture group", at, self.p.len()));
            };
            let name: String = self.p[start..start + len].iter().collect();
            self.i = start + len + 1;
            if name.is_empty() || !name.chars().all(|c| c == '_' || c.is_alphanumeric()) || self.names.contains(&name) {
                return Err(("invalid named capture group", at, self.i));
            }
            self.names.push(name);
            return Ok(true);
        }
        let mut negated = false;
        let mut saw_flag = false;
        loop {
            let Some(c) = self.next() else { return bad(self.i) };
            match c {
                'i' => f.fold = !negated,
                'm' => f.multi_line = !negated,
                's' => f.dot_nl = !negated,
                'U' => {}
                '-' if !negated => {
                    negated = true;
                    saw_flag = false;
                    continue;
                }
                ':' | ')' if !negated || saw_flag => return Ok(c == ':'),
                _ => return bad(self.i),
            }
            saw_flag = true;
        }
    }

    /// A backslash sequence outside a class: an assertion, a Perl class, `\Q...\E` (any number of
    /// literals) or one escaped character.
    fn escape_item(&mut self, f: Flags, items: &mut Vec<Node>) -> PResult<()> {
        let at = self.i;
        let look = match self.peek_at(1) {
            Some('b') => Some(Look::Word),
            Some('B') => Some(Look::NotWord),
            Some('A') => Some(Look::Start),
            Some('z') => Some(Look::End),
            Some('C') => return Err(("\\C (any byte) is not supported", at, at + 2)),
            Some('Q') => {
                self.i += 2;
                while let Some(c) = self.next() {
                    if c == '\\' && self.peek() == Some('E') {
                        self.i += 1;
                        break;
                    }
                    items.push(self.lit(c as u32, f));
                }
                return Ok(());
            }
            _ => None,
        };
        if let Some(l) = look {
            self.i += 2;
            items.push(self.look(l));
        } else if let Some((pairs, negated)) = self.perl_class()? {
            let mut b = ClassBuilder { ranges: Vec::new(), fold: f.fold };
            b.add_group(pairs, negated);
            let r = normalize(b.ranges);
            items.push(self.set(r, f.fold));
        } else {
            let c = self.escape_char()?;
            items.push(self.lit(c, f));
        }
        Ok(())
    }

    /// `\d \s \w`, their negations, and Unicode classes (errors unless `unicode_ok`) at the
    /// cursor; None (nothing consumed) for anything else.
    fn perl_class(&mut self) -> PResult<Option<(&'static [u8], bool)>> {
        if self.peek() != Some('\\') {
            return Ok(None);
        }
        let Some(c) = self.peek_at(1) else { return Ok(None) };
        let pairs = match c.to_ascii_lowercase() {
            'd' => DIGIT,
            's' => SPACE,
            'w' => WORD,
            'p' => {
                let at = self.i;
                self.i += 2;
                let name_ok = match self.next() {
                    Some('{') => match self.p[self.i..].iter().position(|&c| c == '}') {
                        Some(len) => {
                            self.i += len + 1;
                            len > 0
                        }
                        None => false,
                    },
                    Some(_) => true,
                    None => false,
                };
                if !self.unicode_ok || !name_ok {
                    return Err(("Unicode character classes are not supported", at, self.i));
                }
                // A placeholder: the whole range.
                return Ok(Some((b"", true)));
            }
            _ => return Ok(None),
        };
        self.i += 2;
        Ok(Some((pairs, c.is_ascii_uppercase())))
    }

    /// One escaped character at the cursor (a backslash).
    fn escape_char(&mut self) -> PResult<u32> {
        let at = self.i;
        self.i += 1;
        let Some(c) = self.next() else { return Err(("trailing backslash", at, self.i)) };
        let digit = |c: Option<char>, radix| c.and_then(|c| c.to_digit(radix));
        let v = match c {
            '0'..='7' => {
                // One to three octal digits; a lone nonzero digit would be a backreference.
                let mut v = c as u32 - '0' as u32;
                if v != 0 && digit(self.peek(), 8).is_none() {
                    return Err(("invalid escape sequence", at, self.i));
                }
                for _ in 0..2 {
                    let Some(d) = digit(self.peek(), 8) else { break };
                    v = v * 8 + d;
                    self.i += 1;
                }
                v
            }
            'x' if self.eat('{') => {
                let mut v = 0u32;
                let mut n = 0;
                loop {
                    match self.next() {
                        Some('}') if n > 0 => break v,
                        c => match digit(c, 16) {
                            Some(d) if v <= MAX_CHAR => {
                                v = v * 16 + d;
                                n += 1;
                            }
                            _ => return Err(("invalid escape sequence", at, self.i)),
                        },
                    }
                    if v > MAX_CHAR {
                        return Err(("invalid escape sequence", at, self.i));
                    }
                }
            }
            'x' => match (digit(self.next(), 16), digit(self.next(), 16)) {
                (Some(a), Some(b)) => a * 16 + b,
                _ => return Err(("invalid escape sequence", at, self.i.min(self.p.len()))),
            },
            'a' => 7,
            'f' => 12,
            't' => 9,
            'n' => 10,
            'v' => 11,
            'r' => 13,
            c if c.is_ascii() && !c.is_ascii_alphanumeric() => c as u32,
            _ => return Err(("invalid escape sequence", at, self.i)),
        };
        Ok(v)
    }

    /// A bracket class; the cursor is past `[` (at `at`).
    fn class(&mut self, f: Flags, at: usize) -> PResult<Node> {
        let missing = |i| Err(("missing ]", at, i));
        let negated = self.eat('^');
        let mut b = ClassBuilder { ranges: Vec::new(), fold: f.fold };
        let mut first = true;
        loop {
            let Some(c) = self.peek() else { return missing(self.i) };
            if c == ']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            // [:alpha:], [:^alpha:]; RE2 looks for the closing ":]" anywhere further on.
            if c == '[' && self.peek_at(1) == Some(':') && self.i + 2 < self.p.len() {
                let rest = &self.p[self.i + 2..];
                if let Some(len) = rest.windows(2).position(|w| w == [':', ']']) {
                    let name: String = rest[..len].iter().collect();
                    let (negated, name) = match name.strip_prefix('^') {
                        Some(n) => (true, n),
                        None => (false, name.as_str()),
                    };
                    let Some(&(_, pairs)) = POSIX.iter().find(|(n, _)| *n == name) else {
                        return Err(("invalid character class", self.i, self.i + len + 4));
                    };
                    b.add_group(pairs, negated);
                    self.i += len + 4;
                    continue;
                }
            }
            if let Some((pairs, negated)) = self.perl_class()? {
                b.add_group(pairs, negated);
                continue;
            }
            let start = self.i;
            let lo = self.class_char().ok_or(("missing ]", at, self.p.len()))??;
            let mut hi = lo;
            if self.peek() == Some('-') && self.peek_at(1).is_some_and(|c| c != ']') {
                self.i += 1;
                hi = self.class_char().ok_or(("missing ]", at, self.p.len()))??;
                if hi < lo {
                    return Err(("invalid character class range", start, self.i));
                }
            }
            b.add(lo, hi);
        }
        let mut r = normalize(b.ranges);
        if negated {
            r = negate(&r);
        }
        Ok(self.set(r, f.fold))
    }

    /// A class member character (possibly escaped); None at the end of the pattern.
    fn class_char(&mut self) -> Option<PResult<u32>> {
        match self.peek()? {
            '\\' => Some(self.escape_char()),
            c => {
                self.i += 1;
                Some(Ok(c as u32))
            }
        }
    }
}

/// A counted repetition `{n}`, `{n,}` or `{n,m}` at the start of `p`: (min, max, length in chars).
/// None where RE2 reads the brace as a literal (no valid count, a leading zero, over 9 digits).
pub fn counted_repeat(p: &[char]) -> Option<(u32, Option<u32>, usize)> {
    fn int(p: &[char], i: &mut usize) -> Option<u32> {
        let start = *i;
        let mut v = 0u32;
        while let Some(d) = p.get(*i).and_then(|c| c.to_digit(10)) {
            if (*i > start && v == 0) || v >= 100_000_000 {
                return None;
            }
            v = v * 10 + d;
            *i += 1;
        }
        (*i > start).then_some(v)
    }
    if p.first() != Some(&'{') {
        return None;
    }
    let mut i = 1;
    let min = int(p, &mut i)?;
    let max = if p.get(i) == Some(&',') {
        i += 1;
        if p.get(i) == Some(&'}') {
            None
        } else {
            Some(int(p, &mut i)?)
        }
    } else {
        Some(min)
    };
    (p.get(i) == Some(&'}')).then_some((min, max, i + 1))
}

/// RE2's limit on nested counted repetitions: dividing 1000 by each enclosing count (the maximum,
/// or the minimum when unbounded) must not reach 0 on any path.
fn repeat_budget(n: &Node, budget: u32) -> u32 {
    match n {
        Node::Rep(sub, min, max) => {
            let m = max.unwrap_or(*min);
            repeat_budget(sub, budget.checked_div(m).unwrap_or(budget))
        }
        Node::Cat(v) | Node::Alt(v) => v.iter().map(|s| repeat_budget(s, budget)).min().unwrap_or(budget),
        _ => budget,
    }
}

struct Compiler {
    prog: Vec<Inst>,
}

impl Compiler {
    fn push(&mut self, inst: Inst) -> Result<usize, ()> {
        if self.prog.len() >= MAX_INSTS {
            return Err(());
        }
        self.prog.push(inst);
        Ok(self.prog.len() - 1)
    }

    fn pc(&self) -> u32 {
        self.prog.len() as u32
    }

    fn emit(&mut self, n: &Node) -> Result<(), ()> {
        match n {
            Node::Empty => {}
            Node::Char(c) => {
                self.push(Inst::Char(*c))?;
            }
            Node::Set(i) => {
                self.push(Inst::Set(*i))?;
            }
            Node::Look(l) => {
                self.push(Inst::Look(*l))?;
            }
            Node::Cat(v) => {
                for s in v {
                    self.emit(s)?;
                }
            }
            Node::Alt(v) => {
                let mut jumps = Vec::with_capacity(v.len());
                for (k, s) in v.iter().enumerate() {
                    if k + 1 == v.len() {
                        self.emit(s)?;
                    } else {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(s)?;
                        jumps.push(self.push(Inst::Jmp(0))?);
                        self.prog[split] = Inst::Split(split as u32 + 1, self.pc());
                    }
                }
                let end = self.pc();
                for j in jumps {
                    self.prog[j] = Inst::Jmp(end);
                }
            }
            Node::Rep(sub, min, max) => {
                let mut last = self.pc();
                for _ in 0..*min {
                    last = self.pc();
                    self.emit(sub)?;
                }
                match max {
                    // x{n,}: the last copy loops.
                    None if *min > 0 => {
                        let pc = self.pc();
                        self.push(Inst::Split(last, pc + 1))?;
                    }
                    None => {
                        let split = self.push(Inst::Split(0, 0))?;
                        self.emit(sub)?;
                        self.push(Inst::Jmp(split as u32))?;
                        self.prog[split] = Inst::Split(split as u32 + 1, self.pc());
                    }
                    // x{n,m}: m - n optional copies, each skipping to the end.
                    Some(max) => {
                        let mut skips = Vec::new();
                        for _ in *min..*max {
                            skips.push(self.push(Inst::Split(0, 0))?);
                            self.emit(sub)?;
                        }
                        let end = self.pc();
                        for s in skips {
                            self.prog[s] = Inst::Split(s as u32 + 1, end);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// A compiled pattern.
pub struct Regex {
    prog: Vec<Inst>,
    sets: Vec<Set>,
}

/// Parses and compiles `pattern`; `unicode_ok` admits Unicode classes as placeholders.
fn compile(pattern: &str, unicode_ok: bool) -> OpResult<Regex> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut p = Parser { p: &chars, i: 0, sets: Vec::new(), names: Vec::new(), depth: 0, atoms: 0, unicode_ok };
    let parsed = p.alt(Flags::default()).and_then(|node| {
        if p.i < p.p.len() {
            Err(("unmatched )", p.i, p.i + 1))
        } else if repeat_budget(&node, MAX_REPEAT) == 0 {
            Err(("bad repetition operator (nested counts exceed 1000)", 0, 0))
        } else {
            Ok(node)
        }
    });
    let node = parsed.map_err(|(msg, a, b)| {
        let what: String = p.p.get(a..b.min(p.p.len())).unwrap_or_default().iter().collect();
        let mut m = format!("invalid regex pattern '{pattern}': {msg}");
        if !what.is_empty() {
            m.push_str(": '");
            m.push_str(&what);
            m.push('\'');
        }
        OpError(m)
    })?;
    let mut c = Compiler { prog: Vec::new() };
    if c.emit(&node).and_then(|_| c.push(Inst::Match)).is_err() {
        return Err(OpError(format!("regex pattern '{pattern}' is too large (over {MAX_INSTS} instructions)")));
    }
    Ok(Regex { prog: c.prog, sets: p.sets })
}

/// The escaped character at the start of `p` (a backslash) and the length of the escape, if it
/// is a valid single-character escape.
#[cfg(not(target_arch = "wasm32"))]
pub fn escape_char(p: &[char]) -> Option<(u32, usize)> {
    let mut parser = Parser { p, i: 0, sets: Vec::new(), names: Vec::new(), depth: 0, atoms: 0, unicode_ok: false };
    parser.escape_char().ok().map(|c| (c, parser.i))
}

/// Checks `pattern` as [`Regex::new`] does, but accepts Unicode classes (for matchers that have
/// them).
#[cfg(not(target_arch = "wasm32"))]
pub fn check(pattern: &str) -> OpResult<()> {
    compile(pattern, true).map(|_| ())
}

/// Pike VM thread list: a sparse set of program counters, each with its match start.
struct Threads {
    sparse: Vec<u32>,
    dense: Vec<u32>,
    start: Vec<usize>,
}

impl Threads {
    fn new(n: usize) -> Threads {
        Threads { sparse: vec![0; n], dense: Vec::with_capacity(n), start: vec![0; n] }
    }

    fn insert(&mut self, pc: usize, start: usize) -> bool {
        let i = self.sparse[pc] as usize;
        if self.dense.get(i).is_some_and(|&d| d as usize == pc) {
            return false;
        }
        self.sparse[pc] = self.dense.len() as u32;
        self.dense.push(pc as u32);
        self.start[pc] = start;
        true
    }
}

/// A position in the haystack: byte offset and the characters before and at it.
#[derive(Clone, Copy)]
struct Pos {
    at: usize,
    prev: Option<char>,
    cur: Option<char>,
}

impl Regex {
    /// Compiles an RE2 pattern.
    pub fn new(pattern: &str) -> OpResult<Regex> {
        compile(pattern, false)
    }

    /// Whether the whole of `hay` matches.
    pub fn is_full_match(&self, hay: &str) -> bool {
        self.search(hay, 0, true).is_some_and(|(_, end)| end == hay.len())
    }

    /// The leftmost-longest match in `hay[start..]` (with `hay` as context for `^` and `\b`), as a
    /// byte range.
    pub fn find_at(&self, hay: &str, start: usize) -> Option<(usize, usize)> {
        self.search(hay, start, false)
    }

    /// Follows the empty transitions from `pc` at `pos`, adding threads that began at `start`, and
    /// records a match if one is reached.
    fn add(
        &self,
        t: &mut Threads,
        stack: &mut Vec<u32>,
        pc: usize,
        start: usize,
        pos: Pos,
        best: &mut Option<(usize, usize)>,
    ) {
        stack.push(pc as u32);
        while let Some(pc) = stack.pop() {
            let pc = pc as usize;
            if !t.insert(pc, start) {
                continue;
            }
            match self.prog[pc] {
                Inst::Jmp(a) => stack.push(a),
                Inst::Split(a, b) => {
                    stack.push(b);
                    stack.push(a);
                }
                Inst::Look(l) => {
                    if l.holds(pos.prev, pos.cur) {
                        stack.push(pc as u32 + 1);
                    }
                }
                Inst::Match => {
                    if best.is_none_or(|(s, e)| start < s || (start == s && pos.at > e)) {
                        *best = Some((start, pos.at));
                    }
                }
                Inst::Char(_) | Inst::Set(_) => {}
            }
        }
    }

    /// Leftmost-longest search. Threads are kept in order of their start, so where two reach the
    /// same instruction the earlier start wins; once a match is found, no later start is tried.
    fn search(&self, hay: &str, start: usize, anchored: bool) -> Option<(usize, usize)> {
        let (Some(before), Some(rest)) = (hay.get(..start), hay.get(start..)) else { return None };
        let n = self.prog.len();
        let (mut cur, mut next) = (Threads::new(n), Threads::new(n));
        let mut stack = Vec::new();
        let mut best = None;
        let mut chars = rest.chars();
        let mut pos = Pos { at: start, prev: before.chars().next_back(), cur: chars.next() };
        loop {
            if best.is_none() && (!anchored || pos.at == start) {
                self.add(&mut cur, &mut stack, 0, pos.at, pos, &mut best);
            }
            let Some(ch) = pos.cur else { break };
            if cur.dense.is_empty() {
                break;
            }
            let after = Pos { at: pos.at + ch.len_utf8(), prev: Some(ch), cur: chars.next() };
            for &pc in &cur.dense {
                let pc = pc as usize;
                let s = cur.start[pc];
                if best.is_some_and(|(b, _)| s > b) {
                    break;
                }
                let hit = match self.prog[pc] {
                    Inst::Char(c) => ch as u32 == c,
                    Inst::Set(i) => self.sets[i as usize].has(ch),
                    _ => false,
                };
                if hit {
                    self.add(&mut next, &mut stack, pc + 1, s, after, &mut best);
                }
            }
            std::mem::swap(&mut cur, &mut next);
            next.dense.clear();
            pos = after;
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::super::re2;
    use super::super::tokenizer::LongestRegex;
    use super::*;

    /// xorshift64*: a small deterministic generator for the randomized tests (and a counter for
    /// unique group names).
    struct Rng(u64, u32);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
        }

        fn pick<T: Copy>(&mut self, v: &[T]) -> T {
            v[self.below(v.len())]
        }
    }

    /// Characters of the generated patterns and haystacks: ASCII letters with case, the other
    /// members of their Unicode case-fold classes (Kelvin sign, long s), accented and Greek
    /// letters, dotless and dotted i, digits, punctuation, space and newline.
    const ALPHABET: &[char] = &[
        'a', 'b', 'c', 'A', 'B', 'k', 'K', '\u{212A}', 's', 'S', 'ſ', 'é', 'É', 'σ', 'ς', 'Σ', 'ı', 'İ', 'i', '1', '9',
        '_', '-', '.', ' ', '\n', '中',
    ];

    /// Characters of the garbage patterns: mostly metacharacters and escape letters.
    const GARBAGE: &[char] = &[
        '(', ')', '[', ']', '{', '}', '|', '*', '+', '?', '.', '^', '$', '\\', '-', ':', ',', '<', '>', '=', '!', '&',
        '~', '0', '1', '2', '7', '9', 'a', 'b', 'A', 'B', 'C', 'd', 'D', 'E', 'i', 'm', 's', 'U', 'P', 'p', 'Q', 'w',
        'W', 'S', 'x', 'z', 'Z', 'k', 'é', 'ſ', '\u{212A}', ' ', '\n',
    ];

    fn literal(r: &mut Rng, out: &mut String) {
        let c = r.pick(ALPHABET);
        match r.below(12) {
            0 => out.push_str(&format!("\\x{{{:x}}}", c as u32)),
            1 if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02X}", c as u32)),
            2 if (c as u32) < 0o400 => out.push_str(&format!("\\{:03o}", c as u32)),
            _ => match c {
                '\n' => out.push_str(r"\n"),
                '.' | '-' => {
                    out.push('\\');
                    out.push(c);
                }
                _ => out.push(c),
            },
        }
    }

    fn class(r: &mut Rng, out: &mut String) {
        out.push('[');
        if r.below(3) == 0 {
            out.push('^');
        }
        if r.below(8) == 0 {
            out.push(']');
        } else if r.below(5) == 0 {
            // Hyphens: first in the class, literal or a range from or to '-'.
            out.push_str(r.pick(&["-", "!--", "--/"]));
        }
        for _ in 0..1 + r.below(3) {
            match r.below(10) {
                0..=2 => literal(r, out),
                3..=5 => {
                    let (a, b) = r.pick(&[
                        ('a', 'c'),
                        ('A', 'Z'),
                        ('a', 'z'),
                        ('0', '9'),
                        ('!', '-'),
                        ('é', 'ſ'),
                        ('Σ', 'σ'),
                        ('-', '9'),
                        ('\u{0}', '\u{10FFFF}'),
                    ]);
                    out.push_str(&format!("\\x{{{:x}}}-{b}", a as u32));
                }
                6 => out.push_str(r.pick(&[r"\d", r"\D", r"\w", r"\W", r"\s", r"\S"])),
                7 => out.push_str(r.pick(&[
                    "[:alpha:]",
                    "[:^alpha:]",
                    "[:upper:]",
                    "[:word:]",
                    "[:punct:]",
                    "[:^space:]",
                    "[:xdigit:]",
                ])),
                8 => out.push_str(r.pick(&["[", "&&", "~~", "a^"])),
                _ => out.push_str(r.pick(&[r"\-", r"\]", r"\[", r"\\", r"\^", r"\n", r"\t"])),
            }
        }
        if r.below(6) == 0 {
            out.push('-');
        }
        out.push(']');
    }

    fn atom(r: &mut Rng, out: &mut String, depth: u32) {
        match r.below(if depth > 2 { 14 } else { 18 }) {
            0..=4 => literal(r, out),
            5 => out.push('.'),
            6 | 7 => class(r, out),
            8 => out.push_str(r.pick(&[r"\d", r"\D", r"\w", r"\W", r"\s", r"\S"])),
            9 | 10 => out.push_str(r.pick(&["^", "$", r"\A", r"\z", r"\b", r"\B"])),
            11 => out.push_str(r.pick(&["(?i)", "(?s)", "(?m)", "(?-i)", "(?U)", "(?is)"])),
            12 => out.push_str(r.pick(&[r"\Qa.b\E", r"\Q*\E", r"\QΣk\E", r"\Q\E", "{", "}", "a{,2}", "{x}"])),
            13 => out.push_str(r.pick(&["é", "中", " "])),
            _ => {
                match r.pick(&["(", "(?:", "(?i:", "(?s:", "(?m:", "(?P<", "(?<", "(?-i:", "(?i-s:"]) {
                    named if named.ends_with('<') => {
                        r.1 += 1;
                        out.push_str(&format!("{named}g{}>", r.1));
                    }
                    open => out.push_str(open),
                }
                alternation(r, out, depth + 1);
                out.push(')');
            }
        }
    }

    fn alternation(r: &mut Rng, out: &mut String, depth: u32) {
        let branches = if r.below(3) == 0 { 2 + r.below(2) } else { 1 };
        for b in 0..branches {
            if b > 0 {
                out.push('|');
            }
            for _ in 0..r.below(4) + usize::from(depth == 0) {
                let start = out.len();
                atom(r, out, depth);
                // A repetition after a flag group or an empty quote would apply to the item
                // before it, or to nothing.
                let item = &out[start..];
                if item == r"\Q\E" || (item.starts_with("(?") && item.ends_with(')') && !item.contains(':')) {
                    continue;
                }
                if r.below(3) == 0 {
                    out.push_str(r.pick(&["*", "+", "?", "{2}", "{0,2}", "{1,}", "{3}", "{0}", "{1,3}"]));
                    if r.below(4) == 0 {
                        out.push('?');
                    }
                }
            }
        }
    }

    /// A short string over the alphabet, or over the characters of `pattern` (more likely to match).
    fn haystack(r: &mut Rng, pattern: &str) -> String {
        let own: Vec<char> = pattern.chars().filter(|c| c.is_alphanumeric() || " _\n".contains(*c)).collect();
        let from = if own.is_empty() || r.below(2) == 0 { ALPHABET } else { &own };
        (0..r.below(7)).map(|_| r.pick(from)).collect()
    }

    /// Compares `rx` with the regex crate (full match via the RE2 translation, leftmost-longest
    /// via regex-automata) on one pattern; both must accept it.
    fn compare(pattern: &str, hays: &[String]) {
        let own = Regex::new(pattern).unwrap_or_else(|e| panic!("rx rejects {pattern:?}: {e}"));
        let full = re2::compile_full_match(pattern).unwrap_or_else(|e| panic!("regex rejects {pattern:?}: {e}"));
        let longest =
            LongestRegex::new(pattern, "test").unwrap_or_else(|e| panic!("regex-automata rejects {pattern:?}: {e}"));
        for h in hays {
            assert_eq!(own.is_full_match(h), full.is_match(h), "full match of {pattern:?} on {h:?}");
            for (start, _) in h.char_indices().chain([(h.len(), ' ')]) {
                assert_eq!(
                    own.find_at(h, start),
                    longest.find_at(h, start),
                    "leftmost-longest {pattern:?} on {h:?} from {start}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_regex_crate_on_generated_patterns() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15, 0);
        for _ in 0..4000 {
            let mut p = String::from(if r.below(4) == 0 { "(?i)" } else { "" });
            alternation(&mut r, &mut p, 0);
            let mut hays: Vec<String> = (0..12).map(|_| haystack(&mut r, &p)).collect();
            hays.push(String::new());
            compare(&p, &hays);
        }
    }

    /// Garbage patterns (mostly metacharacters) and haystacks: no panic; what `rx` accepts, the
    /// regex crate accepts after translation, and they match alike.
    #[test]
    fn garbage_patterns_do_not_panic() {
        let mut r = Rng(0xD1B5_4A32_D192_ED03, 0);
        let mut accepted = 0;
        for _ in 0..30_000 {
            let p: String = (0..r.below(14)).map(|_| r.pick(GARBAGE)).collect();
            let Ok(own) = Regex::new(&p) else { continue };
            accepted += 1;
            let hays: Vec<String> = (0..6).map(|_| haystack(&mut r, &p)).collect();
            for h in &hays {
                for (start, _) in h.char_indices().chain([(h.len(), ' ')]) {
                    own.find_at(h, start);
                }
                own.is_full_match(h);
            }
            // What `rx` accepts, the native matchers must accept too.
            compare(&p, &hays);
        }
        eprintln!("{accepted} garbage patterns accepted");
        assert!(accepted > 3000, "{accepted} accepted");
    }

    fn full(p: &str, h: &str) -> bool {
        Regex::new(p).unwrap_or_else(|e| panic!("{e}")).is_full_match(h)
    }

    fn find(p: &str, h: &str, start: usize) -> Option<(usize, usize)> {
        Regex::new(p).unwrap_or_else(|e| panic!("{e}")).find_at(h, start)
    }

    fn rejects(patterns: &[&str]) {
        for p in patterns {
            assert!(Regex::new(p).is_err(), "{p:?} should be rejected");
        }
    }

    #[test]
    fn escapes() {
        assert!(full(r"\101\x42\x{43}\t\n\r\f\v\a\0\12", "ABC\t\n\r\x0c\x0b\x07\0\n"));
        assert!(full(r"\_\<\>\ \#\.\*\\", "_<> #.*\\"));
        assert!(full(r"\x{10FFFF}", "\u{10FFFF}"));
        rejects(&[
            r"\8",
            r"\1",
            r"\q",
            r"\x4",
            r"\x{}",
            r"\x{110000}",
            r"\xg0",
            r"\Z",
            r"\C",
            r"\E",
            r"\pL",
            r"\p{Greek}",
            "\\",
            r"\é",
        ]);
    }

    #[test]
    fn braces_that_start_no_count_are_literal() {
        assert!(full("a{,2}", "a{,2}"));
        assert!(full("a{01}", "a{01}"));
        assert!(full("a{2", "a{2"));
        assert!(full("{}", "{}"));
        assert!(full("x{1234567890}", "x{1234567890}"));
        assert!(full("a{2}b{1,}c{0,1}", "aabbb"));
        assert!(!full("a{2}", "a{2}"));
    }

    #[test]
    fn quoting() {
        assert!(full(r"\Qa.b\E+", "a.bbb"));
        assert!(!full(r"\Qa.b\E", "axb"));
        assert!(full(r"(?i)\Qk*\E", "\u{212A}*"));
        assert!(full(r"\Qa\", "a\\"));
    }

    #[test]
    fn repetition_rules_and_limits() {
        rejects(&[
            "a**",
            "a*+",
            "a+?*",
            "a+??",
            "a{2}{3}",
            "a{1000}{1000}",
            "a{1001}",
            "a{2,1}",
            "(a{100}){100}",
            "((a{10}){10}){11}",
        ]);
        rejects(&["*", "a|*", "(*)", "(?i)*", "{2}"]);
        for ok in ["(a{10}){100}", "a{1000}", "(a*)*", "(a*)+", "^*$+", r"\b?", "a*?", "a*(?i)*"] {
            assert!(Regex::new(ok).is_ok(), "{ok}");
        }
        assert!(full("(a|)*b", "aab"));
        assert!(full("(a*)*", ""));
        assert!(full("(?:a{2}){3}", "aaaaaa") && !full("(?:a{2}){3}", "aaaaa"));
        assert!(full("a{2,4}", "aaaa") && !full("a{2,4}", "aaaaa") && !full("a{2,4}", "a"));
    }

    #[test]
    fn size_and_nesting_limits() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(full(&nested(MAX_DEPTH as usize), "a"));
        assert!(Regex::new(&nested(MAX_DEPTH as usize + 1)).is_err());
        assert!(Regex::new(&"(?:a".repeat(5000)).is_err());
        let long = "a".repeat(MAX_INSTS + 1);
        assert!(Regex::new(&long).err().is_some_and(|e| e.0.contains("too large")));
        let wide = format!("(?:{}){{1000}}", "ab".repeat(60));
        assert!(Regex::new(&wide).err().is_some_and(|e| e.0.contains("too large")));
        assert!(full("[a-z]{1000}", &"q".repeat(1000)));
        assert!(full("(?i)[\\x{0}-\\x{10FFFF}]{3}", "aK\u{10FFFF}"));
    }

    #[test]
    fn case_folding_follows_unicode_simple_folding() {
        for (p, h) in [
            ("(?i)k", "\u{212A}"),
            ("(?i)\u{212A}", "k"),
            ("(?i)K", "k"),
            ("(?i)s", "ſ"),
            ("(?i)ſ", "S"),
            ("(?i)Σ", "ς"),
        ] {
            assert!(full(p, h), "{p} {h}");
        }
        for (p, h) in
            [("(?i)[a-z]", "ſ"), ("(?i)[k]", "\u{212A}"), ("(?i)\\w", "\u{212A}"), ("(?i)é", "É"), ("(?i)[α-ω]", "Σ")]
        {
            assert!(full(p, h), "{p} {h}");
        }
        // Negated classes exclude everything that folds to a member.
        for (p, h) in [
            ("(?i)[^k]", "\u{212A}"),
            ("(?i)\\W", "ſ"),
            ("(?i)[^a-z]", "K"),
            ("(?i)ı", "I"),
            ("(?i)i", "ı"),
            ("(?i)i", "İ"),
            ("(?i)ß", "SS"),
        ] {
            assert!(!full(p, h), "{p} {h}");
        }
        assert!(full("(?i:a)A", "aA") && !full("(?i:a)A", "aa"));
        assert!(full("a(?i)b|c", "C") && !full("(?:a(?i)b)|c", "C"));
    }

    #[test]
    fn classes() {
        for (p, h) in
            [("[]a]+", "]a]"), ("[^]a]", "b"), ("[a-]+", "a-"), ("[!--]+", "!,-"), ("[--/]+", "-./"), ("[a[]+", "[a")]
        {
            assert!(full(p, h), "{p} {h}");
        }
        for (p, h) in [
            ("[a&&b]+", "a&b"),
            ("[a~~b]+", "~"),
            ("[[:alpha:][:digit:]]+", "a1Z"),
            ("[[:^alpha:]]", "1"),
            (r"[\d-z]+", "1-z"),
            (r"[^\D]", "7"),
        ] {
            assert!(full(p, h), "{p} {h}");
        }
        for (p, h) in [
            ("[[:^alpha:]]", "a"),
            ("[^a]", "a"),
            ("[a-c]", "d"),
            (r"[\s]", "\u{b}"),
            (r"\s", "\u{a0}"),
            ("[[:word:]]", "é"),
            (".", "\n"),
        ] {
            assert!(!full(p, h), "{p} {h}");
        }
        assert!(full("[^a]", "\n") && full("(?s).", "\n"));
        rejects(&["[a", "[]", "[^]", "[z-a]", "[[:foo:]]", "[a-\\d]", r"[\b]", r"[\Qa\E]", r"[\pL]", "[a-"]);
    }

    #[test]
    fn groups_and_flags() {
        for ok in ["(?P<n>a)(?<m>b)", "(?:a)", "(?i)a", "(?i-s:a)", "(?)a", "(?U)a+", "(?P<név>a)"] {
            assert!(Regex::new(ok).is_ok(), "{ok}");
        }
        rejects(&[
            "(?P<n>a)(?P<n>b)",
            "(?P<>a)",
            "(?P<a-b>c)",
            "(?P=n)",
            "(?=a)",
            "(?!a)",
            "(?<=a)",
            "(?i-)",
            "(?-)",
            "(?x)a",
            "(?",
            "(?i",
            "(a",
            "a)",
            "(?P<n",
        ]);
    }

    #[test]
    fn anchors_and_word_boundaries() {
        assert_eq!(find("(?m)^b$", "a\nb\nc", 0), Some((2, 3)));
        assert_eq!(find("^b$", "a\nb\nc", 0), None);
        assert_eq!(find("a$", "a\n", 0), None);
        assert_eq!(find(r"\Ab", "ab", 1), None);
        assert_eq!(find(r"b\z", "ab", 1), Some((1, 2)));
        assert_eq!(find(r"\bb", "ab b", 1), Some((3, 4)));
        assert_eq!(find(r"\Bb", "ab b", 0), Some((1, 2)));
        assert_eq!(find(r"\b", "é", 0), None);
        assert_eq!(find(r"é\b", "é ", 0), None);
        assert_eq!(find(r"é\b", "éa", 0), Some((0, 2)));
        assert_eq!(find(r"\bcom\b", "écom", 0), Some((2, 5)));
    }

    #[test]
    fn leftmost_longest_search() {
        assert_eq!(find("a|ab", "xab", 0), Some((1, 3)));
        assert_eq!(find("b|abc", "abc", 0), Some((0, 3)));
        assert_eq!(find("abcd|c", "abcd", 0), Some((0, 4)));
        assert_eq!(find("a*", "baa", 0), Some((0, 0)));
        assert_eq!(find("a*", "baa", 1), Some((1, 3)));
        assert_eq!(find("a+?", "aaa", 0), Some((0, 3)));
        assert_eq!(find("(?U)a+", "xaaa", 0), Some((1, 4)));
        assert_eq!(find("", "", 0), Some((0, 0)));
        assert_eq!(find("x", "ab", 3), None);
        assert_eq!(find("x", "é", 1), None);
        assert_eq!(find("é+", "aééb", 0), Some((1, 5)));
    }

    #[test]
    fn errors_name_the_pattern_and_the_problem() {
        for (p, what) in [
            ("ab(", "missing )"),
            ("ab)", "unmatched )"),
            ("ab\\", "trailing backslash"),
            ("[ab", "missing ]"),
            ("a**", "bad repetition operator"),
            (r"\pN", "Unicode"),
        ] {
            let e = Regex::new(p).err().unwrap_or_else(|| panic!("{p}")).0;
            assert!(e.contains(&format!("'{p}'")) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn unicode_classes_pass_the_check_for_other_matchers() {
        assert!(check(r"\pL+\P{Greek}[\p{Lu}x]").is_ok());
        assert!(check(r"\p{Greek").is_err());
        assert!(check(r"a**\pL").is_err());
    }

    /// Writes the inputs of `re2_cases.txt` (made by re2_cases.py): generated and garbage
    /// patterns, each with a few haystacks, one JSON array per line.
    #[test]
    #[ignore]
    fn write_re2_case_inputs() {
        let json = |s: &str| {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' | '\\' => {
                        o.push('\\');
                        o.push(c);
                    }
                    '\n' => o.push_str("\\n"),
                    '\t' => o.push_str("\\t"),
                    c => o.push(c),
                }
            }
            o + "\""
        };
        let mut r = Rng(0x5851_F42D_4C95_7F2D, 0);
        let mut lines = Vec::new();
        for k in 0..1800 {
            let (p, n) = if k < 300 {
                let mut p = String::from(if r.below(4) == 0 { "(?i)" } else { "" });
                alternation(&mut r, &mut p, 0);
                (p, 8)
            } else {
                ((0..r.below(14)).map(|_| r.pick(GARBAGE)).collect(), 4)
            };
            let hays = (0..n).map(|_| haystack(&mut r, &p));
            let items: Vec<String> = [p.clone()].into_iter().chain(hays).map(|s| json(&s)).collect();
            lines.push(format!("[{}]", items.join(",")));
        }
        std::fs::write("/tmp/re2_case_inputs.jsonl", lines.join("\n") + "\n").unwrap();
    }
}
