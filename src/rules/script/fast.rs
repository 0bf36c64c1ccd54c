//! A direct evaluator for the common subset of rule expressions: comparisons, `&&`, `||`,
//! `!`, `??`, arithmetic, literals, `params`, `now`, context paths and the helpers.
//!
//! Why: a Rhai evaluation costs a few hundred nanoseconds before it reads anything (a
//! runtime state, function resolution per call), and most conditions are one or two
//! comparisons. This evaluator walks a small tree over the same leaf readers and helpers
//! the Rhai getters use, with Rhai's operator semantics (including its float comparisons
//! within an epsilon and `()` comparing unequal to everything else).
//!
//! It only ever answers what Rhai would answer: whatever it does not cover (statements,
//! loops, methods, strings built at run time, overflow, any error) makes it step aside
//! ([`Fallback`]) and the compiled Rhai AST runs instead, which also produces the error
//! message. A differential test checks both agree.

use rhai::{Dynamic, FLOAT, INT, ImmutableString};

use super::context::{self, ScriptFrame, StateLeaf, StateObject, TrackerLeaf, Which, find_reading};
use super::engine::{MAX_STRING_SIZE, helpers};
use super::spec::{self, Kind as Helper};

/// The direct evaluator cannot answer; Rhai must.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fallback;

/// A compiled expression of the subset.
#[derive(Debug, Clone)]
pub(crate) struct FastExpr {
    root: Node,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// An object of the context: only its presence can be tested (`prev == ()`).
#[derive(Debug, Clone, PartialEq)]
enum Object {
    State(Which, StateObject),
    Reading(ImmutableString),
    Iot(ImmutableString),
    /// `tracker`, `readings`, `iot`: always there.
    Always,
}

#[derive(Debug, Clone)]
enum Node {
    Const(Dynamic),
    /// `params.x`: a constant too, but Rhai's optimizer sees it as one only after a pass,
    /// which decides how a `??` chain folds.
    Param(Dynamic),
    Now,
    State(Which, StateLeaf),
    Tracker(TrackerLeaf),
    Reading(ImmutableString, &'static str),
    Iot(ImmutableString, &'static str),
    /// `changed("literal path")`, parsed once.
    Changed(context::FieldPath),
    /// `object == ()` (`negated`: `!=`).
    Absent {
        object: Object,
        negated: bool,
    },
    Not(Box<Node>),
    Neg(Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    /// `a ?? b ?? c`, flattened as Rhai does.
    Coalesce(Vec<Node>),
    Call(Helper, Vec<Node>),
    /// `nearby(radius).len()`: counted without the array (the subset has no arrays).
    NearbyLen(Box<Node>),
}

impl FastExpr {
    /// Compiles `text` if it is in the subset; `params` are the rule's constants.
    pub fn compile(text: &str, params: &rhai::Map) -> Option<FastExpr> {
        let tokens = lex(text)?;
        let mut p = Parser {
            tokens: &tokens,
            pos: 0,
            params,
        };
        let root = p.expr(0)?.into_value()?;
        (p.pos == tokens.len()).then(|| FastExpr {
            root: fold_chains(root),
        })
    }

    /// Evaluates in a frame.
    pub fn eval(&self, fr: &ScriptFrame<'_>) -> Result<Dynamic, Fallback> {
        eval(&self.root, fr)
    }
}

// ---- lexing ----

#[derive(Debug, Clone, PartialEq)]
enum Tok<'a> {
    Int(INT),
    Float(FLOAT),
    Str(ImmutableString),
    Ident(&'a str),
    Op(&'static str),
}

/// The operators of the subset, longest first where one starts another.
const OPS: [&str; 22] = [
    "==", "!=", "<=", ">=", "&&", "||", "??", "?.", "<", ">", "!", "+", "-", "*", "/", "%", "(",
    ")", "[", "]", ".", ",",
];

/// Tokens of the subset; `None` for anything outside it.
fn lex(src: &str) -> Option<Vec<Tok<'_>>> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            continue;
        }
        if c == b'/' && b.get(i + 1) == Some(&b'*') {
            // Nested block comments are left to Rhai.
            let end = src[i + 2..].find("*/")?;
            if src[i + 2..i + 2 + end].contains("/*") {
                return None;
            }
            i += end + 4;
            continue;
        }
        if c.is_ascii_digit() {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                i += 1;
            }
            let mut float = false;
            if b.get(i) == Some(&b'.') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                float = true;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'_') {
                    i += 1;
                }
            }
            if matches!(b.get(i), Some(b'e' | b'E')) {
                float = true;
                i += 1;
                if matches!(b.get(i), Some(b'+' | b'-')) {
                    i += 1;
                }
                let digits = i;
                while i < b.len() && b[i].is_ascii_digit() {
                    i += 1;
                }
                if i == digits {
                    return None;
                }
            }
            // `1.foo()`, `0x10`, `1.` and friends are Rhai's.
            if b.get(i)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
            {
                return None;
            }
            let text: String = src[start..i].chars().filter(|c| *c != '_').collect();
            out.push(if float {
                Tok::Float(text.parse().ok()?)
            } else {
                Tok::Int(text.parse().ok()?)
            });
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(&src[start..i]));
            continue;
        }
        if c == b'"' {
            let mut text = String::new();
            i += 1;
            loop {
                match b.get(i)? {
                    b'"' => break,
                    b'\\' => {
                        text.push(match b.get(i + 1)? {
                            b'"' => '"',
                            b'\\' => '\\',
                            b'n' => '\n',
                            b't' => '\t',
                            b'r' => '\r',
                            _ => return None,
                        });
                        i += 2;
                    }
                    _ => {
                        let ch = src[i..].chars().next()?;
                        text.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            i += 1;
            out.push(Tok::Str(text.into()));
            continue;
        }
        let op = OPS.iter().find(|op| src[i..].starts_with(**op))?;
        // Operators that start a longer one of Rhai's (`**`, `..`, `=>`, `|`...) are Rhai's.
        let next = b.get(i + op.len()).copied();
        let longer = matches!(
            (*op, next),
            ("*", Some(b'*' | b'='))
                | ("+" | "-" | "/" | "%", Some(b'='))
                | (".", Some(b'.'))
                | ("<", Some(b'<'))
                | (">", Some(b'>'))
                | ("-", Some(b'>'))
        );
        if longer {
            return None;
        }
        out.push(Tok::Op(if *op == "?." { "." } else { op }));
        i += op.len();
    }
    Some(out)
}

// ---- parsing ----

/// A parsed operand: a value, or an object whose only use is a presence test.
enum Operand {
    Value(Node),
    Object(Object),
}

impl Operand {
    fn into_value(self) -> Option<Node> {
        match self {
            Operand::Value(n) => Some(n),
            Operand::Object(_) => None,
        }
    }
}

struct Parser<'t, 'a> {
    tokens: &'t [Tok<'a>],
    pos: usize,
    params: &'t rhai::Map,
}

