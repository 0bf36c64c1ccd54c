//! The shape of the context variables, for `check`: a path such as `state.gps.sped` is a
//! typo that would otherwise read `()` forever, so loading names it with the fields that
//! do exist. Only object levels are checked; what follows a value (`.len`) is Rhai's.

/// One level of the context.
#[derive(Debug)]
pub(crate) enum Node {
    /// A value: numbers, strings, booleans, times, `inputs`.
    Leaf,
    Object(&'static [(&'static str, Node)]),
    /// Any name (sensor names, additional fields), each with this shape.
    AnyKey(&'static Node),
}

const LOCATION: Node = Node::Object(&[("lat", Node::Leaf), ("lng", Node::Leaf)]);

/// The schema of a field table (`navixy::messages`): `leaf` and `bits` are values, the
/// other kinds objects.
macro_rules! schema {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[$meta:meta])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        Node::Object(&[$( (stringify!($field), schema!(@ $kind)) ),*])
    };
    (@ gps) => { GPS };
    (@ gsm) => { GSM };
    (@ location) => { LOCATION };
    (@ additional) => { Node::AnyKey(&ADDITIONAL_FIELD) };
    (@ $kind:ident) => { Node::Leaf };
}

const GPS: Node = crate::gps_fields!(schema);

const GSM: Node = crate::gsm_fields!(schema);

const ADDITIONAL_FIELD: Node = Node::Object(&[("value", Node::Leaf), ("updated", Node::Leaf)]);

pub(crate) const STATE: Node = crate::source_state_fields!(schema);

pub(crate) const TRACKER: Node = Node::Object(&[
    ("id", Node::Leaf),
    ("source_id", Node::Leaf),
    ("source", Node::Leaf),
    ("label", Node::Leaf),
    ("group_id", Node::Leaf),
    ("lifecycle", Node::Leaf),
    ("online", Node::Leaf),
    ("last_data_at", Node::Leaf),
    ("group", Node::Leaf),
    ("tags", Node::Leaf),
    (
        "driver",
        Node::Object(&[
            ("id", Node::Leaf),
            ("name", Node::Leaf),
            ("phone", Node::Leaf),
        ]),
    ),
]);

const READING: Node = Node::Object(&[
    ("value", Node::Leaf),
    ("converted_value", Node::Leaf),
    ("min_value", Node::Leaf),
    ("max_value", Node::Leaf),
    ("units", Node::Leaf),
    ("units_type", Node::Leaf),
    ("label", Node::Leaf),
    ("name", Node::Leaf),
    ("field", Node::Leaf),
    ("type", Node::Leaf),
    ("sensor_id", Node::Leaf),
    ("update_time", Node::Leaf),
]);

pub(crate) const READINGS: Node = Node::AnyKey(&READING);

const IOT_FIELD: Node = Node::Object(&[
    ("value", Node::Leaf),
    ("msg_time", Node::Leaf),
    ("srv_time", Node::Leaf),
]);

pub(crate) const IOT: Node = Node::AnyKey(&IOT_FIELD);

/// The schema of a context variable.
pub(crate) fn root(name: &str) -> Option<&'static Node> {
    match name {
        "state" | "prev" => Some(&STATE),
        "tracker" => Some(&TRACKER),
        "readings" => Some(&READINGS),
        "iot" => Some(&IOT),
        _ => None,
    }
}

/// Checks `root.a.b.c`; the error is the index of the first unknown field and a message
/// naming it, the closest known one and all known ones.
pub(crate) fn check(root_name: &str, segments: &[&str]) -> Result<(), (usize, String)> {
    let Some(mut node) = root(root_name) else {
        return Ok(());
    };
    let mut path = root_name.to_string();
    for (i, seg) in segments.iter().enumerate() {
        match node {
            Node::Leaf => return Ok(()),
            Node::AnyKey(inner) => node = inner,
            Node::Object(fields) => match fields.iter().find(|(n, _)| n == seg) {
                Some((_, inner)) => node = inner,
                None => {
                    let known: Vec<&str> = fields.iter().map(|(n, _)| *n).collect();
                    let hint = crate::rules::suggest::hint(seg, known.iter().copied());
                    return Err((
                        i,
                        format!(
                            "`{path}` has no field `{seg}`{hint} (fields: {})",
                            known.join(", ")
                        ),
                    ));
                }
            },
        }
        path.push('.');
        path.push_str(seg);
    }
    Ok(())
}

