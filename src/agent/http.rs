//! The POST-with-retry loop both back ends share, and how failures read.

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use super::llm::{Backend, LlmClient};

/// Longest server error message quoted in an error line.
const MAX_MESSAGE: usize = 300;

#[derive(Debug)]
pub(crate) enum HttpError {
    Status {
        status: StatusCode,
        message: String,
        attempts: u32,
    },
    Transport {
        message: String,
        attempts: u32,
    },
    BadBody {
        message: String,
    },
    Timeout {
        message: String,
    },
}

impl HttpError {
    pub(crate) fn describe(&self, backend: Backend, url: &str) -> String {
        match self {
            HttpError::Status {
                status,
                message,
                attempts,
            } => {
                let hint = match status.as_u16() {
                    401 | 403 => format!(" (check {})", backend.env_key()),
                    404 => " (check --base-url and --agent-model)".to_string(),
                    _ => String::new(),
                };
                let tries = if *attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                format!("{backend}: HTTP {status} from {url}{tries}: {message}{hint}")
            }
            HttpError::Transport { message, attempts } => {
                format!("{backend}: request to {url} failed after {attempts} attempt(s): {message}")
            }
            HttpError::BadBody { message } => {
                format!("{backend}: unexpected response from {url}: {message}")
            }
            HttpError::Timeout { message } => {
                format!(
                    "{backend}: request to {url} timed out ({message}); raise the agent timeout"
                )
            }
        }
    }
}

pub(crate) async fn post_with_retry(
    c: &LlmClient,
    path: &str,
    headers: HeaderMap,
    body: &Value,
) -> Result<Value, HttpError> {
    let url = format!("{}{path}", c.base);
    let policy = &c.cfg.retry;
    let max = policy.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let sent = c
            .http
            .post(&url)
            .headers(headers.clone())
            .json(body)
            .send()
            .await;
        let (err, retry_after) = match sent {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| HttpError::BadBody {
                        message: format!("invalid JSON ({e}): {}", snippet(&bytes)),
                    })
                }
                Err(e) => (transport(&e, attempt), None),
            },
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let text = resp.text().await.unwrap_or_default();
                let err = HttpError::Status {
                    status,
                    message: server_message(&text),
                    attempts: attempt,
                };
                (err, retry_after)
            }
            Err(e) => (transport(&e, attempt), None),
        };
        let retryable = match &err {
            HttpError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            HttpError::Transport { .. } => true,
            HttpError::BadBody { .. } | HttpError::Timeout { .. } => false,
        };
        if !retryable || attempt >= max {
            return Err(err);
        }
        let wait = match retry_after {
            Some(s) => s.min(policy.max_retry_after),
            None => policy.backoff(attempt),
        };
        let what = match &err {
            HttpError::Status { status, .. } => format!("HTTP {status}"),
            _ => "connection failed".to_string(),
        };
        tracing::warn!(
            "{}: {what} from {url}; retrying in {:.1} s (attempt {}/{max})",
            c.cfg.backend,
            wait.as_secs_f64(),
            attempt + 1
        );
        tokio::time::sleep(wait).await;
    }
}

/// Connection-level failures worth retrying; a request that ran out its whole timeout
/// is not retried (it would most likely time out again and multiply the wait).
fn transport(e: &reqwest::Error, attempts: u32) -> HttpError {
    // The causes say what went wrong; reqwest's own line only repeats the URL we print.
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    let message = if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    };
    if e.is_timeout() && !e.is_connect() {
        return HttpError::Timeout { message };
    }
    HttpError::Transport { message, attempts }
}

/// Retry-After in its seconds form; the HTTP-date form falls back to our own backoff.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let s: f64 = v.trim().parse().ok()?;
    (s.is_finite() && s >= 0.0).then(|| Duration::from_secs_f64(s))
}

/// The message out of an error body ({"error": {"message"}} for OpenAI and Anthropic,
/// {"error": "..."} or {"message": "..."} for local servers), one line, truncated.
pub(crate) fn server_message(body: &str) -> String {
    let from_json = serde_json::from_str::<Value>(body).ok().and_then(|v| {
        let e = &v["error"];
        let found = e["message"]
            .as_str()
            .or_else(|| e.as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["detail"].as_str());
        found.map(str::to_string)
    });
    let text = from_json.unwrap_or_else(|| body.to_string());
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        "(empty body)".into()
    } else {
        truncate(&line, MAX_MESSAGE)
    }
}

fn snippet(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    truncate(&s.split_whitespace().collect::<Vec<_>>().join(" "), 120)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_are_short_single_lines() {
        let openai = r#"{"error": {"message": "Invalid\nkey", "type": "auth"}}"#;
        assert_eq!(server_message(openai), "Invalid key");
        assert_eq!(server_message(r#"{"error": "bad"}"#), "bad");
        assert_eq!(server_message(r#"{"object":"error","message":"m"}"#), "m");
        assert_eq!(server_message(""), "(empty body)");
        assert!(server_message(&"x".repeat(1000)).chars().count() <= MAX_MESSAGE + 1);
    }

    #[test]
    fn retry_after_seconds_only() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
