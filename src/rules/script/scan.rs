//! A light lexer over rule expressions, for what Rhai's parser does not tell us: which
//! context variables and helpers an expression uses (so evaluation can skip rules whose
//! inputs did not change), which property paths it reads (so `check` can name a typo such
//! as `state.ignitoin` before it silently reads `()`), and the literal arguments of
//! `in_zone("...")` and `changed("...")`.
//!
//! It only has to over-approximate: a name it sees that is not really a variable (a word
//! in a comment-free string interpolation, say) costs an evaluation, never a missed one.
//! Rhai itself still parses and compiles every expression.

use std::collections::BTreeSet;

/// One lexical token with its byte offset in the source.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub kind: TokenKind<'a>,
    pub start: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum TokenKind<'a> {
    Ident(&'a str),
    /// A string literal's content (escapes resolved for the common cases).
    Str(String),
    /// `.` and `?.` both read as `.`; also `(`, `)`, `[`, `]`, `,`.
    Punct(char),
    /// Numbers and operators: nothing we look at.
    Other,
}

/// Splits `src` into tokens, skipping comments and whitespace. Interpolated strings
/// (`` `...${expr}...` ``) contribute the tokens of their embedded expressions.
pub(crate) fn tokenize(src: &str) -> Vec<Token<'_>> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    // Depth of `${ ... }` inside backtick strings, with the brace depth at which each opened.
    let mut interp: Vec<usize> = Vec::new();
    let mut braces = 0usize;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                // Rhai block comments nest.
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'"' => {
                let start = i;
                let (text, end) = string_literal(src, i + 1, b'"');
                out.push(Token {
                    kind: TokenKind::Str(text),
                    start,
                });
                i = end;
            }
            b'\'' => {
                let (_, end) = string_literal(src, i + 1, b'\'');
                out.push(Token {
                    kind: TokenKind::Other,
                    start: i,
                });
                i = end;
            }
            b'`' => {
                i = backtick_text(bytes, i + 1, &mut interp, braces);
            }
            b'}' if interp.last() == Some(&braces) => {
                // End of a `${ ... }`: back inside the backtick string.
                interp.pop();
                i = backtick_text(bytes, i + 1, &mut interp, braces);
            }
            b'{' => {
                braces += 1;
                out.push(Token {
                    kind: TokenKind::Other,
                    start: i,
                });
                i += 1;
            }
            b'}' => {
                braces = braces.saturating_sub(1);
                out.push(Token {
                    kind: TokenKind::Other,
                    start: i,
                });
                i += 1;
            }
            b'?' if bytes.get(i + 1) == Some(&b'.') => {
                out.push(Token {
                    kind: TokenKind::Punct('.'),
                    start: i,
                });
                i += 2;
            }
            b'.' | b'(' | b')' | b'[' | b']' | b',' => {
                out.push(Token {
                    kind: TokenKind::Punct(c as char),
                    start: i,
                });
                i += 1;
            }
            c if c.is_ascii_digit() => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric()
                        || bytes[i] == b'_'
                        || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)))
                {
                    i += 1;
                }
                out.push(Token {
                    kind: TokenKind::Other,
                    start,
                });
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                out.push(Token {
                    kind: TokenKind::Ident(&src[start..i]),
                    start,
                });
            }
            _ => {
                out.push(Token {
                    kind: TokenKind::Other,
                    start: i,
                });
                // Step over a whole UTF-8 character.
                i += src[i..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out
}

/// Reads a quoted literal starting after its opening quote; returns its text and the
/// offset after the closing quote (or the end of input).
fn string_literal(src: &str, mut i: usize, quote: u8) -> (String, usize) {
    let bytes = src.as_bytes();
    let mut text = String::new();
    while i < bytes.len() {
        let c = bytes[i];
        if c == quote {
            return (text, i + 1);
        }
        if c == b'\\' && i + 1 < bytes.len() {
            // The escaped character may be any character, not just a byte.
            let escaped = src[i + 1..].chars().next().unwrap_or('\\');
            text.push(match escaped {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                other => other,
            });
            i += 1 + escaped.len_utf8();
            continue;
        }
        let ch = src[i..].chars().next().unwrap_or('\u{fffd}');
        text.push(ch);
        i += ch.len_utf8().max(1);
    }
    (text, i)
}

/// Skips the text of a backtick string up to its end or to a `${`, which it records.
fn backtick_text(bytes: &[u8], mut i: usize, interp: &mut Vec<usize>, braces: usize) -> usize {
    while i < bytes.len() {
        match bytes[i] {
            b'`' => return i + 1,
            b'\\' => i += 2,
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                interp.push(braces);
                return i + 2;
            }
            _ => i += 1,
        }
    }
    i
}

