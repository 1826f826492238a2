//! Anthropic Messages API (`/v1/messages`).

use anyhow::{bail, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};

use super::context::Usage;
use super::llm::{ChatReply, LlmClient, Message};
use super::text::{one_line, MAX_SHOWN};
use super::RAISE;

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
    let u = &v["usage"];
    let usage = Usage {
        // Tokens read from or written to a prompt cache are not in input_tokens.
        prompt_tokens: [
            "input_tokens",
            "cache_creation_input_tokens",
            "cache_read_input_tokens",
        ]
        .iter()
        .map(|k| u[k].as_u64().unwrap_or(0))
        .fold(0, u64::saturating_add),
        completion_tokens: u["output_tokens"].as_u64().unwrap_or(0),
        cost: None,
    };
    let text = reply_text(c, &v).map_err(|e| super::billed(e, usage))?;
    Ok(ChatReply::from_server(
        c,
        text,
        usage,
        v["model"].as_str().unwrap_or(&c.cfg.model),
        v["stop_reason"] == "max_tokens",
    ))
}

/// The reply's answer, or why it has none.
fn reply_text(c: &LlmClient, v: &Value) -> Result<String> {
    let url = format!("{}{PATH}", c.base_url());
    let Some(blocks) = v["content"].as_array() else {
        if !v["error"].is_null() {
            let m = super::http::server_message(&v.to_string());
            bail!(
                "{}",
                c.scrub(&format!("anthropic: error from {url} (HTTP 200): {m}"))
            );
        }
        bail!(
            "{}",
            c.scrub(&format!(
                "anthropic: reply from {url} has no content list: {}",
                one_line(&v.to_string(), 200)
            ))
        );
    };
    let text: String = blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect();
    if v["stop_reason"] == "refusal" {
        let said = if text.trim().is_empty() {
            "(no text)"
        } else {
            text.trim()
        };
        bail!(
            "{}",
            c.scrub(&format!(
                "anthropic: the model refused: {}",
                one_line(said, MAX_SHOWN)
            ))
        );
    }
    let limit = c.cfg.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
    if text.trim().is_empty() && v["stop_reason"] == "max_tokens" {
        let thought = blocks.iter().any(|b| b["type"] == "thinking");
        bail!(
            "anthropic: the reply was cut off at max_tokens ({limit}) before any answer{}; {RAISE}",
            if thought { ", spent on thinking" } else { "" }
        );
    }
    if text.trim().is_empty() {
        let kinds: Vec<&str> = blocks
            .iter()
            .map(|b| b["type"].as_str().unwrap_or("?"))
            .filter(|k| *k != "text")
            .collect();
        if !kinds.is_empty() {
            let tools = if kinds.contains(&"tool_use") {
                "; Arborist offers no tools, so the server or model is misconfigured"
            } else {
                ""
            };
            bail!(
                "anthropic: the reply has no text, only {} block(s) (stop_reason {}){tools}",
                one_line(&kinds.join(", "), 200),
                one_line(v["stop_reason"].as_str().unwrap_or("none"), 40)
            );
        }
    }
    if v["stop_reason"] == "max_tokens" {
        tracing::warn!("anthropic: reply cut off at max_tokens ({limit}); {RAISE}");
    }
    Ok(text)
}
