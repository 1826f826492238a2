//! Where in a document a value serde refused sits. serde_yaml reads a tagged enum (an
//! event) whole before deserializing it, so its errors there carry neither the field nor
//! its line; the value they quote is found in the document instead.

use serde_yaml::Value;

/// The dotted path (`event.eval.ppl`) of the one scalar under `doc`'s `event` (the part
/// serde_yaml reads whole; it locates errors elsewhere itself) that an "invalid type" or
/// "invalid value" message quotes, a mapping key among them; None when the message quotes
/// none, or several have that value.
pub fn culprit(doc: &Value, message: &str) -> Option<String> {
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let quoted = match rest.strip_prefix("string \"") {
        Some(s) => s.split('"').next()?,
        None => rest.split('`').nth(1)?,
    };
    let mut found = Vec::new();
    walk(doc.get("event")?, "event".into(), &mut |path, v| {
        if scalar(v).as_deref() == Some(quoted) {
            found.push(path);
        }
    });
    (found.len() == 1).then(|| found.remove(0))
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn walk(v: &Value, path: String, visit: &mut impl FnMut(String, &Value)) {
    let join = |key: &str| match path.is_empty() {
        true => key.to_string(),
        false => format!("{path}.{key}"),
    };
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let key = scalar(k).unwrap_or_else(|| "?".into());
                visit(format!("{} (the key)", join(&key)), k);
                walk(child, join(&key), visit);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                walk(child, format!("{path}[{i}]"), visit);
            }
        }
        Value::Tagged(t) => walk(&t.value, path, visit),
        other => visit(path, other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quoted_value_is_found_where_it_is_alone() {
        let doc: Value = serde_yaml::from_str(
            "seq: 5\nevent:\n  event: evaluated\n  eval:\n    ppl: zz\n    windows: 4\n  layers:\n  - {name: a, sparsity: 1.5}\n  - {name: b, sparsity: -1}\n",
        )
        .unwrap();
        let at = |m: &str| culprit(&doc, m);
        assert_eq!(
            at("invalid type: string \"zz\", expected f64").as_deref(),
            Some("event.eval.ppl")
        );
        assert_eq!(
            at("invalid type: floating point `1.5`, expected usize").as_deref(),
            Some("event.layers[0].sparsity")
        );
        assert_eq!(
            at("invalid value: integer `-1`, expected u64").as_deref(),
            Some("event.layers[1].sparsity")
        );
        // 4 is there once; a value in two places, or none, names nothing.
        assert_eq!(
            at("invalid type: integer `4`, expected a string").as_deref(),
            Some("event.eval.windows")
        );
        let twice: Value = serde_yaml::from_str("event: {a: x, b: x}\n").unwrap();
        assert_eq!(
            culprit(&twice, "invalid type: string \"x\", expected f64"),
            None
        );
        // A key is a place too; outside the event nothing is searched (seq is 5 as well).
        let key: Value = serde_yaml::from_str("seq: 5\nevent: {applied: {5: 0.1}}\n").unwrap();
        assert_eq!(
            culprit(&key, "invalid type: integer `5`, expected a string").as_deref(),
            Some("event.applied.5 (the key)")
        );
        assert_eq!(at("missing field `ppl`"), None);
        assert_eq!(at("invalid type: string \"nowhere\", expected f64"), None);
    }
}