/// A property path read from a context variable: `state.gps.speed` is root `state`,
/// segments `gps`, `speed`. A trailing method call (`state.movement_status.len()`) is not
/// part of the path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PropertyPath<'a> {
    pub root: &'a str,
    pub segments: Vec<&'a str>,
    pub start: usize,
    /// The offset of each segment.
    pub segment_starts: Vec<usize>,
}

/// A call of a named function, with its arguments' source ranges.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call<'a> {
    pub name: &'a str,
    pub start: usize,
    /// Byte ranges of each top-level argument.
    pub args: Vec<(usize, usize)>,
    /// The first argument when it is a lone string literal.
    pub literal: Option<String>,
    /// The first argument when it is exactly `params.NAME`: the param's name.
    pub param: Option<&'a str>,
}

/// What an expression uses, as far as its tokens tell.
#[derive(Debug, Default, Clone)]
pub(crate) struct Usage<'a> {
    /// Identifiers used as variables or function names (not as property names).
    pub names: BTreeSet<&'a str>,
    pub paths: Vec<PropertyPath<'a>>,
    pub calls: Vec<Call<'a>>,
    /// Method calls (`x.starts_with(...)`): name and offset.
    pub methods: Vec<(&'a str, usize)>,
    /// Functions the expression defines itself (`fn name(...)`).
    pub defined: BTreeSet<&'a str>,
}

/// Collects the variables, property paths and calls of `src`. `roots` are the variables
/// whose property paths are wanted.
pub(crate) fn analyse<'a>(src: &'a str, roots: &[&str]) -> Usage<'a> {
    let tokens = tokenize(src);
    let mut usage = Usage::default();
    for (i, tok) in tokens.iter().enumerate() {
        let TokenKind::Ident(name) = tok.kind else {
            continue;
        };
        let after_dot = i > 0 && tokens[i - 1].kind == TokenKind::Punct('.');
        let opens_call = tokens.get(i + 1).map(|t| &t.kind) == Some(&TokenKind::Punct('('));
        if after_dot {
            if opens_call {
                usage.methods.push((name, tok.start));
            }
            continue;
        }
        if i > 0 && tokens[i - 1].kind == TokenKind::Ident("fn") {
            usage.defined.insert(name);
            continue;
        }
        usage.names.insert(name);
        if opens_call {
            usage.calls.push(call_at(src, &tokens, i, name));
            continue;
        }
        if roots.contains(&name) {
            let mut segments = Vec::new();
            let mut segment_starts = Vec::new();
            let mut j = i + 1;
            while tokens.get(j).map(|t| &t.kind) == Some(&TokenKind::Punct('.')) {
                let Some(TokenKind::Ident(seg)) = tokens.get(j + 1).map(|t| &t.kind) else {
                    break;
                };
                if tokens.get(j + 2).map(|t| &t.kind) == Some(&TokenKind::Punct('(')) {
                    break;
                }
                segments.push(*seg);
                segment_starts.push(tokens[j + 1].start);
                j += 2;
            }
            usage.paths.push(PropertyPath {
                root: name,
                segments,
                start: tok.start,
                segment_starts,
            });
        }
    }
    usage
}

