//! "Did you mean": the closest known name to a misspelt one (a field, param, helper,
//! zone, rule), for the messages of `check` and `test`.

/// The known name closest to `word`, when it is close enough to be a typo: at most two
/// edits, and fewer than half of the word's length. Ties go to the first candidate.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(word.chars().count().saturating_sub(1) / 2 + 1);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if c == word {
            continue;
        }
        let d = strsim::damerau_levenshtein(word, c);
        let d = if c.replace('_', "") == word.replace('_', "") {
            // `startswith` for `starts_with`: only separators differ.
            d.min(1)
        } else {
            d
        };
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

/// ` (did you mean `x`?)` for a close name, else nothing.
pub fn hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates).map_or_else(String::new, |c| format!(" (did you mean `{c}`?)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_find_their_name() {
        assert_eq!(
            closest("startswith", ["ends_with", "starts_with"]),
            Some("starts_with")
        );
        assert_eq!(closest("sped", ["speed", "heading"]), Some("speed"));
        assert_eq!(closest("rond", ["round", "abs"]), Some("round"));
        assert_eq!(closest("temp1", ["temp_1", "fuel"]), Some("temp_1"));
        // Too far, or too short to tell.
        assert_eq!(closest("velocity", ["speed"]), None);
        assert_eq!(closest("ab", ["xy"]), None);
        assert_eq!(hint("sped", ["speed"]), " (did you mean `speed`?)");
        assert_eq!(hint("zzz", ["speed"]), "");
    }
}
