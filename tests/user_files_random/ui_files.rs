//! The TUI's own user files: themes (`$ARBORIST_THEMES/*.yaml`) and the keymap
//! (`$ARBORIST_KEYMAP`). The TUI needs a terminal, so they are loaded here as it loads
//! them at startup (`Themes::load_from`, `Keymap::load_from`), in this process: a broken
//! file is reported in one line that names it, and ignored; nothing panics.

use crate::damage;
use crate::{Case, Report};
use arborist::tui::keymap::Keymap;
use arborist::tui::theme::Themes;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::panic::{catch_unwind, AssertUnwindSafe};

const THEME_CASES: usize = 300;
const KEYMAP_CASES: usize = 300;

const THEME: &str = "\
# A user's theme.
name: mine
heat: mono
colors:
  fg: white
  bg: \"#101010\"
  muted: 244
  accent: lightblue
  selected: reverse
  good: green
  warn: yellow
  danger: red
  border: darkgray
  border_focus: reset
";

const KEYMAP: &str = "\
- action: approve
  keys: [y]
- action: quit
  keys: [ctrl-q, q]
- action: edit
  keys: [E]
  short: change
  help: edit the proposal in place
";

/// A new value for line `line`'s key, with what its warning must say (empty: it may load).
fn evil_value(rng: &mut StdRng, line: &str) -> (String, Vec<String>) {
    let key = line
        .trim()
        .trim_start_matches("- ")
        .split(':')
        .next()
        .unwrap()
        .trim();
    let pick = |rng: &mut StdRng, v: &[&str]| v.choose(rng).unwrap().to_string();
    match key {
        "name" => {
            let v = pick(rng, &["''", "'  '", "null", "5", "[a]", "\"two\\nlines\""]);
            let promise = match v.as_str() {
                "''" | "'  '" => vec!["`name` is empty".into()],
                _ => vec![],
            };
            (v, promise)
        }
        "heat" => (pick(rng, &["plasma", "5", "null", "''", "Viridis"]), vec![]),
        "action" => (
            pick(rng, &["approv", "''", "5", "null", "[approve]", "Approve"]),
            vec![],
        ),
        "keys" => {
            let v = pick(
                rng,
                &[
                    "[]",
                    "[shift-a]",
                    "[ctrl-]",
                    "[f300]",
                    "[ab]",
                    "y",
                    "[5]",
                    "null",
                    "['']",
                    "[\"a\\nb\"]",
                ],
            );
            let promise = match v.as_str() {
                "[shift-a]" | "[f300]" | "[ab]" | "['']" => vec!["unknown key".into()],
                _ => vec![],
            };
            (v, promise)
        }
        "short" | "help" => (pick(rng, &["''", "5", "null", "[x]", "\"a\\nb\""]), vec![]),
        _ => {
            // A colour.
            let v = pick(
                rng,
                &[
                    "\"#zzzzzz\"",
                    "\"#12345\"",
                    "300",
                    "-1",
                    "blue!",
                    "''",
                    "null",
                    "[1]",
                    "reverse",
                    "\"#12\\n34\"",
                ],
            );
            let promise = match v.as_str() {
                "\"#zzzzzz\"" | "\"#12345\"" | "300" | "blue!" | "''" => {
                    vec![format!("colour `{key}")]
                }
                "reverse" if key != "selected" => vec![format!("colour `{key}")],
                _ => vec![],
            };
            (v, promise)
        }
    }
}

/// One damage to a YAML user file, with what its warning must say.
fn damage_yaml(rng: &mut StdRng, bytes: &mut Vec<u8>) -> (String, Vec<String>) {
    let lines = damage::split_lines(bytes);
    let n = lines.len();
    let i = rng.gen_range(0..n);
    let line = String::from_utf8(lines[i].clone()).unwrap();
    let is_entry = line.contains(':') && !line.trim_start().starts_with('#');
    match rng.gen_range(0..12) {
        0 => (damage::delete_line(bytes, i), vec![]),
        1..=4 if is_entry && !line.trim_end().ends_with(':') => {
            let (value, promise) = evil_value(rng, &line);
            let colon = line.find(':').unwrap();
            let new = format!("{} {value}\n", &line[..=colon]);
            let mut all = lines.clone();
            all[i] = new.clone().into_bytes();
            *bytes = all.concat();
            (format!("line {}: {:?}", i + 1, new.trim_end()), promise)
        }
        5 if is_entry => {
            let indent = line.len() - line.trim_start().trim_start_matches("- ").len();
            let key = ["colour", "bold", "keyz", "name2"].choose(rng).unwrap();
            let mut all = lines.clone();
            all.insert(
                i + 1,
                format!("{}{key}: x\n", " ".repeat(indent)).into_bytes(),
            );
            *bytes = all.concat();
            (
                format!("`{key}: x` put after line {}", i + 1),
                vec!["unknown field".into()],
            )
        }
        6 => (damage::duplicate_line(bytes, i), vec![]),
        7 => (damage::truncate(rng, bytes), vec![]),
        8 => (damage::not_utf8(rng, bytes), vec![]),
        9 if i > 0 => (damage::tab_indent(bytes, i), vec![]),
        10 => {
            let blank = ["", "\n", "# only a comment\n", "[]\n", "{}\n", "---\n"]
                .choose(rng)
                .unwrap();
            *bytes = blank.as_bytes().to_vec();
            (format!("the file replaced by {blank:?}"), vec![])
        }
        _ => {
            let g = [
                "[",
                "{",
                "}",
                ": x",
                "*a",
                "&a ",
                "!!binary ",
                "|",
                "\"",
                "? ",
                "---\n",
                "- ",
            ];
            (damage::insert(rng, bytes, &g), vec![])
        }
    }
}