fn call_at<'a>(src: &'a str, tokens: &[Token<'a>], i: usize, name: &'a str) -> Call<'a> {
    let open = &tokens[i + 1];
    let mut depth = 0usize;
    let mut args = Vec::new();
    let mut arg_start = open.start + 1;
    let mut end = src.len();
    for tok in &tokens[i + 1..] {
        match tok.kind {
            TokenKind::Punct('(') | TokenKind::Punct('[') => depth += 1,
            TokenKind::Punct(')') | TokenKind::Punct(']') => {
                depth -= 1;
                if depth == 0 {
                    end = tok.start;
                    break;
                }
            }
            TokenKind::Punct(',') if depth == 1 => {
                args.push((arg_start, tok.start));
                arg_start = tok.start + 1;
            }
            _ => {}
        }
    }
    if !src[arg_start..end.max(arg_start)].trim().is_empty() {
        args.push((arg_start, end.max(arg_start)));
    }
    let literal = match (tokens.get(i + 2), tokens.get(i + 3)) {
        (
            Some(Token {
                kind: TokenKind::Str(s),
                ..
            }),
            Some(next),
        ) if matches!(next.kind, TokenKind::Punct(')') | TokenKind::Punct(',')) => Some(s.clone()),
        _ => None,
    };
    let param = match (
        tokens.get(i + 2),
        tokens.get(i + 3),
        tokens.get(i + 4),
        tokens.get(i + 5),
    ) {
        (
            Some(Token {
                kind: TokenKind::Ident("params"),
                ..
            }),
            Some(Token {
                kind: TokenKind::Punct('.'),
                ..
            }),
            Some(Token {
                kind: TokenKind::Ident(p),
                ..
            }),
            Some(next),
        ) if matches!(next.kind, TokenKind::Punct(')') | TokenKind::Punct(',')) => Some(*p),
        _ => None,
    };
    Call {
        name,
        start: tokens[i].start,
        args,
        literal,
        param,
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_skip_strings_comments_and_methods() {
        let src = r#"state.gps.speed > 80 && state.movement_status.len() > 0 // state.nope
            && "state.ignored" != readings.lls_level_1?.value /* prev.x */"#;
        let usage = analyse(src, &["state", "prev", "readings"]);
        let paths: Vec<(&str, Vec<&str>)> = usage
            .paths
            .iter()
            .map(|p| (p.root, p.segments.clone()))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("state", vec!["gps", "speed"]),
                ("state", vec!["movement_status"]),
                ("readings", vec!["lls_level_1", "value"]),
            ]
        );
        assert!(!usage.names.contains("prev"));
    }

    #[test]
    fn methods_and_definitions() {
        let usage = analyse(
            "fn twice(x) { x * 2 } state.movement_status.startswith(\"m\") && twice(1) > 1",
            &["state"],
        );
        assert_eq!(
            usage.methods.iter().map(|m| m.0).collect::<Vec<_>>(),
            ["startswith"]
        );
        assert!(usage.defined.contains("twice"));
        assert!(usage.calls.iter().any(|c| c.name == "twice"));
    }

    #[test]
    fn calls_have_literals_and_argument_ranges() {
        let src = r#"in_zone("depot") && fuel_drop("lls_level_1", minutes(params.w)) > 5"#;
        let usage = analyse(src, &[]);
        let zone = &usage.calls[0];
        assert_eq!(
            (zone.name, zone.literal.as_deref()),
            ("in_zone", Some("depot"))
        );
        let drop = usage.calls.iter().find(|c| c.name == "fuel_drop").unwrap();
        assert_eq!(drop.args.len(), 2);
        assert_eq!(
            src[drop.args[1].0..drop.args[1].1].trim(),
            "minutes(params.w)"
        );
        assert!(usage.names.contains("minutes"));
        let usage = analyse("in_zone(params.zone) && changed(params.field + 1)", &[]);
        assert_eq!(usage.calls[0].param, Some("zone"));
        assert_eq!(usage.calls[1].param, None);
    }

    #[test]
    fn interpolated_strings_contribute_their_expressions() {
        let usage = analyse("`speed ${state.gps.speed} km/h` != \"\"", &["state"]);
        assert_eq!(usage.paths[0].segments, vec!["gps", "speed"]);
        assert!(!usage.names.contains("speed"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(src in "[a-z\\\\\"'`${}()\\[\\].,/*é\\n ]{0,40}") {
            let usage = analyse(&src, &["state", "params"]);
            for p in &usage.paths {
                let _ = line_col(&src, p.start);
            }
            let _ = crate::rules::script::fast::FastExpr::compile(&src, &rhai::Map::new());
        }
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("abc", 0), (1, 1));
    }
}
