//! Where in a document a value serde refused sits. serde_yaml reads a tagged enum (an
//! event) whole before deserializing it, so its errors there carry neither the field nor
//! its line. Serde reads a document's values in order and stops at the first it refuses,
//! so the culprit is the last node of the shortest prefix of the document (in reading
//! order) that fails with the same message. A missing field is raised at the end of its
//! mapping instead: that mapping is the first (in the order mappings end) where adding
//! the field takes the message away and adding a field no struct has does not.

use serde_yaml::Value;

/// Where under `doc`'s `event` (the part serde_yaml reads whole; it locates errors
/// elsewhere itself) the cause of `message` sits, as words to append to it: `at
/// event.eval.ppl` for a refused value, `at event.applied.x (the key)` for a key, `in
/// event.eval` for the mapping that lacks a field. `fails` parses a document and returns
/// its error's message without a position. None for any other message or when the whole
/// document does not reproduce it.
pub fn culprit(
    doc: &Value,
    message: &str,
    fails: impl Fn(&Value) -> Option<String>,
) -> Option<String> {
    if fails(doc).as_deref() != Some(message) {
        return None;
    }
    if let Some(field) = missing_field(message) {
        return lacking(doc, field, message, &fails).map(|at| format!("in {at}"));
    }
    refused(doc, message, &fails).map(|at| format!("at {at}"))
}

/// `x` of serde's "missing field `x`".
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

/// The path of the mapping under `event` that lacks `field`.
fn lacking(
    doc: &Value,
    field: &str,
    message: &str,
    fails: &impl Fn(&Value) -> Option<String>,
) -> Option<String> {
    let mut maps = Vec::new();
    mappings(doc, "", &mut Vec::new(), &mut maps);
    // A map of any keys (`applied`) takes the field too, as a value of its own type: it
    // also takes one no struct has, which a struct passes over.
    let probe = format!("{field}_not_a_field_of_any_event");
    let with = |at: &[Step], key: &str| {
        let mut copy = doc.clone();
        let v = at.iter().try_fold(&mut copy, |v, step| match step {
            Step::Key(k) => v.get_mut(k),
            Step::Index(i) => v.get_mut(*i),
        })?;
        let m = untag(v).as_mapping_mut()?;
        m.insert(Value::String(key.into()), Value::Null);
        fails(&copy)
    };
    maps.into_iter()
        .filter(|(path, _)| path == "event" || path.starts_with("event."))
        .find(|(_, at)| {
            with(at, field).as_deref() != Some(message)
                && with(at, &probe).as_deref() == Some(message)
        })
        .map(|(path, _)| path)
}

/// How a mapping is reached from the document's root.
#[derive(Clone)]
enum Step {
    Key(Value),
    Index(usize),
}

fn untag(v: &mut Value) -> &mut Value {
    match v {
        Value::Tagged(t) => untag(&mut t.value),
        other => other,
    }
}

/// Every mapping, in the order their ends are read (inner ones first), with its dotted
/// path and the steps that reach it; values under keys that are not strings are not
/// entered (no event has such a key).
fn mappings(v: &Value, path: &str, steps: &mut Vec<Step>, out: &mut Vec<(String, Vec<Step>)>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let Value::String(key) = k else { continue };
                let at = match path.is_empty() {
                    true => key.clone(),
                    false => format!("{path}.{key}"),
                };
                steps.push(Step::Key(k.clone()));
                mappings(child, &at, steps, out);
                steps.pop();
            }
            out.push((path.to_string(), steps.clone()));
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                steps.push(Step::Index(i));
                mappings(child, &format!("{path}[{i}]"), steps, out);
                steps.pop();
            }
        }
        Value::Tagged(t) => mappings(&t.value, path, steps, out),
        _ => {}
    }
}

/// The dotted path of the value (or key) serde refused with `message`.
fn refused(
    doc: &Value,
    message: &str,
    fails: &impl Fn(&Value) -> Option<String>,
) -> Option<String> {
    const PER_VALUE: [&str; 4] = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant ",
    ];
    if !PER_VALUE.iter().any(|p| message.starts_with(p)) {
        return None;
    }
    let mut nodes = Vec::new();
    walk(doc, String::new(), &mut nodes);
    let fails_at = |n: usize, rename: Option<usize>| {
        let cut = Cut {
            budget: n,
            seen: 0,
            rename,
        };
        fails(&cut.apply(doc)).as_deref() == Some(message)
    };
    // Before the culprit every kept value is read whole, so a shorter prefix fails only
    // for what it lacks (a missing field), never with the culprit's message.
    let (mut lo, mut hi) = (1, nodes.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        match fails_at(mid, None) {
            true => hi = mid,
            false => lo = mid + 1,
        }
    }
    let Node { path, odd_key } = nodes.swap_remove(lo - 1);
    // A key is read before its value: a key that is not a string (every key of a session
    // is one) is the culprit if a string in its place takes the message away.
    let path = match odd_key && !fails_at(lo, Some(lo - 1)) {
        true => format!("{path} (the key)"),
        false => path,
    };
    path.starts_with("event.").then_some(path)
}

/// One mapping entry or list element, in reading order.
struct Node {
    path: String,
    /// A mapping entry whose key is not a string.
    odd_key: bool,
}

fn walk(v: &Value, path: String, out: &mut Vec<Node>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let key = match k {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Sequence(_) => "<a list>".into(),
                    _ => "<a mapping>".into(),
                };
                let at = match path.is_empty() {
                    true => key,
                    false => format!("{path}.{key}"),
                };
                out.push(Node {
                    path: at.clone(),
                    odd_key: !k.is_string(),
                });
                walk(child, at, out);
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                let at = format!("{path}[{i}]");
                out.push(Node {
                    path: at.clone(),
                    odd_key: false,
                });
                walk(child, at, out);
            }
        }
        Value::Tagged(t) => walk(&t.value, path, out),
        _ => {}
    }
}

