//! Anthropic Messages API (`/v1/messages`).

use anyhow::{bail, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::context::Usage;
use super::llm::{ChatReply, LlmClient, Message};

const PATH: &str = "/v1/messages";
const VERSION: &str = "2023-06-01";
const DEFAULT_MAX_TOKENS: u32 = 4096;

pub(super) async fn chat(c: &LlmClient, system: &str, messages: &[Message]) -> Result<ChatReply> {
    let mut h = HeaderMap::new();
    h.insert(
        HeaderName::from_static("anthropic-version"),
        HeaderValue::from_static(VERSION),
    );
    if let Some(v) = c.secret_header("") {
        h.insert(HeaderName::from_static("x-api-key"), v);
    }
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| json!({"role": m.role, "content": m.content}))
        .collect();
    let mut body = json!({
        "model": c.cfg.model,
        "max_tokens": c.cfg.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        "system": system,
        "messages": msgs,
    });
    if let Some(t) = c.cfg.temperature {
        body["temperature"] = json!(t);
    }
    let v = c.post(PATH, h, &body).await.map_err(|e| c.fail(PATH, e))?;
    let Some(blocks) = v["content"].as_array() else {
        bail!("anthropic: reply from {} has no content list", c.base_url());
    };
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    if v["stop_reason"] == "max_tokens" {
        tracing::warn!("anthropic: reply cut off at max_tokens; raise the agent's max tokens");
    }
    let u = &v["usage"];
    Ok(ChatReply {
        text,
        usage: Usage {
            prompt_tokens: u["input_tokens"].as_u64().unwrap_or(0),
            completion_tokens: u["output_tokens"].as_u64().unwrap_or(0),
            cost: None,
        },
        model: v["model"].as_str().unwrap_or(&c.cfg.model).to_string(),
    })
}
