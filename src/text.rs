//! Text helpers shared by logs and error messages.

/// At most `max` characters of `s`, cut on a character boundary (never inside a
/// multi-byte character): for quoting untrusted input in logs and errors.
pub fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A connection URL with its password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // Read by hand, not with a URL parser: a URL too broken to parse still hides it.
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{path}");
        }
        return url.to_owned();
    }
    // libpq's `key=value` form: hide a `password=...` pair.
    url.split_whitespace()
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***"
            } else {
                pair
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::{redact_url, truncate};

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

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact_url("postgres://alerts:s3cret@db.internal:5432/alerts"),
            "postgres://alerts:***@db.internal:5432/alerts"
        );
        assert_eq!(
            redact_url("postgres://alerts@db.internal/alerts"),
            "postgres://alerts@db.internal/alerts"
        );
        assert_eq!(
            redact_url("postgres://u:s3cret@db:notaport/x?sslmode=disable"),
            "postgres://u:***@db:notaport/x?sslmode=disable"
        );
        assert_eq!(
            redact_url("host=db user=alerts password=s3cret"),
            "host=db user=alerts password=***"
        );
    }
}
