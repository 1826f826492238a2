//! Whether a session file's events follow from one another: its inputs fed into a fresh
//! machine must give the derived events it records (guard verdicts, the finish), every
//! number as recorded and each guard note in agreement with its verdict. Every way of
//! reading a file (headless replay, the TUI, export, resume, verify) checks it, so that a
//! hand-edited file is refused at the event that was changed.

use std::collections::VecDeque;

use super::file::SessionLog;
use super::{Effect, Event, Machine};

/// The first event of a file that does not follow from the ones before it.
#[derive(Debug)]
pub struct Damage {
    /// Its index among the file's entries (the events before it are sound).
    pub entry: usize,
    /// Why, naming the event by its `seq`, without the file's name.
    pub why: String,
}

/// The machine after every input, and the derived events its inputs imply but the file
/// lacks because the process died before writing them. A recorded verdict its inputs do
/// not give (an edited perplexity) is the damage, not a confusing refusal at the next
/// event the diverged loop does not expect.
pub fn replay_checked(log: &SessionLog) -> Result<(Machine, Vec<Event>), Damage> {
    let o = &log.header.options;
    let mut m = Machine::new(&o.model, o.loop_opts.clone());
    m.start();
    // Derived events the inputs so far give and the file has not shown yet.
    let mut derived = VecDeque::new();
    for (entry, e) in log.entries.iter().enumerate() {
        let damage = |why: String| Damage { entry, why };
        if !e.event.is_input() {
            // Files from before resumes wrote the derived events a crash had lost may lack
            // one mid-stream: it is passed over. A verdict the inputs never give is not.
            let recorded = verdict(Some(&e.event));
            match derived.iter().position(|d| verdict(Some(d)) == recorded) {
                // The same verdict with other numbers (an edited perplexity, delta or
                // sparsity) or another note would be shown and exported as recorded.
                Some(i) if !same_derived(&derived[i], &e.event) => {
                    return Err(damage(format!(
                        "event {} ({}) {} (was the file edited?)",
                        e.seq,
                        e.event.kind(),
                        difference(&e.event, &derived[i], "the events before it give")
                    )))
                }
                Some(i) => drop(derived.drain(..=i)),
                None => {
                    return Err(damage(format!(
                        "event {} records {recorded}, but the events before it give {} (was the file edited?)",
                        e.seq,
                        verdict(derived.front())
                    )))
                }
            }
            continue;
        }
        let effects = m
            .handle(&e.event)
            .map_err(|msg| damage(format!("event {}: {msg}", e.seq)))?;
        derived.extend(effects.into_iter().filter_map(|f| match f {
            Effect::Log(ev) => Some(ev),
            _ => None,
        }));
    }
    Ok((m, derived.into()))
}

/// The machine as it stood once iteration `n` had finished: the file's inputs up to the
/// first that belongs to a later iteration, or a rollback or stop between steps after it.
/// A reviewer's later rollback has dropped that checkpoint from the whole file's machine
/// (`export --step` wrote the checkpoint restored instead). For a file `replay_checked`
/// accepts.
pub fn machine_after_iteration(log: &SessionLog, n: usize) -> Result<Machine, String> {
    let o = &log.header.options;
    let mut m = Machine::new(&o.model, o.loop_opts.clone());
    m.start();
    for e in log
        .entries
        .iter()
        .map(|e| &e.event)
        .filter(|e| e.is_input())
    {
        let later = match e.iteration() {
            Some(i) => i > n,
            None => m.iterations_done() >= n,
        };
        if later {
            break;
        }
        m.handle(e)?;
    }
    Ok(m)
}

/// What a derived event decides (its numbers are compared by `same_derived`).
fn verdict(e: Option<&Event>) -> String {
    match e {
        Some(Event::Guard {
            iteration,
            accepted,
            ..
        }) => format!(
            "iteration {iteration} {}",
            if *accepted { "accepted" } else { "rolled back" }
        ),
        Some(Event::Finished {
            reason, iteration, ..
        }) => format!("the finish at iteration {iteration} ({})", reason.words()),
        Some(other) => format!("`{}`", other.kind()),
        None => "no verdict there".into(),
    }
}

/// A derived event without the guard's note, which `notes_agree` compares on its own: its
/// digits changed on 2026-12-01 (sessions recorded before keep theirs).
fn without_note(e: &Event) -> Event {
    let mut e = e.clone();
    if let Event::Guard { note, .. } = &mut e {
        note.clear();
    }
    e
}

/// Whether a recorded derived event is the one its inputs give: compared as the file
/// writes them (every bit of a number, and a NaN perplexity equal to itself), the guard's
/// note by `notes_agree`.
pub fn same_derived(recomputed: &Event, recorded: &Event) -> bool {
    let text = |e: &Event| serde_yaml::to_string(&without_note(e)).ok();
    let notes = match (recomputed, recorded) {
        (Event::Guard { note: a, .. }, Event::Guard { note: b, .. }) => notes_agree(a, b),
        _ => true,
    };
    notes && text(recomputed).is_some_and(|t| Some(t) == text(recorded))
}

