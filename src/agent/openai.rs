//! OpenAI-compatible `/v1/chat/completions` (OpenAI, vLLM, SGLang, llama.cpp, Ollama, LM Studio).

use std::sync::atomic::Ordering;

use anyhow::{bail, Result};
use reqwest::header::{HeaderMap, AUTHORIZATION};
use serde_json::{json, Value};

use super::context::Usage;
use super::http::HttpError;
use super::llm::{ChatReply, LlmClient, Message};
use super::text::{one_line, MAX_SHOWN};
use super::RAISE;

const PATH: &str = "/v1/chat/completions";

/// Words of a 400 that refuses a field itself, not its value.
const REFUSED_FIELD: [&str; 9] = [
    "unsupported",
    "not supported",
    "unknown",
    "unrecognized",
    "unexpected",
    "not permitted",
    "not allowed",
    "instead",
    "extra",
];

/// The reply limit in force, as the cut-off messages name it (Anthropic's name theirs).
fn limit_now(c: &LlmClient) -> String {
    match c.cfg.max_tokens {
        Some(n) => format!("{} {n}", limit_field(c)),
        None => "the server's own; none was sent".to_string(),
    }
}

/// Words of a 400 about a value's size or range.
const ABOUT_VALUE: [&str; 9] = [
    "too large",
    "too big",
    "too high",
    "too many",
    "at most",
    "exceed",
    "maximum",
    "less than",
    "must be",
];

pub(super) async fn chat(
    c: &LlmClient,
    system: &str,
    messages: &[Message],
    schema: Option<&Value>,
) -> Result<ChatReply> {
    let mut schema = schema.filter(|_| !c.schema_off.load(Ordering::Relaxed));
    // Each of the two fallbacks below is tried at most once for this request.
    let mut tried_limit_field = false;
    let v = loop {
        let sent = c
            .post(PATH, headers(c), &body(c, system, messages, schema))
            .await;
        let (status, message, attempts) = match sent {
            Ok(v) => break v,
            Err(HttpError::Status {
                status,
                message,
                attempts,
            }) if matches!(status.as_u16(), 400 | 422) => (status, message, attempts),
            Err(e) => return Err(c.fail(PATH, e)),
        };
        let lower = message.to_lowercase();
        // A server that reads the other name of the reply limit: OpenAI's reasoning models
        // refuse `max_tokens`, and servers that predate `max_completion_tokens` do not
        // know it.
        // Only a rejection of the field itself: "max_tokens is too large" is about its value
        // and once switched the name for the rest of the session.
        // Words of a value's limits, or the value itself, mark a complaint about the value
        // even beside a word of the list ("use a value of at most 4096 instead").
        let about_value = ABOUT_VALUE.iter().any(|w| lower.contains(w))
            || c.cfg
                .max_tokens
                .is_some_and(|n| lower.contains(&n.to_string()));
        let refused_field = !about_value && REFUSED_FIELD.iter().any(|w| lower.contains(w));
        if c.cfg.max_tokens.is_some()
            && !tried_limit_field
            && refused_field
            && (lower.contains("max_tokens") || lower.contains("max_completion_tokens"))
        {
            tried_limit_field = true;
            let now = !c.completion_tokens.load(Ordering::Relaxed);
            c.completion_tokens.store(now, Ordering::Relaxed);
            tracing::warn!(
                "openai: server rejected the reply limit (HTTP {status}: {}); sending it as {} from now on",
                one_line(&c.scrub(&message), 200),
                limit_field(c)
            );
            continue;
        }
        // Many local servers do not know json_schema; tolerant parsing handles plain text.
        // This request is tried once more without it; only a rejection that names it turns
        // it off for the rest of the session (a 400 about, say, the context length does not).
        // A prompt past the context fails the same without response_format.
        if schema.is_some() && !super::http::context_overflow(&message) {
            let named = ["response_format", "json_schema", "schema", "structured"]
                .iter()
                .any(|w| lower.contains(w));
            if named {
                c.schema_off.store(true, Ordering::Relaxed);
            }
            // Said as what is known: a rejection that does not name response_format may be
            // about anything (the context length), and this retry only rules it out.
            if named {
                tracing::warn!(
                    "openai: server rejected response_format (HTTP {status}: {}); sending requests without it for the rest of the session",
                    c.scrub(&message)
                );
            } else {
                tracing::warn!(
                    "openai: server rejected the request (HTTP {status}: {}); trying it once more without response_format, in case the server does not support it",
                    c.scrub(&message)
                );
            }
            schema = None;
            continue;
        }
        return Err(c.fail(
            PATH,
            HttpError::Status {
                status,
                message,
                attempts,
            },
        ));
    };
    reply(c, &v)
}

/// The name the reply limit is sent under.
fn limit_field(c: &LlmClient) -> &'static str {
    if c.completion_tokens.load(Ordering::Relaxed) {
        "max_completion_tokens"
    } else {
        "max_tokens"
    }
}

fn headers(c: &LlmClient) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(v) = c.secret_header("Bearer ") {
        h.insert(AUTHORIZATION, v);
    }
    h
}

