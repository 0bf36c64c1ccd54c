//! Text helpers shared by logs and error messages.

/// At most `max` characters of `s`, cut on a character boundary (never inside a
/// multi-byte character): for quoting untrusted input in logs and errors.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::truncate;

    #[test]
    fn cuts_on_characters_not_bytes() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello", 2), "he");
        assert_eq!(truncate("héllo", 2), "hé");
        assert_eq!(truncate("日本語", 1), "日");
        assert_eq!(truncate("🚚🚚", 1), "🚚");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("", 3), "");
    }
}
