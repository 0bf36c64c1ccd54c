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

const GPS: Node = Node::Object(&[
    ("updated", Node::Leaf),
    ("signal_level", Node::Leaf),
    ("location", LOCATION),
    ("heading", Node::Leaf),
    ("speed", Node::Leaf),
    ("alt", Node::Leaf),
    ("precision", Node::Leaf),
    ("gsm_lbs", Node::Leaf),
]);

const GSM: Node = Node::Object(&[
    ("updated", Node::Leaf),
    ("signal_level", Node::Leaf),
    ("network_name", Node::Leaf),
    ("roaming", Node::Leaf),
]);

const ADDITIONAL_FIELD: Node = Node::Object(&[("value", Node::Leaf), ("updated", Node::Leaf)]);

pub(crate) const STATE: Node = Node::Object(&[
    ("source_id", Node::Leaf),
    ("gps", GPS),
    ("connection_status", Node::Leaf),
    ("movement_status", Node::Leaf),
    ("movement_status_update", Node::Leaf),
    ("ignition", Node::Leaf),
    ("ignition_update", Node::Leaf),
    ("gsm", GSM),
    ("last_update", Node::Leaf),
    ("battery_level", Node::Leaf),
    ("battery_update", Node::Leaf),
    ("inputs", Node::Leaf),
    ("inputs_update", Node::Leaf),
    ("outputs", Node::Leaf),
    ("outputs_update", Node::Leaf),
    ("additional", Node::AnyKey(&ADDITIONAL_FIELD)),
    ("actual_track_update", Node::Leaf),
]);

pub(crate) const TRACKER: Node = Node::Object(&[
    ("id", Node::Leaf),
    ("source_id", Node::Leaf),
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
}
