//! The POST-with-retry loop both back ends share, and how failures read.

use std::time::{Duration, SystemTime};

/// The tracing target of a retry's warning.
pub const RETRY_TARGET: &str = "arborist::agent::retry";

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::Value;

use super::llm::{Backend, LlmClient};
use super::text::one_line;

/// Longest server error message quoted in an error line.
const MAX_MESSAGE: usize = 300;

/// Largest response body read; a proposal or a reflection is a few KB, so a larger body is
/// a broken or hostile server, refused before it fills memory, the session file and the
/// repair request.
pub(crate) const MAX_BODY: usize = 4 << 20;

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
        seconds: u64,
    },
    TooLarge {
        limit: usize,
    },
    /// Not followed: the key would go with the request to wherever it points.
    Redirect {
        status: StatusCode,
        to: Option<String>,
    },
}

/// A server's words for a prompt longer than the model's context (OpenAI, vLLM, llama.cpp,
/// Ollama, Anthropic): waiting does not help, since every try sends the same prompt.
pub(crate) fn context_overflow(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "context length",
        "context_length",
        "context window",
        "maximum context",
        "prompt is too long",
        "input is too long",
        "too many tokens",
        "exceeds the context",
    ]
    .iter()
    .any(|w| m.contains(w))
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
                    400 | 413 | 422 if context_overflow(message) => " (the prompt is longer than the model's context, and a resume sends the same prompt: shorten the templates with --prompts DIR, or serve the model with a longer context)".to_string(),
                    _ => String::new(),
                };
                let tries = if *attempts > 1 {
                    format!(" after {attempts} attempts")
                } else {
                    String::new()
                };
                let status = status_text(*status);
                format!("{backend}: HTTP {status} from {url}{tries}: {message}{hint}")
            }
            HttpError::Transport { message, attempts } => {
                format!("{backend}: request to {url} failed after {attempts} attempt(s): {message}")
            }
            HttpError::BadBody { message } => {
                format!("{backend}: unexpected response from {url}: {message}")
            }
            HttpError::Timeout { message, seconds } => {
                format!(
                    "{backend}: request to {url} timed out after {seconds} s ({message}); raise --agent-timeout SECS"
                )
            }
            HttpError::Redirect { status, to } => {
                let status = status_text(*status);
                match to {
                    Some(to) => format!(
                        "{backend}: HTTP {status} from {url} redirects to {}; not followed (the key would go with it): set --base-url to the address meant",
                        one_line(to, 200)
                    ),
                    None => format!(
                        "{backend}: HTTP {status} from {url} (a redirect without a Location); not followed: check --base-url"
                    ),
                }
            }
            HttpError::TooLarge { limit } => {
                format!(
                    "{backend}: the reply from {url} is larger than {} MiB; refused (a proposal is a few KB)",
                    limit >> 20
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
        let timeout = c.cfg.timeout.as_secs();
        let (err, retry_after) = match sent {
            Ok(resp) if resp.status().is_success() => match read_capped(resp, MAX_BODY).await {
                Ok(bytes) => {
                    // Parsed as sent: scrubbing the body first broke its JSON and token
                    // counts wherever a short key's characters occur (a key `0`). The
                    // client scrubs the texts it keeps; an error's quote is scrubbed whole
                    // before it is cut (an echo past the cut would no longer match).
                    let text = String::from_utf8_lossy(&bytes);
                    return serde_json::from_str(&text).map_err(|e| HttpError::BadBody {
                        message: if text.trim().is_empty() {
                            "an empty body, not JSON".to_string()
                        } else if text.trim_start().starts_with("data:") {
                            // The request never sets `stream`: a proxy or server that
                            // streams anyway gets its own words.
                            format!(
                                "a stream of server-sent events (text/event-stream), not one JSON body: the request did not ask to stream, so the server or a proxy in between streams on its own: {}",
                                snippet(&c.scrub(&text))
                            )
                        } else {
                            format!("invalid JSON ({e}): {}", snippet(&c.scrub(&text)))
                        },
                    });
                }
                Err(Read::TooLarge) => return Err(HttpError::TooLarge { limit: MAX_BODY }),
                Err(Read::Failed(e)) => (transport(&e, attempt, timeout), None),
            },
            Ok(resp) if resp.status().is_redirection() => {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| c.scrub(l));
                return Err(HttpError::Redirect {
                    status: resp.status(),
                    to,
                });
            }
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                // Only the start of a huge error body is worth quoting. A body that stalls
                // until the timeout is the timeout's failure, not the status's: retrying it
                // would wait the whole timeout again each time.
                let text = match read_capped(resp, MAX_BODY).await {
                    Ok(b) => c.scrub(&String::from_utf8_lossy(&b)),
                    Err(Read::Failed(e)) if e.is_timeout() => {
                        let message =
                            format!("HTTP {} and its body never finished", status_text(status));
                        return Err(HttpError::Timeout {
                            message,
                            seconds: timeout,
                        });
                    }
                    // Said as what it is: both read "(empty body)" until 2026-12-03.
                    Err(Read::TooLarge) => format!("a body over {} MiB, not read", MAX_BODY >> 20),
                    Err(Read::Failed(e)) => {
                        format!("its body was cut off: {}", transport_cause(&e))
                    }
                };
                let err = HttpError::Status {
                    status,
                    message: server_message(&text),
                    attempts: attempt,
                };
                (err, retry_after)
            }
            Err(e) => (transport(&e, attempt, timeout), None),
        };
        let retryable = match &err {
            HttpError::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            HttpError::Transport { .. } => true,
            HttpError::BadBody { .. }
            | HttpError::Timeout { .. }
            | HttpError::TooLarge { .. }
            | HttpError::Redirect { .. } => false,
        };
        if !retryable || attempt >= max {
            return Err(err);
        }
        let wait = policy.wait(retry_after, attempt);
        // The server's reason matters before the last try: a 429 for an exhausted quota
        // will not pass by waiting.
        let what = match &err {
            HttpError::Status {
                status, message, ..
            } => format!("HTTP {} ({})", status_text(*status), one_line(message, 120)),
            // The cause, as the last failure would give it (a refused connection and a
            // body cut off read the same until 2026-12-03).
            HttpError::Transport { message, .. } => {
                format!("connection failed ({})", one_line(&c.scrub(message), 120))
            }
            _ => "connection failed".to_string(),
        };
        // Its own target: the terminal interface shows these on its status line, where a
        // wait of a minute read only "agent is proposing".
        tracing::warn!(
            target: RETRY_TARGET,
            "{}: {what} from {url}; retrying in {:.1} s (attempt {}/{max})",
            c.cfg.backend,
            wait.as_secs_f64(),
            attempt + 1
        );
        tokio::time::sleep(wait).await;
    }
}