fn body(c: &LlmClient, system: &str, messages: &[Message], schema: Option<&Value>) -> Value {
    let mut msgs = vec![json!({"role": "system", "content": system})];
    msgs.extend(
        messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content})),
    );
    let mut b = json!({"model": c.cfg.model, "messages": msgs});
    if let Some(s) = schema {
        b["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "proposal", "schema": s, "strict": true}
        });
    }
    if let Some(n) = c.cfg.max_tokens {
        b[limit_field(c)] = json!(n);
    }
    if let Some(t) = c.cfg.temperature {
        b["temperature"] = json!(t);
    }
    b
}

fn reply(c: &LlmClient, v: &Value) -> Result<ChatReply> {
    let usage = usage(&v["usage"]);
    let text = reply_text(c, v).map_err(|e| super::billed(e, usage))?;
    Ok(ChatReply::from_server(
        c,
        text,
        usage,
        v["model"].as_str().unwrap_or(&c.cfg.model),
        v["choices"][0]["finish_reason"] == "length",
    ))
}

/// The reply's answer, or why it has none.
fn reply_text(c: &LlmClient, v: &Value) -> Result<String> {
    let choice = &v["choices"][0];
    let msg = &choice["message"];
    let text = match &msg["content"] {
        Value::String(t) => Some(t.clone()),
        // A list of parts (Mistral's reasoning models, some gateways): its text parts.
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect(),
        ),
        _ => None,
    };
    let cut = choice["finish_reason"] == "length";
    let text = match text {
        Some(t) if !t.trim().is_empty() => {
            if cut {
                tracing::warn!(
                    "openai: reply cut off at the token limit ({}, finish_reason length); {RAISE}",
                    limit_now(c)
                );
            }
            t
        }
        // Cut off before any answer: a repair round would only be cut off again.
        _ if cut => {
            let reasoned = ["reasoning_content", "reasoning"]
                .iter()
                .any(|k| msg[k].as_str().is_some_and(|r| !r.trim().is_empty()));
            bail!(
                "openai: the reply was cut off at the token limit ({}, finish_reason length) before any answer{}; {RAISE}",
                limit_now(c),
                if reasoned { ", spent on reasoning" } else { "" }
            )
        }
        Some(t) => t,
        None => bail!("{}", c.scrub(&no_text(c, v))),
    };
    Ok(text)
}

/// Why a 200 reply has no text to read, in one line: a refusal, tool calls, an error body.
fn no_text(c: &LlmClient, v: &Value) -> String {
    let msg = &v["choices"][0]["message"];
    let url = format!("{}{PATH}", c.base_url());
    if let Some(r) = msg["refusal"].as_str() {
        return format!(
            "openai: the model refused: {}",
            one_line(r.trim(), MAX_SHOWN)
        );
    }
    if let Some(calls) = msg["tool_calls"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<&str> = calls
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap_or("?"))
            .collect();
        return format!(
            "openai: the model answered with tool calls ({}) instead of text; Arborist offers no tools, so the server or model is misconfigured",
            one_line(&names.join(", "), 200)
        );
    }
    if !v["error"].is_null() {
        let m = super::http::server_message(&v.to_string());
        return format!("openai: error from {url} (HTTP 200): {m}");
    }
    format!(
        "openai: reply from {url} has no choices[0].message.content: {}",
        one_line(&v.to_string(), 200)
    )
}

/// Token counts, and `usage.cost` (USD) where the server reports it (OpenRouter does).
fn usage(u: &Value) -> Usage {
    Usage {
        prompt_tokens: u["prompt_tokens"].as_u64().unwrap_or(0),
        completion_tokens: u["completion_tokens"].as_u64().unwrap_or(0),
        cost: u["cost"].as_f64().filter(|c| c.is_finite() && *c >= 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reply_limit_goes_by_the_name_the_server_reads() {
        use crate::agent::{ApiKey, Backend, LlmConfig};
        let mut cfg = LlmConfig::new(Backend::OpenAi, "m");
        cfg.api_key = Some(ApiKey::new("k"));
        cfg.max_tokens = Some(7);
        let public = LlmClient::new(cfg.clone()).unwrap();
        let b = body(&public, "s", &[], None);
        assert_eq!(
            (b["max_completion_tokens"].as_u64(), b.get("max_tokens")),
            (Some(7), None)
        );
        cfg.base_url = Some("http://127.0.0.1:1".into());
        let local = LlmClient::new(cfg).unwrap();
        let b = body(&local, "s", &[], None);
        assert_eq!(
            (b["max_tokens"].as_u64(), b.get("max_completion_tokens")),
            (Some(7), None)
        );
    }

    #[test]
    fn usage_reads_the_cost_when_the_server_reports_one() {
        let v: Value = serde_json::from_str(
            r#"{"prompt_tokens": 1200, "completion_tokens": 300, "cost": 0.0123}"#,
        )
        .unwrap();
        let u = usage(&v);
        assert_eq!((u.prompt_tokens, u.completion_tokens), (1200, 300));
        assert_eq!(u.cost, Some(0.0123));
        let plain: Value =
            serde_json::from_str(r#"{"prompt_tokens": 5, "completion_tokens": 2}"#).unwrap();
        assert_eq!(usage(&plain).cost, None);
        assert_eq!(usage(&Value::Null), Usage::default());
    }
}
