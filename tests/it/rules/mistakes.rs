//! The "Common mistakes" section of `docs/rules.md`: each rule file example there loads
//! with exactly the messages shown after it.

use std::path::PathBuf;

use navixy_alerts::rules::{LoadOptions, RuleSet};

/// (rule file, messages) pairs: each ```yaml block and the ```text block after it.
fn examples(section: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = section;
    while let Some(start) = rest.find("```yaml\n") {
        let after = &rest[start + "```yaml\n".len()..];
        let end = after.find("```\n").expect("a closed yaml block");
        let yaml = after[..end].to_string();
        let after = &after[end + 4..];
        let text_start = after
            .find("```text\n")
            .expect("a text block after each example");
        let text = &after[text_start + "```text\n".len()..];
        let text_end = text.find("```").expect("a closed text block");
        out.push((yaml, text[..text_end].trim_end().to_string()));
        rest = &text[text_end + 3..];
    }
    out
}

#[test]
fn every_documented_mistake_gives_its_message() {
    let docs = std::fs::read_to_string(super::repo().join("docs/rules.md")).unwrap();
    let heading = "## Common mistakes and what `check` says\n";
    let start = docs.find(heading).expect("the section") + heading.len();
    let section = &docs[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let examples = examples(section);
    assert!(examples.len() >= 5, "{examples:?}");
    let options = LoadOptions {
        zones: super::loading::depot(),
        ..LoadOptions::default()
    };
    let mut wrong = Vec::new();
    for (yaml, want) in &examples {
        let got =
            match RuleSet::from_sources(&[(PathBuf::from("rules.yaml"), yaml.clone())], &options) {
                Ok(_) => "(loads without errors)".to_string(),
                Err(errors) => errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("\n"),
            };
        if got != *want {
            wrong.push(format!("{yaml}\nwants:\n{want}\ngot:\n{got}\n"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