/// Rhai's binary precedences (`Token::precedence`).
fn binary_op(tok: &Tok<'_>) -> Option<(u8, &'static str)> {
    let Tok::Op(op) = tok else {
        return None;
    };
    let prec = match *op {
        "||" => 30,
        "&&" => 60,
        "==" | "!=" => 90,
        "<" | "<=" | ">" | ">=" => 130,
        "??" => 135,
        "+" | "-" => 150,
        "*" | "/" | "%" => 180,
        _ => return None,
    };
    Some((prec, op))
}

impl<'t, 'a> Parser<'t, 'a> {
    fn peek(&self) -> Option<&'t Tok<'a>> {
        self.tokens.get(self.pos)
    }

    fn eat(&mut self, op: &'static str) -> bool {
        if self.peek() == Some(&Tok::Op(op)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Precedence climbing; every binary operator is left-associative.
    fn expr(&mut self, min_prec: u8) -> Option<Operand> {
        let mut lhs = self.unary()?;
        while let Some((prec, op)) = self.peek().and_then(binary_op) {
            // Only operators binding tighter than the caller's: left associativity.
            if prec <= min_prec {
                break;
            }
            self.pos += 1;
            let rhs = self.expr(prec)?;
            lhs = combine(op, lhs, rhs)?;
        }
        Some(lhs)
    }

    fn unary(&mut self) -> Option<Operand> {
        if self.eat("!") {
            let v = self.unary()?.into_value()?;
            return Some(Operand::Value(Node::Not(Box::new(v))));
        }
        if self.eat("-") {
            let v = self.unary()?.into_value()?;
            return Some(Operand::Value(match v {
                // Rhai reads `-5` as a negative literal.
                Node::Const(d) | Node::Param(d) if d.is_int() => {
                    Node::Const(Dynamic::from_int(d.as_int().ok()?.checked_neg()?))
                }
                Node::Const(d) | Node::Param(d) if d.is_float() => {
                    Node::Const(Dynamic::from_float(-d.as_float().ok()?))
                }
                other => Node::Neg(Box::new(other)),
            }));
        }
        self.primary()
    }

    fn primary(&mut self) -> Option<Operand> {
        let tok = self.peek()?.clone();
        self.pos += 1;
        let node = match tok {
            Tok::Int(i) => Node::Const(Dynamic::from_int(i)),
            Tok::Float(f) => Node::Const(Dynamic::from_float(f)),
            Tok::Str(s) => Node::Const(Dynamic::from(s)),
            Tok::Op("(") => {
                if self.eat(")") {
                    Node::Const(Dynamic::UNIT)
                } else {
                    let inner = self.expr(0)?;
                    if !self.eat(")") {
                        return None;
                    }
                    return self.no_postfix(inner);
                }
            }
            Tok::Ident("true") => Node::Const(Dynamic::TRUE),
            Tok::Ident("false") => Node::Const(Dynamic::FALSE),
            Tok::Ident("now") => Node::Now,
            Tok::Ident("params") => {
                if !self.eat(".") {
                    return None;
                }
                let Some(Tok::Ident(name)) = self.peek().cloned() else {
                    return None;
                };
                self.pos += 1;
                let v = self.params.get(name).cloned().unwrap_or(Dynamic::UNIT);
                // Only scalars: arrays and maps have methods and indexing of their own.
                if !(v.is_unit() || v.is_int() || v.is_float() || v.is_bool() || v.is_string()) {
                    return None;
                }
                Node::Param(v)
            }
            Tok::Ident(root @ ("state" | "prev" | "tracker" | "readings" | "iot")) => {
                return self.path(root);
            }
            Tok::Ident(name) if matches!(self.peek(), Some(Tok::Op("("))) => {
                self.pos += 1;
                let mut args = Vec::new();
                if !self.eat(")") {
                    loop {
                        args.push(self.expr(0)?.into_value()?);
                        if self.eat(")") {
                            break;
                        }
                        if !self.eat(",") {
                            return None;
                        }
                    }
                }
                let helper = spec::lookup(name, args.len())?.kind;
                match (helper, args.as_slice()) {
                    (Helper::Changed, [Node::Const(path) | Node::Param(path)])
                        if path.is_string() =>
                    {
                        let path = path.read_lock::<ImmutableString>()?;
                        Node::Changed(context::FieldPath::parse(&path)?)
                    }
                    // `minutes(10)`, `hours(params.h)`: constants, folded once here.
                    (Helper::Duration(factor), [Node::Const(n) | Node::Param(n)]) => {
                        Node::Const(helpers::duration(n, factor)?)
                    }
                    (Helper::Nearby, [_]) if self.method_len() => {
                        let radius = args.pop()?;
                        Node::NearbyLen(Box::new(radius))
                    }
                    _ => Node::Call(helper, args),
                }
            }
            _ => return None,
        };
        self.no_postfix(Operand::Value(node))
    }

    /// Takes `.len()` when it comes next.
    fn method_len(&mut self) -> bool {
        let len = matches!(
            self.tokens.get(self.pos..self.pos + 4),
            Some([Tok::Op("."), Tok::Ident("len"), Tok::Op("("), Tok::Op(")")])
        );
        if len {
            self.pos += 4;
        }
        len
    }

    /// A value may not be followed by `.x`, `[i]` or `(...)`: those are Rhai's.
    fn no_postfix(&self, operand: Operand) -> Option<Operand> {
        match self.peek() {
            Some(Tok::Op("." | "[" | "(")) => None,
            _ => Some(operand),
        }
    }

    /// `root.a.b[i]`, resolved to a leaf or an object.
    fn path(&mut self, root: &str) -> Option<Operand> {
        let mut segments: Vec<&'a str> = Vec::new();
        let mut index: Option<INT> = None;
        loop {
            if index.is_none() && self.eat(".") {
                let Some(Tok::Ident(seg)) = self.peek().cloned() else {
                    return None;
                };
                self.pos += 1;
                segments.push(seg);
            } else if index.is_none() && self.eat("[") {
                let i = match self.peek().cloned() {
                    Some(Tok::Int(i)) => i,
                    Some(Tok::Op("-")) => {
                        self.pos += 1;
                        match self.peek().cloned() {
                            Some(Tok::Int(i)) => -i,
                            _ => return None,
                        }
                    }
                    _ => return None,
                };
                self.pos += 1;
                if !self.eat("]") {
                    return None;
                }
                index = Some(i);
            } else {
                break;
            }
        }
        if matches!(self.peek(), Some(Tok::Op("(" | "." | "["))) {
            return None;
        }
        resolve(root, &segments, index)
    }
}

fn resolve(root: &str, seg: &[&str], index: Option<INT>) -> Option<Operand> {
    let leaf = |n: Node| Some(Operand::Value(n));
    let object = |o: Object| Some(Operand::Object(o));
    match root {
        "state" | "prev" => {
            let w = if root == "state" {
                Which::Current
            } else {
                Which::Prev
            };
            let st = |l: StateLeaf| leaf(Node::State(w, l));
            let ob = |o: StateObject| object(Object::State(w, o));
            match (seg, index) {
                ([], None) => ob(StateObject::State),
                (["gps"], None) => ob(StateObject::Gps),
                (["gps", "location"], None) => ob(StateObject::Location),
                (["gps", "location", f], None) => st(StateLeaf::location(f)?),
                (["gps", f], None) => st(StateLeaf::gps(f)?),
                (["gsm"], None) => ob(StateObject::Gsm),
                (["gsm", f], None) => st(StateLeaf::gsm(f)?),
                (["inputs"], None) => ob(StateObject::Inputs),
                (["outputs"], None) => ob(StateObject::Outputs),
                (["inputs"], Some(i)) => st(StateLeaf::Input(i)),
                (["outputs"], Some(i)) => st(StateLeaf::Output(i)),
                (["additional"], None) => ob(StateObject::Additional),
                (["additional", name], None) => ob(StateObject::AdditionalField((*name).into())),
                (["additional", name, "value"], None) => {
                    st(StateLeaf::AdditionalValue((*name).into()))
                }
                (["additional", name, "updated"], None) => {
                    st(StateLeaf::AdditionalUpdated((*name).into()))
                }
                ([f], None) => st(StateLeaf::top(f)?),
                _ => None,
            }
        }
        "tracker" => match (seg, index) {
            ([], None) => object(Object::Always),
            ([f], None) => leaf(Node::Tracker(TrackerLeaf::named(f)?)),
            _ => None,
        },
        "readings" => match (seg, index) {
            ([], None) => object(Object::Always),
            ([name], None) => object(Object::Reading((*name).into())),
            ([name, f], None) => {
                let field = context::READING_FIELDS.iter().find(|x| *x == f)?;
                leaf(Node::Reading((*name).into(), field))
            }
            _ => None,
        },
        "iot" => match (seg, index) {
            ([], None) => object(Object::Always),
            ([name], None) => object(Object::Iot((*name).into())),
            ([name, f], None) => {
                let field = context::IOT_FIELDS.iter().find(|x| *x == f)?;
                leaf(Node::Iot((*name).into(), field))
            }
            _ => None,
        },
        _ => None,
    }
}

/// `a ?? b`: Rhai's parser flattens `??` chains, parentheses or not; [`fold_chains`]
/// folds them once the whole expression is parsed.
fn coalesce(l: Node, r: Node) -> Node {
    let mut items = Vec::new();
    for n in [l, r] {
        match n {
            Node::Coalesce(inner) => items.extend(inner),
            other => items.push(other),
        }
    }
    Node::Coalesce(items)
}

/// Folds every `??` chain of a parsed expression as Rhai's optimizer does.
fn fold_chains(node: Node) -> Node {
    let fold = |n: Box<Node>| Box::new(fold_chains(*n));
    match node {
        Node::Not(x) => Node::Not(fold(x)),
        Node::Neg(x) => Node::Neg(fold(x)),
        Node::Binary(op, l, r) => Node::Binary(op, fold(l), fold(r)),
        Node::And(l, r) => Node::And(fold(l), fold(r)),
        Node::Or(l, r) => Node::Or(fold(l), fold(r)),
        Node::Call(h, args) => Node::Call(h, args.into_iter().map(fold_chains).collect()),
        Node::NearbyLen(radius) => Node::NearbyLen(Box::new(fold_chains(*radius))),
        Node::Coalesce(items) => fold_chain(items.into_iter().map(fold_chains).collect()),
        other => other,
    }
}

/// One flattened `??` chain as Rhai's optimizer leaves it. Each pass walks the operands:
/// it drops a `()` literal, cuts the chain after any other constant, and folds the rest
/// (`params.x` becomes its value, seen as a literal only on the next pass). After each
/// pass a single operand replaces the chain and an empty chain becomes `false`; passes
/// repeat while something changed. So `() ?? ()` and `params.a ?? params.b ?? ()` (both
/// `()`) are `false`, while `params.a ?? ()` is `()`: the chain is down to one operand
/// before `params.a` reads as a literal.
fn fold_chain(items: Vec<Node>) -> Node {
    // An operand and the passes before Rhai sees it as a literal.
    let mut items: Vec<(Node, u8)> = items
        .into_iter()
        .map(|n| {
            let passes = u8::from(matches!(n, Node::Param(_)));
            (n, passes)
        })
        .collect();
    loop {
        let mut changed = false;
        let mut i = 0;
        while i < items.len() {
            let (node, passes) = &mut items[i];
            match node {
                Node::Const(d) | Node::Param(d) if *passes == 0 && d.is_unit() => {
                    items.remove(i);
                    changed = true;
                    continue;
                }
                Node::Const(_) | Node::Param(_) if *passes == 0 => {
                    if items.len() > i + 1 {
                        items.truncate(i + 1);
                        changed = true;
                    }
                    break;
                }
                _ => {}
            }
            if *passes > 0 {
                *passes -= 1;
                changed = true;
            }
            i += 1;
        }
        match items.len() {
            0 => return Node::Const(Dynamic::FALSE),
            1 => return items.remove(0).0,
            _ if !changed => return Node::Coalesce(items.into_iter().map(|(n, _)| n).collect()),
            _ => {}
        }
    }
}

fn combine(op: &'static str, lhs: Operand, rhs: Operand) -> Option<Operand> {
    let is_unit = |n: &Node| matches!(n, Node::Const(d) | Node::Param(d) if d.is_unit());
    // Presence tests: an object compared with `()`.
    match (op, lhs, rhs) {
        ("==" | "!=", Operand::Object(object), Operand::Value(v))
        | ("==" | "!=", Operand::Value(v), Operand::Object(object))
            if is_unit(&v) =>
        {
            Some(Operand::Value(Node::Absent {
                object,
                negated: op == "!=",
            }))
        }
        (_, Operand::Object(_), _) | (_, _, Operand::Object(_)) => None,
        (op, Operand::Value(l), Operand::Value(r)) => {
            let (l, r) = (Box::new(l), Box::new(r));
            Some(Operand::Value(match op {
                "&&" => Node::And(l, r),
                "||" => Node::Or(l, r),
                "??" => coalesce(*l, *r),
                "==" => Node::Binary(BinOp::Eq, l, r),
                "!=" => Node::Binary(BinOp::Ne, l, r),
                "<" => Node::Binary(BinOp::Lt, l, r),
                "<=" => Node::Binary(BinOp::Le, l, r),
                ">" => Node::Binary(BinOp::Gt, l, r),
                ">=" => Node::Binary(BinOp::Ge, l, r),
                "+" => Node::Binary(BinOp::Add, l, r),
                "-" => Node::Binary(BinOp::Sub, l, r),
                "*" => Node::Binary(BinOp::Mul, l, r),
                "/" => Node::Binary(BinOp::Div, l, r),
                "%" => Node::Binary(BinOp::Rem, l, r),
                _ => return None,
            }))
        }
    }
}

// ---- evaluation ----

fn eval(node: &Node, fr: &ScriptFrame<'_>) -> Result<Dynamic, Fallback> {
    Ok(match node {
        Node::Const(d) | Node::Param(d) => d.clone(),
        Node::Now => Dynamic::from_int(fr.now_ms.div_euclid(1000)),
        Node::State(w, leaf) => checked(
            fr.source(*w)
                .map_or(Dynamic::UNIT, |s| context::state_leaf(s, fr, leaf)),
        )?,
        Node::Tracker(leaf) => checked(context::tracker_leaf(fr, *leaf))?,
        Node::Reading(name, field) => checked(context::reading_field_in(fr, name, field))?,
        Node::Iot(name, field) => checked(context::iot_field_in(fr, name, field))?,
        Node::Changed(path) => Dynamic::from_bool(context::changed(fr.tracker, path)),
        Node::Absent { object, negated } => {
            let present = match object {
                Object::State(w, o) => context::state_present(fr.source(*w), o),
                Object::Reading(name) => find_reading(&fr.tracker.readings, name).is_some(),
                Object::Iot(name) => fr.tracker.iot.contains_key(name.as_str()),
                Object::Always => true,
            };
            Dynamic::from_bool(present == *negated)
        }
        Node::Not(inner) => {
            let v = eval(inner, fr)?;
            if let Ok(b) = v.as_bool() {
                Dynamic::from_bool(!b)
            } else if v.is_unit() {
                Dynamic::UNIT
            } else {
                return Err(Fallback);
            }
        }
        Node::Neg(inner) => {
            let v = eval(inner, fr)?;
            if let Ok(i) = v.as_int() {
                Dynamic::from_int(i.checked_neg().ok_or(Fallback)?)
            } else if let Ok(f) = v.as_float() {
                Dynamic::from_float(-f)
            } else {
                return Err(Fallback);
            }
        }
        Node::And(l, r) => {
            let l = eval(l, fr)?.as_bool().map_err(|_| Fallback)?;
            if !l {
                return Ok(Dynamic::FALSE);
            }
            Dynamic::from_bool(eval(r, fr)?.as_bool().map_err(|_| Fallback)?)
        }
        Node::Or(l, r) => {
            let l = eval(l, fr)?.as_bool().map_err(|_| Fallback)?;
            if l {
                return Ok(Dynamic::TRUE);
            }
            Dynamic::from_bool(eval(r, fr)?.as_bool().map_err(|_| Fallback)?)
        }
        Node::Coalesce(items) => {
            let mut value = Dynamic::UNIT;
            for item in items {
                value = eval(item, fr)?;
                if !value.is_unit() {
                    break;
                }
            }
            value
        }
        Node::Binary(op, l, r) => {
            let l = eval(l, fr)?;
            let r = eval(r, fr)?;
            binary(*op, &l, &r)?
        }
        // Helpers take at most four arguments, evaluated left to right into an array of
        // their number: no allocation, and no placeholder values to make and drop.
        Node::Call(helper, args) => match &args[..] {
            [] => call(*helper, &[], fr)?,
            [a] => call(*helper, &[eval(a, fr)?], fr)?,
            [a, b] => call(*helper, &[eval(a, fr)?, eval(b, fr)?], fr)?,
            [a, b, c] => call(*helper, &[eval(a, fr)?, eval(b, fr)?, eval(c, fr)?], fr)?,
            [a, b, c, d] => {
                let values = [eval(a, fr)?, eval(b, fr)?, eval(c, fr)?, eval(d, fr)?];
                call(*helper, &values, fr)?
            }
            _ => return Err(Fallback),
        },
        Node::NearbyLen(radius) => match helpers::nearby_count(fr, &eval(radius, fr)?) {
            Ok(Some(n)) => Dynamic::from_int(n),
            // `().len()` and a bad radius are Rhai's errors to word.
            _ => return Err(Fallback),
        },
    })
}

/// What a getter returns, as Rhai lets it through: Rhai checks every value a function
/// returns against the engine's size limits (a string over [`MAX_STRING_SIZE`] bytes is
/// an error). Arrays and maps (a reading whose JSON value is one) are left to Rhai.
fn checked(d: Dynamic) -> Result<Dynamic, Fallback> {
    if d.is_string() {
        match d.as_immutable_string_ref() {
            Ok(s) if s.len() <= MAX_STRING_SIZE => {}
            _ => return Err(Fallback),
        }
    } else if d.is_array() || d.is_map() {
        return Err(Fallback);
    }
    Ok(d)
}

fn call(helper: Helper, args: &[Dynamic], fr: &ScriptFrame<'_>) -> Result<Dynamic, Fallback> {
    let text = |d: &Dynamic| d.read_lock::<ImmutableString>().map(|s| s.clone());
    match (helper, args) {
        (Helper::Duration(factor), [n]) => helpers::duration(n, factor).ok_or(Fallback),
        (Helper::Since, [t]) => match helpers::since(fr, t) {
            Some(Ok(v)) => Ok(v),
            _ => Err(Fallback),
        },
        (Helper::Changed, [path]) => {
            helpers::changed(fr, &text(path).ok_or(Fallback)?).map_err(|_| Fallback)
        }
        (Helper::InZone, [name]) => {
            helpers::in_zone(fr, &text(name).ok_or(Fallback)?).map_err(|_| Fallback)
        }
        // An array: the subset does not compute with those, Rhai does.
        (Helper::Zones, []) => Err(Fallback),
        (Helper::Nearby, [_]) => Err(Fallback),
        (Helper::DistanceTo, [other]) => helpers::distance_to(fr, other).map_err(|_| Fallback),
        (Helper::Distance, [a, b, c, d]) => Ok(helpers::distance(a, b, c, d)),
        (Helper::Window(kind), [name, window]) => {
            helpers::window(fr, kind, &text(name).ok_or(Fallback)?, window).map_err(|_| Fallback)
        }
        (Helper::DistanceKm, [window]) => helpers::distance_km(fr, window).map_err(|_| Fallback),
        _ => Err(Fallback),
    }
}

/// The kinds of value the subset computes with.
#[derive(Clone, Copy)]
enum Kind {
    Unit,
    Bool(bool),
    Int(INT),
    Float(FLOAT),
    Str,
    Other,
}

/// Asks `is_*` before `as_*`: an `as_*` on a value of another type names that type for
/// its error, and most operands were asked `as_bool` first.
fn kind(d: &Dynamic) -> Kind {
    if d.is_unit() {
        Kind::Unit
    } else if d.is_bool() {
        d.as_bool().map_or(Kind::Other, Kind::Bool)
    } else if d.is_int() {
        d.as_int().map_or(Kind::Other, Kind::Int)
    } else if d.is_float() {
        d.as_float().map_or(Kind::Other, Kind::Float)
    } else if d.is_string() {
        Kind::Str
    } else {
        Kind::Other
    }
}

/// Rhai's built-in binary operators on the kinds above; anything Rhai would reject (or
/// that needs an allocation, like string `+`) falls back.
fn binary(op: BinOp, l: &Dynamic, r: &Dynamic) -> Result<Dynamic, Fallback> {
    use BinOp::*;
    let cmp = |o: std::cmp::Ordering| -> Result<Dynamic, Fallback> {
        Ok(Dynamic::from_bool(match op {
            Eq => o.is_eq(),
            Ne => o.is_ne(),
            Lt => o.is_lt(),
            Le => o.is_le(),
            Gt => o.is_gt(),
            Ge => o.is_ge(),
            Add | Sub | Mul | Div | Rem => return Err(Fallback),
        }))
    };
    match (kind(l), kind(r)) {
        (Kind::Int(x), Kind::Int(y)) => match op {
            Add => x.checked_add(y).map(Dynamic::from_int).ok_or(Fallback),
            Sub => x.checked_sub(y).map(Dynamic::from_int).ok_or(Fallback),
            Mul => x.checked_mul(y).map(Dynamic::from_int).ok_or(Fallback),
            Div if y != 0 => x.checked_div(y).map(Dynamic::from_int).ok_or(Fallback),
            Div => Err(Fallback),
            Rem => x.checked_rem(y).map(Dynamic::from_int).ok_or(Fallback),
            _ => cmp(x.cmp(&y)),
        },
        (Kind::Float(x), Kind::Float(y)) => float_op(op, x, y),
        (Kind::Float(x), Kind::Int(y)) => float_op(op, x, y as FLOAT),
        (Kind::Int(x), Kind::Float(y)) => float_op(op, x as FLOAT, y),
        (Kind::Bool(x), Kind::Bool(y)) => cmp(x.cmp(&y)),
        (Kind::Str, Kind::Str) => {
            let (Ok(x), Ok(y)) = (l.as_immutable_string_ref(), r.as_immutable_string_ref()) else {
                return Err(Fallback);
            };
            cmp(x.as_str().cmp(y.as_str()))
        }
        (Kind::Unit, Kind::Unit) => match op {
            Eq => Ok(Dynamic::TRUE),
            Ne | Lt | Le | Gt | Ge => Ok(Dynamic::FALSE),
            _ => Err(Fallback),
        },
        (Kind::Other, _) | (_, Kind::Other) => Err(Fallback),
        // Different types, at least one not numeric.
        _ => match op {
            Ne => Ok(Dynamic::TRUE),
            Eq | Lt | Le | Gt | Ge => Ok(Dynamic::FALSE),
            _ => Err(Fallback),
        },
    }
}

/// Rhai's float operators: comparisons within a relative epsilon.
fn float_op(op: BinOp, x: FLOAT, y: FLOAT) -> Result<Dynamic, Fallback> {
    use BinOp::*;
    let max = if x * y == 0.0 {
        1.0
    } else {
        x.abs().max(y.abs())
    };
    let eps = FLOAT::EPSILON;
    let b = |v: bool| Ok(Dynamic::from_bool(v));
    match op {
        Add => Ok(Dynamic::from_float(x + y)),
        Sub => Ok(Dynamic::from_float(x - y)),
        Mul => Ok(Dynamic::from_float(x * y)),
        Div => Ok(Dynamic::from_float(x / y)),
        Rem => Ok(Dynamic::from_float(x % y)),
        Eq => b(max == 0.0 || (x - y).abs() / max <= eps),
        Ne => b(max != 0.0 && (x - y).abs() / max > eps),
        Gt => b(max != 0.0 && (x - y) / max > eps),
        Ge => b(max == 0.0 || (x - y) / max > -eps),
        Lt => b(max != 0.0 && (y - x) / max > eps),
        Le => b(max == 0.0 || (y - x) / max > -eps),
    }
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stock_conditions_are_in_the_subset() {
        let params = rhai::Map::new();
        for text in [
            "state.ignition == true",
            "state.gps.speed > params.max",
            "changed(\"inputs\") && prev.inputs != ()",
            "in_zone(\"depot\") == false",
            "readings.board_voltage.value < 22.0 || readings.board_voltage.value > 29.5",
            "tracker.lifecycle == \"active\" && since(tracker.last_data_at) > minutes(30)",
            "fuel_drop(\"lls_level_1\", minutes(10)) > 15.0 && state.movement_status != \"moving\"",
            "state.ignition ?? false",
        ] {
            assert!(FastExpr::compile(text, &params).is_some(), "{text}");
        }
        for text in [
            "let x = 1; x > 0",
            "state.inputs.len() > 2",
            "loop { }",
            "1..3",
            "x = 1",
        ] {
            assert!(FastExpr::compile(text, &params).is_none(), "{text}");
        }
    }

    /// Every expression of every stock rule file compiles to the subset (a regression
    /// names the expressions that fall back to Rhai).
    #[test]
    fn stock_rule_files_are_in_the_subset() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        let zones = [(
            "depot".to_string(),
            crate::config::ZoneConfig {
                circle: Some(crate::config::Circle {
                    lat: 52.52,
                    lng: 13.40,
                    radius_m: 300.0,
                }),
                polygon: None,
                sausage: None,
            },
        )];
        let options = crate::rules::LoadOptions {
            zones: crate::rules::zones::Zones::local(&zones.into_iter().collect()),
            ..crate::rules::LoadOptions::default()
        };
        let set = crate::rules::RuleSet::from_files(&files, &options).unwrap();
        let mut rhai_only = Vec::new();
        for rule in set.rules() {
            let fields = [
                ("when", Some(&rule.when)),
                ("clear_when", rule.clear_when.as_ref()),
                ("value", rule.value.as_ref()),
                ("key", rule.key.as_ref()),
            ];
            for (field, expr) in fields {
                if expr.is_some_and(|e| e.fast.is_none()) {
                    rhai_only.push(format!("{}.{field}", rule.name));
                }
            }
        }
        // `nearby(r).len()` is counted on the fast path; `nearby(r)` itself, an array, is
        // left to Rhai when it is evaluated (the value, at a transition).
        assert_eq!(rhai_only, Vec::<String>::new());
    }
}
