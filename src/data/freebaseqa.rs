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
    q.get("Question-ID")
        .and_then(Value::as_str)
        .unwrap_or("no Question-ID")
        .to_string()
}

fn parse_item(q: &Value) -> Result<FreebaseItem> {
    let question = q
        .get("RawQuestion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("missing RawQuestion"))?;
    let answer = q
        .get("Parses")
        .and_then(Value::as_array)
        .and_then(|p| p.first())
        .ok_or_else(|| anyhow!("missing Parses[0]"))?
        .get("Answers")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .ok_or_else(|| anyhow!("missing Parses[0].Answers[0]"))?;
    let aliases: Vec<String> = answer
        .get("AnswersName")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("missing Parses[0].Answers[0].AnswersName"))?
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