/// The rows of a field table for the docs: `(path, type, description)` of each field, the
/// description from its doc comment.
#[cfg(test)]
macro_rules! doc_rows {
    (
        $(#[$smeta:meta])* $name:ident $prefix:literal $expected:literal {
            $( $(#[doc = $doc:literal])* $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        &[$(
            (
                concat!($prefix, stringify!($field)),
                doc_rows!(@ $kind $ty),
                concat!("" $(, $doc)*),
            )
        ),*]
    };
    (@ leaf $ty:ty) => { <$ty as crate::rules::script::context::LeafValue>::KIND };
    (@ bits $ty:ty) => { "booleans: `[0]` is the first" };
    (@ $kind:ident $ty:ty) => { "object" };
}

/// The state-field table of `docs/rules.md`, as Markdown: every field rules read, from the
/// protocol's field tables.
#[cfg(test)]
pub(crate) fn docs_table() -> String {
    type Rows = &'static [(&'static str, &'static str, &'static str)];
    const TOP: Rows = crate::source_state_fields!(doc_rows);
    const GPS_ROWS: Rows = crate::gps_fields!(doc_rows);
    const GSM_ROWS: Rows = crate::gsm_fields!(doc_rows);
    let mut out = String::from("| field | type | notes |\n|---|---|---|\n");
    let mut row = |path: &str, kind: &str, doc: &str| {
        out.push_str(&format!("| `state.{path}` | {kind} | {} |\n", doc.trim()));
    };
    for (path, kind, doc) in TOP.iter().chain(GPS_ROWS).chain(GSM_ROWS) {
        match *path {
            "gps.location" => {
                row("gps.location.lat", "number", "Degrees.");
                row("gps.location.lng", "number", "Degrees.");
            }
            "additional" => {
                row("additional.<name>.value", "string", doc);
                row("additional.<name>.updated", "time", "");
            }
            _ if *kind == "object" => {}
            _ => row(path, kind, doc),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_and_unknown_paths() {
        assert!(check("state", &["gps", "location", "lat"]).is_ok());
        assert!(check("readings", &["lls_level_1", "value"]).is_ok());
        assert!(check("state", &["additional", "event_code", "value"]).is_ok());
        assert!(check("state", &["ignition", "whatever"]).is_ok());
        let (at, err) = check("state", &["gps", "sped"]).unwrap_err();
        assert_eq!(at, 1);
        assert!(
            err.starts_with(
                "`state.gps` has no field `sped` (did you mean `speed`?) (fields: updated,"
            ),
            "{err}"
        );
        let (_, err) = check("readings", &["fuel", "valu"]).unwrap_err();
        assert!(
            err.starts_with("`readings.fuel` has no field `valu`"),
            "{err}"
        );
    }

    /// `docs/rules.md` holds the state-field table between its markers, as [`docs_table`]
    /// makes it.
    #[test]
    fn docs_list_every_state_field() {
        let docs = include_str!("../../../docs/rules.md");
        let begin = "<!-- state-fields:begin (generated from src/navixy/messages.rs) -->\n";
        let end = "<!-- state-fields:end -->";
        let start = docs
            .find(begin)
            .expect("docs/rules.md has the state-fields markers")
            + begin.len();
        let stop = docs[start..].find(end).expect("the end marker") + start;
        assert_eq!(
            &docs[start..stop],
            docs_table(),
            "docs/rules.md's state-field table is out of date; paste the table printed here"
        );
    }
}
