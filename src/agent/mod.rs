//! Agents that propose pruning steps and reflect on their outcomes.
//!
//! `Agent` is synchronous: the session calls it from a worker thread. `LlmAgent` drives the
//! async HTTP client on its own runtime with `block_on`.

mod anthropic;
pub mod builtin;
pub mod config;
pub mod context;
mod http;
pub use http::RETRY_TARGET;
pub mod llm;
mod openai;
pub mod parse;
pub mod percent;
pub mod prompt;
pub mod text;
mod unclosed;
pub mod unread;

use std::future::Future;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use context::{
    AgentContext, Bounds, LayerChange, LayerRow, LayerTarget, ProbeView, Proposal,
    ReviewerFeedback, StepOutcome, Usage,
};
pub use llm::{ApiKey, Backend, ChatReply, LlmClient, LlmConfig, Message, RetryPolicy, Role};
pub use prompt::Templates;

/// Longest first answer sent back in the repair conversation (bytes).
const MAX_ANSWER_ECHOED: usize = 16 * 1024;

/// Longest agent text carried into later prompts: a reflection, a proposal's reasoning
/// (characters).
const MAX_CARRIED: usize = 2000;

/// Marks where a repair message and its answer follow in `AgentReply::prompt` and `raw`.
pub const REPAIR_SEPARATOR: &str = "\n\n----- repair -----\n\n";

/// How a failed reflection is recorded: `(no reflection: <error>)`, with no prompt and no
/// raw answer.
pub const NO_REFLECTION: &str = "(no reflection: ";

/// The recorded reflection stands for a failed call (see [`NO_REFLECTION`]); it is kept in
/// the session file but never shown to the agent as one of its reflections.
pub fn is_failed_reflection(r: &AgentReply<String>) -> bool {
    r.prompt.is_none() && r.raw.is_none() && r.value.starts_with(NO_REFLECTION)
}

/// An agent's answer with what is needed to log it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentReply<T> {
    pub value: T,
    /// Rendered user prompt(s), for the session log.
    pub prompt: Option<String>,
    /// Raw reply text(s).
    pub raw: Option<String>,
    pub usage: Usage,
}

pub trait Agent {
    fn propose(&mut self, ctx: &AgentContext) -> Result<AgentReply<Proposal>>;
    fn reflect(
        &mut self,
        ctx: &AgentContext,
        proposal: &Proposal,
        outcome: &StepOutcome,
    ) -> Result<AgentReply<String>>;
    fn name(&self) -> String;
}

/// A call the server answered (and billed) with nothing usable in it: a refusal, a reply
/// cut off before its answer, no text. Its tokens still count in the session's usage.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Billed {
    pub message: String,
    pub usage: Usage,
}

/// A proposal request that failed before any answer could be read (the server, the
/// network, a refusal): the prompt it sent is kept for the record, with the tokens billed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Unanswered {
    pub message: String,
    pub prompt: String,
    pub usage: Usage,
}

/// `e` carrying the tokens its reply was billed for.
pub(crate) fn billed(e: anyhow::Error, usage: Usage) -> anyhow::Error {
    if usage == Usage::default() {
        return e;
    }
    Billed {
        message: format!("{e:#}"),
        usage,
    }
    .into()
}

/// What the user can do about a reply cut off at the token limit (every back end says it).
pub(crate) const RAISE: &str = "raise --agent-max-tokens N";
/// What the model can do about it, in the repair request (it was told to raise a flag).
const ANSWER_SHORTER: &str = ": answer with the JSON object first and keep the reasoning short";

/// A reply cut off at the token limit is most likely invalid for that reason: said with
/// its problems (it was only a warning in the log, and the error read "no JSON object").
fn with_cut_off(mut problems: Vec<String>, cut_off: bool, limit: Option<u32>) -> Vec<String> {
    if cut_off {
        let now = limit.map_or_else(|| "the server's own".into(), |n| n.to_string());
        problems.push(format!(
            "the reply was cut off at the token limit ({now}): {RAISE}"
        ));
    }
    problems
}

/// The problems as the repair request tells them to the model: the user's remedy for a
/// cut-off reply becomes the model's own.
fn for_the_model(problems: &[String]) -> Vec<String> {
    (problems.iter())
        .map(
            |p| match p.strip_suffix(RAISE).and_then(|h| h.strip_suffix(": ")) {
                Some(head) => format!("{head}{ANSWER_SHORTER}"),
                None => p.clone(),
            },
        )
        .collect()
}

/// The tokens a failed call was billed for (none when no reply came).
pub fn billed_usage(e: &anyhow::Error) -> Usage {
    e.chain()
        .find_map(|c| {
            c.downcast_ref::<Billed>()
                .map(|b| b.usage)
                .or_else(|| c.downcast_ref::<Unanswered>().map(|u| u.usage))
        })
        .unwrap_or_default()
}

/// A proposal that was still invalid after the one repair round, or whose repair request
/// failed. Downcast the `anyhow::Error` to this to log what was sent and received.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct ProposalError {
    /// The last answer's problems (the first answer's when the repair request failed).
    pub problems: Vec<String>,
    /// Why the repair request failed; None when it was answered and still invalid.
    pub repair_failed: Option<String>,
    /// Both prompts, joined by [`REPAIR_SEPARATOR`].
    pub prompt: String,
    /// Both answers (the second empty when the repair request failed), joined likewise.
    pub raw: String,
    /// Tokens of every exchange that was answered.
    pub usage: Usage,
}

impl ProposalError {
    fn describe(&self) -> String {
        match &self.repair_failed {
            None => format!(
                "agent proposal still invalid after one repair: {}",
                self.problems.join("; ")
            ),
            Some(e) => format!(
                "agent proposal invalid ({}) and the repair request failed: {e}",
                self.problems.join("; ")
            ),
        }
    }
}