/// A status with its reason, including the ones `http` does not name (Anthropic's 529).
fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None if status.as_u16() == 529 => "529 Overloaded".into(),
        None => status.as_u16().to_string(),
    }
}

/// Connection-level failures worth retrying; a request that ran out its whole timeout
/// is not retried (it would most likely time out again and multiply the wait).
fn transport(e: &reqwest::Error, attempts: u32, seconds: u64) -> HttpError {
    let message = transport_cause(e);
    if e.is_timeout() && !e.is_connect() {
        return HttpError::Timeout { message, seconds };
    }
    HttpError::Transport { message, attempts }
}

/// What went wrong: the causes; reqwest's own line only repeats the URL we print.
fn transport_cause(e: &reqwest::Error) -> String {
    let mut causes = Vec::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        causes.push(s.to_string());
        src = s.source();
    }
    if causes.is_empty() {
        e.to_string()
    } else {
        causes.join(": ")
    }
}

enum Read {
    TooLarge,
    Failed(reqwest::Error),
}

/// The body, chunk by chunk, refused once it passes `limit` bytes (`bytes()` has no limit).
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, Read> {
    if resp.content_length().is_some_and(|n| n > limit as u64) {
        return Err(Read::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Read::Failed)? {
        if body.len() + chunk.len() > limit {
            return Err(Read::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Retry-After as seconds, or as an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`, the wait
/// until then from `now`; a date already past is no wait). A wait too long for a Duration
/// is the longest one (capped by the caller); converting it directly panicked the agent
/// worker. Anything else falls back to our own backoff.
fn parse_retry_after(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<f64>() {
        return (s.is_finite() && s >= 0.0)
            .then(|| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
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
        "an empty body".into()
    } else {
        one_line(&line, MAX_MESSAGE)
    }
}

fn snippet(text: &str) -> String {
    let head: String = text.chars().take(4096).collect();
    one_line(&head.split_whitespace().collect::<Vec<_>>().join(" "), 120)
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
        assert_eq!(server_message(""), "an empty body");
        assert!(server_message(&"x".repeat(1000)).chars().count() <= MAX_MESSAGE + 20);
        assert_eq!(
            server_message("bad \u{1b}[2J thing"),
            "bad \\u{1b}[2J thing"
        );
    }

    #[test]
    fn statuses_read_with_their_reason() {
        let t = |n| status_text(StatusCode::from_u16(n).unwrap());
        assert_eq!(t(429), "429 Too Many Requests");
        assert_eq!(t(529), "529 Overloaded");
        assert_eq!(t(599), "599");
    }

    #[test]
    fn retry_after_as_seconds_or_an_http_date() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let p = |v| parse_retry_after(v, now);
        assert_eq!(p(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(p("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(p("-1"), None);
        assert_eq!(p("1e20"), Some(Duration::MAX));
        assert_eq!(p("99999999999999999999"), Some(Duration::MAX));
        // The date form: the wait until then, none for a date already past.
        assert_eq!(
            p("Wed, 21 Oct 2015 07:28:45 GMT"),
            Some(Duration::from_secs(45))
        );
        assert_eq!(p("Wed, 21 Oct 2015 07:27:00 GMT"), Some(Duration::ZERO));
        // RFC 850 and asctime, which HTTP/1.1 readers must accept too.
        assert_eq!(
            p("Wednesday, 21-Oct-15 07:28:10 GMT"),
            Some(Duration::from_secs(10))
        );
        assert_eq!(p("Wed Oct 21 07:28:03 2015"), Some(Duration::from_secs(3)));
        assert_eq!(p("soon"), None);
        assert_eq!(p(""), None);
    }
}
