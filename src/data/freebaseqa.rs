//! FreebaseQA questions in the kelvin-jiang JSON format:
//! `{"Dataset": ..., "Questions": [{"Question-ID", "RawQuestion", "Parses": [{"Answers":
//! [{"AnswersMid", "AnswersName": [alias, ...]}]}]}]}`.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct FreebaseItem {
    pub id: String,
    pub question: String,
    /// Every name of the first answer of the first parse.
    pub aliases: Vec<String>,
}

pub fn read_freebaseqa(path: &Path) -> Result<Vec<FreebaseItem>> {
    crate::runtime::refuse_device(path)?;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let root: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{} is not valid JSON: {e}", path.display()))?;
    let Some(questions) = root.get("Questions").and_then(Value::as_array) else {
        bail!("{}: no `Questions` array", path.display());
    };
    let items = questions
        .iter()
        .enumerate()
        .map(|(i, q)| {
            // Questions count from 1, as MMLU rows do.
            parse_item(q)
                .map_err(|e| anyhow!("{}: question {} ({}): {e}", path.display(), i + 1, id_of(q)))
        })
        .collect::<Result<Vec<_>>>()?;
    if items.is_empty() {
        bail!("{}: `Questions` is empty", path.display());
    }
    Ok(items)
}

fn id_of(q: &Value) -> String {
    match q.get("Question-ID") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "no Question-ID".to_string(),
    }
}

/// `v[key]`, or an error saying whether `at` (the key's path) is missing or of another type.
fn get<'a, T>(
    v: &'a Value,
    key: &str,
    at: &str,
    want: &str,
    as_t: impl Fn(&'a Value) -> Option<T>,
) -> Result<T> {
    let x = v.get(key).ok_or_else(|| anyhow!("missing {at}"))?;
    as_t(x).ok_or_else(|| anyhow!("{at} is not {want}"))
}

fn parse_item(q: &Value) -> Result<FreebaseItem> {
    let question = get(q, "RawQuestion", "RawQuestion", "a string", Value::as_str)?;
    let parses = get(q, "Parses", "Parses", "a list", Value::as_array)?;
    let parse = parses.first().ok_or_else(|| anyhow!("Parses is empty"))?;
    let answers = get(
        parse,
        "Answers",
        "Parses[0].Answers",
        "a list",
        Value::as_array,
    )?;
    let answer = answers
        .first()
        .ok_or_else(|| anyhow!("Parses[0].Answers is empty"))?;
    let names = get(
        answer,
        "AnswersName",
        "Parses[0].Answers[0].AnswersName",
        "a list",
        Value::as_array,
    )?;
    let aliases: Vec<String> = names
        .iter()
        .map(|a| a.as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow!("AnswersName holds a non-string"))?;
    if aliases.iter().all(|a| a.trim().is_empty()) {
        bail!("AnswersName has no non-empty alias");
    }
    Ok(FreebaseItem {
        id: id_of(q),
        question: question.to_string(),
        aliases,
    })
}