/// A document cut after its first `budget` nodes (the order of `walk`): an entry or
/// element kept has its scalar whole and its containers cut further (empty once the
/// budget is spent); the key of node `rename`, if any, becomes a string.
struct Cut {
    budget: usize,
    seen: usize,
    rename: Option<usize>,
}

impl Cut {
    fn apply(mut self, v: &Value) -> Value {
        self.cut(v)
    }

    fn cut(&mut self, v: &Value) -> Value {
        match v {
            Value::Mapping(m) => {
                let mut out = serde_yaml::Mapping::new();
                for (k, child) in m {
                    if !self.take() {
                        break;
                    }
                    let key = match self.rename == Some(self.seen - 1) {
                        true => Value::String("key".into()),
                        false => k.clone(),
                    };
                    out.insert(key, self.cut(child));
                }
                Value::Mapping(out)
            }
            Value::Sequence(s) => {
                let mut out = Vec::new();
                for child in s {
                    if !self.take() {
                        break;
                    }
                    out.push(self.cut(child));
                }
                Value::Sequence(out)
            }
            Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
                tag: t.tag.clone(),
                value: self.cut(&t.value),
            })),
            other => other.clone(),
        }
    }

    /// Counts one more node if the budget allows it.
    fn take(&mut self) -> bool {
        let more = self.seen < self.budget;
        self.seen += more as usize;
        more
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::file::Entry;

    fn at(doc: &str) -> Option<String> {
        let doc: Value = serde_yaml::from_str(doc).unwrap();
        let fails = |v: &Value| {
            serde_yaml::from_value::<Entry>(v.clone())
                .err()
                .map(|e| e.to_string())
        };
        let message = fails(&doc).expect("the document must be refused");
        culprit(&doc, &message, fails)
    }

    /// The path of a refused value, without "at ".
    fn value_at(doc: &str) -> Option<String> {
        at(doc).map(|s| s.strip_prefix("at ").expect("a value's place").to_string())
    }

    const EVALUATED: &str = "seq: 5\nunix_ms: 1\nevent:\n  event: evaluated\n  iteration: 2\n  applied: {a: 0.1, b: 0.2}\n  eval: {ppl: PPL, dataset: d, seqlen: 4, windows: 4, dtype: f32, seconds: 1.0}\n";

    #[test]
    fn the_refused_value_is_named_whatever_its_shape() {
        let with = |ppl: &str| value_at(&EVALUATED.replace("PPL", ppl));
        assert_eq!(with("zz").as_deref(), Some("event.eval.ppl"));
        // A mapping or a list where a number belongs quotes no value in serde's message.
        assert_eq!(with("{x: 1}").as_deref(), Some("event.eval.ppl"));
        assert_eq!(with("[1, 2]").as_deref(), Some("event.eval.ppl"));
        assert_eq!(with("~").as_deref(), Some("event.eval.ppl"));
        // The same value elsewhere (4 is also seqlen's) does not confuse it.
        let windows = EVALUATED
            .replace("PPL", "3.0")
            .replace("windows: 4", "windows: -4");
        assert_eq!(value_at(&windows).as_deref(), Some("event.eval.windows"));
        let applied = EVALUATED
            .replace("PPL", "3.0")
            .replace("b: 0.2", "b: [0.2]");
        assert_eq!(value_at(&applied).as_deref(), Some("event.applied.b"));
        let key = EVALUATED
            .replace("PPL", "3.0")
            .replace("b: 0.2", "[b]: 0.2");
        assert_eq!(
            value_at(&key).as_deref(),
            Some("event.applied.<a list> (the key)")
        );
        let kind = EVALUATED
            .replace("PPL", "3.0")
            .replace("evaluated", "evaluatd");
        assert_eq!(value_at(&kind).as_deref(), Some("event.event"));
    }

    #[test]
    fn a_missing_field_names_the_mapping_that_lacks_it() {
        let ok = EVALUATED.replace("PPL", "3.0");
        let without = |field: &str| {
            let doc = ok.replace(&format!("{field}, "), "");
            assert_ne!(doc, ok, "{field} is in the document");
            at(&doc)
        };
        assert_eq!(without("ppl: 3.0").as_deref(), Some("in event.eval"));
        assert_eq!(without("dtype: f32").as_deref(), Some("in event.eval"));
        // `applied` (a map of any layer names) would take a key `iteration` as a layer: it
        // is not the mapping that lacks it.
        let doc = ok.replace("  iteration: 2\n", "");
        assert_eq!(at(&doc).as_deref(), Some("in event"));
        // The inner mapping ends first, so its lack is the one serde reports.
        let both = ok
            .replace("  iteration: 2\n", "")
            .replace("seqlen: 4, ", "");
        assert_eq!(at(&both).as_deref(), Some("in event.eval"));
    }

    #[test]
    fn a_message_about_no_single_value_names_nothing() {
        // Outside the event serde_yaml gives the line itself.
        assert_eq!(
            at(&EVALUATED.replace("PPL", "3.0").replace("seq: 5", "seq: x")),
            None
        );
        let top = EVALUATED.replace("PPL", "3.0").replace("unix_ms: 1\n", "");
        assert_eq!(at(&top), None);
        let doc: Value = serde_yaml::from_str(&EVALUATED.replace("PPL", "zz")).unwrap();
        let never = |_: &Value| Some("something else".to_string());
        assert_eq!(
            culprit(&doc, "invalid type: string \"zz\", expected f64", never),
            None
        );
    }
}