pub struct LlmAgent {
    client: LlmClient,
    templates: Templates,
    /// Its own current-thread runtime: the agent is called from a worker thread.
    rt: tokio::runtime::Runtime,
    schema: Value,
}

impl LlmAgent {
    /// Builds its own current-thread runtime. Create and drop it outside async code.
    pub fn new(client: LlmClient, templates: Templates) -> Result<LlmAgent> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("agent: cannot start a tokio runtime")?;
        Ok(LlmAgent {
            client,
            templates,
            rt,
            schema: parse::proposal_schema(),
        })
    }

    pub fn client(&self) -> &LlmClient {
        &self.client
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }
}

// The session moves the agent onto its worker thread.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<LlmAgent>();
};

impl std::fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgent")
            .field("client", &self.client)
            .field("templates", &self.templates)
            .finish()
    }
}

impl Agent for LlmAgent {
    fn propose(&mut self, ctx: &AgentContext) -> Result<AgentReply<Proposal>> {
        let system = self.templates.system(ctx)?;
        let user = self.templates.step(ctx)?;
        let schema = Some(&self.schema);
        let first = self
            .block_on(self.client.chat(&system, &user, schema))
            .map_err(|e| Unanswered {
                message: format!("{e:#}"),
                usage: billed_usage(&e),
                prompt: user.clone(),
            })?;
        let problems = match self.parse(&first, ctx) {
            Ok(value) => {
                return Ok(AgentReply {
                    value,
                    prompt: Some(user),
                    raw: Some(first.text),
                    usage: first.usage,
                })
            }
            Err(problems) => problems,
        };
        // The first problem is named: a repair that works left the user guessing why.
        tracing::warn!(
            "{}: iter {}: proposal invalid ({} problem(s), the first: {}); asking once for a repair",
            self.name(),
            ctx.iteration,
            problems.len(),
            text::one_line(problems.first().map_or("", String::as_str), 200)
        );
        let repair = self.templates.repair(ctx, &for_the_model(&problems))?;
        // Some APIs reject an empty assistant turn; a huge one is cut (a proposal is small).
        let said = if first.text.trim().is_empty() {
            "(empty reply)".to_string()
        } else if first.text.len() > MAX_ANSWER_ECHOED {
            let cut = first.text.floor_char_boundary(MAX_ANSWER_ECHOED);
            format!(
                "{}\n…(reply cut here: {} bytes in all)",
                &first.text[..cut],
                first.text.len()
            )
        } else {
            first.text.clone()
        };
        let turns = [
            Message::user(user.as_str()),
            Message::assistant(said),
            Message::user(repair.as_str()),
        ];
        let prompt = format!("{user}{REPAIR_SEPARATOR}{repair}");
        let second = match self.block_on(self.client.chat_messages(&system, &turns, schema)) {
            Ok(second) => second,
            // The first exchange is kept: the failure is recorded with what was said.
            Err(e) => {
                let mut usage = first.usage;
                usage += billed_usage(&e);
                return Err(ProposalError {
                    problems,
                    repair_failed: Some(format!("{e:#}")),
                    prompt,
                    raw: format!("{}{REPAIR_SEPARATOR}", first.text),
                    usage,
                }
                .into());
            }
        };
        let mut usage = first.usage;
        usage += second.usage;
        let raw = format!("{}{REPAIR_SEPARATOR}{}", first.text, second.text);
        match self.parse(&second, ctx) {
            Ok(value) => Ok(AgentReply {
                value,
                prompt: Some(prompt),
                raw: Some(raw),
                usage,
            }),
            Err(problems) => Err(ProposalError {
                problems,
                repair_failed: None,
                prompt,
                raw,
                usage,
            }
            .into()),
        }
    }

    fn reflect(
        &mut self,
        ctx: &AgentContext,
        proposal: &Proposal,
        outcome: &StepOutcome,
    ) -> Result<AgentReply<String>> {
        let system = self.templates.system(ctx)?;
        let user = self.templates.reflection(ctx, proposal, outcome)?;
        let reply = self.block_on(self.client.chat(&system, &user, None))?;
        let value = reply.text.trim();
        if value.is_empty() {
            return Err(billed(
                anyhow::anyhow!("{}: empty reflection", self.name()),
                reply.usage,
            ));
        }
        // Reflections go into every later prompt; the whole reply stays in `raw`.
        Ok(AgentReply {
            value: cut_for_prompts(value),
            prompt: Some(user),
            raw: Some(reply.text),
            usage: reply.usage,
        })
    }

    fn name(&self) -> String {
        format!("{}:{}", self.client.backend(), self.client.model())
    }
}

/// Agent text that later prompts carry, cut at [`MAX_CARRIED`] characters.
fn cut_for_prompts(text: &str) -> String {
    match text.char_indices().nth(MAX_CARRIED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

impl LlmAgent {
    /// The proposal in a reply, parsed as the server sent it; what is kept of it (the
    /// reasoning, problems quoting the reply) has any echo of the key removed.
    fn parse(&self, reply: &ChatReply, ctx: &AgentContext) -> Result<Proposal, Vec<String>> {
        let scrub = |t: &str| self.client.scrub(t);
        parse::parse_and_validate(&reply.said, ctx)
            .map(|mut p| {
                // It goes into the reflection prompt and a re-ask after a rejection, as
                // reflections go into later prompts: cut alike (a 3 MB one was sent whole).
                p.reasoning = cut_for_prompts(&scrub(&p.reasoning));
                p
            })
            .map_err(|p| {
                with_cut_off(p, reply.cut_off, self.client.cfg.max_tokens)
                    .iter()
                    .map(|p| scrub(p))
                    .collect()
            })
    }
}