/// A guard note split into its words and its numbers ("accepted: +0.07% <= 0.3%" →
/// "accepted: % <= %" and [0.07, 0.3]), each number with its decimals.
fn note_parts(note: &str) -> (String, Vec<(f64, i32)>) {
    let (mut words, mut numbers) = (String::new(), Vec::new());
    let mut rest = note;
    while let Some(c) = rest.chars().next() {
        let signed = (c == '+' || c == '-') && rest[1..].starts_with(|d: char| d.is_ascii_digit());
        if c.is_ascii_digit() || signed {
            let len = rest[1..]
                .find(|d: char| !(d.is_ascii_digit() || d == '.'))
                .map_or(rest.len(), |i| i + 1);
            let text = rest[..len].trim_end_matches('.');
            let decimals = text.split_once('.').map_or(0, |(_, f)| f.len() as i32);
            numbers.push((text.parse().unwrap_or(f64::NAN), decimals));
            rest = &rest[text.len()..];
        } else {
            words.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    (words, numbers)
}

/// Whether a recorded guard note says what the recomputed one says: the same words, and
/// each number equal to the recomputed one within the rounding of the two (older builds
/// wrote fewer decimals: `+0.7%` where this one writes `+0.74%`). A note edited to another
/// verdict or rise is refused.
pub fn notes_agree(recomputed: &str, recorded: &str) -> bool {
    let (wa, na) = note_parts(recomputed);
    let (wb, nb) = note_parts(recorded);
    let half_unit = |d: i32| 0.5 * 10f64.powi(-d);
    wa == wb
        && na.len() == nb.len()
        && na
            .iter()
            .zip(&nb)
            .all(|((a, da), (b, db))| (a - b).abs() <= half_unit(*da) + half_unit(*db) + 1e-9)
}

/// Where two versions of an event first differ, as `field: recorded A, <other> B`
/// (their one-line summaries can read the same). Compared as YAML values, as the file
/// holds them: JSON has no NaN, and a recorded `.nan` read "recorded null".
pub fn difference(recorded: &Event, other: &Event, other_is: &str) -> String {
    serde_yaml::to_value(recorded)
        .ok()
        .zip(serde_yaml::to_value(other).ok())
        .and_then(|(a, b)| first_difference(&a, &b, "", other_is))
        .unwrap_or_else(|| "a value that differs".into())
}

fn first_difference(
    a: &serde_yaml::Value,
    b: &serde_yaml::Value,
    at: &str,
    b_is: &str,
) -> Option<String> {
    use serde_yaml::Value;
    let null = Value::Null;
    match (a, b) {
        (Value::Mapping(x), Value::Mapping(y)) => {
            let mut keys: Vec<&Value> = x.keys().collect();
            keys.extend(y.keys().filter(|k| !x.contains_key(*k)));
            keys.into_iter().find_map(|k| {
                let (p, q) = (x.get(k).unwrap_or(&null), y.get(k).unwrap_or(&null));
                let key = k.as_str().map_or_else(|| shown(k), String::from);
                first_difference(p, q, &format!("{at}{key}."), b_is)
            })
        }
        (Value::Sequence(x), Value::Sequence(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}{i}."), b_is)),
        (Value::Tagged(x), Value::Tagged(y)) if x.tag == y.tag => {
            first_difference(&x.value, &y.value, at, b_is)
        }
        _ if a == b => None,
        _ => Some(format!(
            "{}: recorded {}, {b_is} {}",
            at.trim_end_matches('.'),
            shown(a),
            shown(b)
        )),
    }
}

/// A value on one line: as JSON, except a number JSON has no word for (`.nan`, `.inf`).
fn shown(v: &serde_yaml::Value) -> String {
    match v {
        serde_yaml::Value::Number(n) if n.as_f64().is_some_and(|x| !x.is_finite()) => {
            serde_yaml::to_string(v)
                .unwrap_or_default()
                .trim()
                .to_string()
        }
        _ => serde_json::to_string(v).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_agree_across_digits_but_not_across_verdicts_or_rises() {
        // An older build's digits, and the same number written alike.
        assert!(notes_agree(
            "rolled back: +0.74% > 0.30%",
            "rolled back: +0.7% > 0.3%"
        ));
        assert!(notes_agree(
            "accepted: -0.02% <= 5.00%",
            "accepted: -0.0% <= 5.0%"
        ));
        assert!(notes_agree(
            "rolled back: perplexity is not finite",
            "rolled back: perplexity is not finite"
        ));
        // Another verdict, another rise, another limit, a missing number.
        assert!(!notes_agree(
            "rolled back: +0.74% > 0.30%",
            "accepted: +0.07% <= 0.3%"
        ));
        assert!(!notes_agree(
            "rolled back: +0.74% > 0.30%",
            "rolled back: +0.9% > 0.3%"
        ));
        assert!(!notes_agree(
            "rolled back: +0.74% > 0.30%",
            "rolled back: +0.74% > 3%"
        ));
        assert!(!notes_agree("accepted: +0.74% <= 5%", "accepted: <= 5%"));
        assert!(!notes_agree(
            "accepted: +0.74% <= 5%",
            "accepted: -0.74% <= 5%"
        ));
    }

    #[test]
    fn note_parts_split_words_from_signed_decimals() {
        let (w, n) = note_parts("rolled back: probe accuracy fell 2.5 points > 2");
        assert_eq!(w, "rolled back: probe accuracy fell  points > ");
        assert_eq!(n, vec![(2.5, 1), (2.0, 0)]);
        let (w, n) = note_parts("accepted: +0.066% <= 5.00%.");
        assert_eq!(w, "accepted: % <= %.");
        assert_eq!(n, vec![(0.066, 3), (5.0, 2)]);
    }
}
