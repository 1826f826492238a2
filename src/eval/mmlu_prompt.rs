//! The MMLU prompt as Hendrycks' `evaluate.py` or lm-eval spells it: text only, free of
//! the model, so a session's options can name it.

use serde::{Deserialize, Serialize};

use crate::data::mmlu::{MmluItem, LETTERS};

/// Which published spelling of the prompt to write. They differ in two places only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MmluPrompt {
    /// Hendrycks' `evaluate.py`: `format_subject` puts a space before every word, so the
    /// header reads "about  abstract algebra." (two spaces); questions are used as read.
    #[default]
    Hendrycks,
    /// lm-evaluation-harness (`mmlu` task): "about abstract algebra." and
    /// `question.strip()`.
    LmEval,
}

impl MmluPrompt {
    pub fn name(self) -> &'static str {
        match self {
            MmluPrompt::Hendrycks => "hendrycks",
            MmluPrompt::LmEval => "lm-eval",
        }
    }

    /// The task description that opens every prompt.
    pub fn header(self, subject: &str) -> String {
        let subject = match self {
            MmluPrompt::Hendrycks => subject.split('_').map(|w| format!(" {w}")).collect(),
            MmluPrompt::LmEval => subject.replace('_', " "),
        };
        format!("The following are multiple choice questions (with answers) about {subject}.\n\n")
    }

    /// The question, "A. .." to "D. ..", and "Answer:" (plus " X\n\n" for a solved example).
    pub fn example(self, item: &MmluItem, with_answer: bool) -> String {
        let mut s = match self {
            MmluPrompt::Hendrycks => item.question.clone(),
            MmluPrompt::LmEval => item.question.trim().to_string(),
        };
        for (l, c) in LETTERS.iter().zip(&item.choices) {
            s.push_str(&format!("\n{l}. {c}"));
        }
        s.push_str("\nAnswer:");
        if with_answer {
            s.push_str(&format!(" {}\n\n", LETTERS[item.answer]));
        }
        s
    }

    /// The whole prompt with the first `k` dev examples.
    pub fn prompt(self, item: &MmluItem, dev: &[MmluItem], k: usize) -> String {
        let mut s = self.header(&item.subject);
        for d in &dev[..k] {
            s.push_str(&self.example(d, true));
        }
        s + &self.example(item, false)
    }
}

impl std::fmt::Display for MmluPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MmluPrompt {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "hendrycks" => Ok(MmluPrompt::Hendrycks),
            "lm-eval" => Ok(MmluPrompt::LmEval),
            _ => Err(format!("unknown MMLU prompt `{s}` (hendrycks or lm-eval)")),
        }
    }
}
