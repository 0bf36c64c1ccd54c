//! Rhai for rules: the shared sandboxed engine, what conditions read (the tracker lent
//! through a thread-local frame), the helpers, and the static checks `check` runs on an
//! expression before it ever sees a tracker.

pub(crate) mod context;
pub(crate) mod engine;
pub(crate) mod fast;
pub(crate) mod fields;
pub(crate) mod scan;
pub(crate) mod schema;
pub(crate) mod spec;

use rhai::{AST, Dynamic, Engine, EvalAltResult, INT, Scope};

use super::set::Expression;

/// The number of context entries at the bottom of an evaluation scope
/// (`state`, `prev`, `tracker`, `readings`, `iot`); `now` follows them.
const CONTEXT_LEN: usize = 5;

/// Sets `now` (epoch seconds) in an evaluation scope and drops anything a previous
/// script left behind. `now` is a constant, so it is replaced rather than assigned.
pub(crate) fn set_now(scope: &mut Scope<'static>, now_s: INT) {
    scope.rewind(CONTEXT_LEN);
    scope.push_constant("now", now_s);
}

/// Which evaluator answered an expression: the label `outcome` of
/// `navixy_alerts_rule_fast_path_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The direct evaluator ([`fast`]).
    Fast,
    /// Rhai: the expression is outside the subset, or the direct evaluator stepped aside.
    Fallback,
}

impl Answer {
    pub const ALL: [Answer; 2] = [Answer::Fast, Answer::Fallback];

    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Fast => "fast",
            Answer::Fallback => "fallback",
        }
    }
}

/// Evaluates one compiled expression in a shard's scope (inside a frame), leaving the
/// scope as it was: directly when it is in the fast subset, else (or when the direct
/// evaluator steps aside) with Rhai.
pub(crate) fn eval(
    engine: &Engine,
    scope: &mut Scope<'static>,
    expr: &Expression,
) -> Result<Dynamic, Box<EvalAltResult>> {
    eval_answered(engine, scope, expr).0
}

/// [`eval`], also telling which evaluator answered.
pub(crate) fn eval_answered(
    engine: &Engine,
    scope: &mut Scope<'static>,
    expr: &Expression,
) -> (Result<Dynamic, Box<EvalAltResult>>, Answer) {
    if let Some(fast) = &expr.fast
        && let Some(Ok(v)) = context::with(|fr| fr.map(|fr| fast.eval(fr)))
    {
        return (Ok(v), Answer::Fast);
    }
    (eval_rhai(engine, scope, &expr.ast), Answer::Fallback)
}

/// Evaluates with Rhai only.
pub(crate) fn eval_rhai(
    engine: &Engine,
    scope: &mut Scope<'static>,
    ast: &AST,
) -> Result<Dynamic, Box<EvalAltResult>> {
    let base = scope.len();
    let result = engine.eval_ast_with_scope::<Dynamic>(scope, ast);
    scope.rewind(base);
    result
}

/// A value of an expression as JSON (alert `value`, test expectations): numbers, strings
/// and booleans as themselves, `()` as `None`, anything else as its display text.
pub(crate) fn to_json(v: &Dynamic) -> Option<serde_json::Value> {
    if v.is_unit() {
        return None;
    }
    if let Ok(b) = v.as_bool() {
        return Some(serde_json::Value::Bool(b));
    }
    if let Ok(i) = v.as_int() {
        return Some(serde_json::Value::from(i));
    }
    if let Ok(f) = v.as_float() {
        // Navixy's integers (speed, percent) arrive as floats; 99.0 reads better as 99.
        if f.fract() == 0.0 && f.abs() < 9.0e15 {
            return Some(serde_json::Value::from(f as i64));
        }
        return Some(
            serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
        );
    }
    if let Some(s) = v.read_lock::<rhai::ImmutableString>() {
        return Some(serde_json::Value::String(s.to_string()));
    }
    if (v.is_map() || v.is_array())
        && let Ok(j) = rhai::serde::from_dynamic::<serde_json::Value>(v)
    {
        return Some(j);
    }
    Some(serde_json::Value::String(v.to_string()))
}