/// A warning shown on the status line: one line that names the file.
fn one_line_naming(w: &str, file: &str) -> Result<(), String> {
    if w.contains('\n') || w.contains('\r') {
        return Err(format!("the warning spans lines: {w:?}"));
    }
    if !w.contains(file) {
        return Err(format!("the warning does not name the file: {w:?}"));
    }
    Ok(())
}

#[test]
fn damaged_themes_load_or_are_reported_in_one_line_and_skipped() {
    let dir = crate::common::tmp();
    let mut report = Report::new("themes");
    let mut rng = StdRng::seed_from_u64(report.seed());
    for index in 0..THEME_CASES {
        let themes = dir.path().join(format!("themes{index}"));
        std::fs::create_dir_all(&themes).unwrap();
        let mut bytes = THEME.as_bytes().to_vec();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_yaml(&mut rng, &mut bytes),
        };
        let file = themes.join("mine.yaml");
        std::fs::write(&file, &bytes).unwrap();
        let f = crate::common::p(&file);
        let case = Case {
            index,
            damage: what,
            command: format!("Themes::load_from({:?}, Some(\"mine\"), false)", themes),
            shown: damage::show(&bytes),
        };
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Themes::load_from(Some(themes.clone()), Some("mine"), false)
        }));
        let Ok((list, warnings)) = loaded else {
            report.fail(&case, None, "panicked");
            continue;
        };
        let names: Vec<&str> = list.list.iter().map(|t| t.name.as_str()).collect();
        let problem = (|| -> Result<bool, String> {
            for b in ["dark", "light", "ansi16"] {
                if !names.contains(&b) {
                    return Err(format!("built-in theme {b} is gone: {names:?}"));
                }
            }
            let about_file: Vec<&String> = warnings.iter().filter(|w| w.contains(&f)).collect();
            for w in &warnings {
                // The one warning not about the file: the chosen theme is not there.
                if w.as_str() != "ARBORIST_THEME=mine: no such theme" {
                    one_line_naming(w, &f)?;
                }
            }
            let skipped = !about_file.is_empty();
            match (skipped, names.len()) {
                (true, 3) | (false, 4) => {}
                (s, n) => return Err(format!("skipped {s}, yet {n} themes: {names:?}")),
            }
            if skipped && !promise.is_empty() {
                let w = about_file[0];
                if let Some(p) = promise.iter().find(|p| !w.contains(p.as_str())) {
                    return Err(format!("the warning does not say `{p}`: {w:?}"));
                }
            }
            if !skipped && !promise.is_empty() {
                return Err(format!("loaded, but must be reported saying {promise:?}"));
            }
            if index == 0 && skipped {
                return Err(format!("the undamaged theme was skipped: {warnings:?}"));
            }
            Ok(skipped)
        })();
        match problem {
            Ok(true) => report.refused_ok(),
            Ok(false) => report.accepted_ok(),
            Err(why) => report.fail(&case, None, &why),
        }
    }
    report.finish();
}

/// What a keymap binds, to compare with the built-in one.
fn bindings(k: &Keymap) -> Vec<String> {
    k.bindings
        .iter()
        .map(|b| format!("{:?} {} {} {}", b.action, b.key_labels(), b.short, b.help))
        .collect()
}

#[test]
fn damaged_keymaps_apply_or_are_reported_in_one_line_and_ignored() {
    let dir = crate::common::tmp();
    let mut report = Report::new("keymap");
    let mut rng = StdRng::seed_from_u64(report.seed());
    let builtin = bindings(&Keymap::builtin());
    for index in 0..KEYMAP_CASES {
        let mut bytes = KEYMAP.as_bytes().to_vec();
        let (what, promise) = match index {
            0 => ("none".into(), vec![]),
            _ => damage_yaml(&mut rng, &mut bytes),
        };
        let file = dir.path().join(format!("keymap{index}.yaml"));
        std::fs::write(&file, &bytes).unwrap();
        let f = crate::common::p(&file);
        let case = Case {
            index,
            damage: what,
            command: format!("Keymap::load_from(Some({f:?}), true)"),
            shown: damage::show(&bytes),
        };
        let loaded = catch_unwind(AssertUnwindSafe(|| {
            Keymap::load_from(Some(file.clone()), true)
        }));
        let Ok((map, warning)) = loaded else {
            report.fail(&case, None, "panicked");
            continue;
        };
        let problem = (|| -> Result<bool, String> {
            match &warning {
                Some(w) => {
                    one_line_naming(w, &f)?;
                    // Ignored whole: no half-applied file.
                    if bindings(&map) != builtin {
                        return Err(format!(
                            "reported ({w}), yet the keys differ from the built-in ones"
                        ));
                    }
                    if let Some(p) = promise.iter().find(|p| !w.contains(p.as_str())) {
                        return Err(format!("the warning does not say `{p}`: {w:?}"));
                    }
                    if index == 0 {
                        return Err(format!("the undamaged keymap was reported: {w}"));
                    }
                    Ok(true)
                }
                None if !promise.is_empty() => {
                    Err(format!("applied, but must be reported saying {promise:?}"))
                }
                None => {
                    if index == 0 && bindings(&map) == builtin {
                        return Err("the undamaged keymap changed nothing".into());
                    }
                    Ok(false)
                }
            }
        })();
        match problem {
            Ok(true) => report.refused_ok(),
            Ok(false) => report.accepted_ok(),
            Err(why) => report.fail(&case, None, &why),
        }
    }
    report.finish();
}
