//! Configuration of the LLM clients: back end, key, retry policy, timeouts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    OpenAi,
    Anthropic,
}

impl Backend {
    pub fn env_key(self) -> &'static str {
        match self {
            Backend::OpenAi => "OPENAI_API_KEY",
            Backend::Anthropic => "ANTHROPIC_API_KEY",
        }
    }

    pub fn default_base_url(self) -> &'static str {
        match self {
            Backend::OpenAi => "https://api.openai.com",
            Backend::Anthropic => "https://api.anthropic.com",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::OpenAi => "openai",
            Backend::Anthropic => "anthropic",
        })
    }
}

impl FromStr for Backend {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Backend> {
        match s {
            "openai" => Ok(Backend::OpenAi),
            "anthropic" => Ok(Backend::Anthropic),
            _ => bail!("--agent {s}: expected openai or anthropic for an LLM agent"),
        }
    }
}

/// Shortest run of a key's characters redacted on its own: 8 characters of a random key
/// are a secret's worth, and ordinary text does not contain them.
const MIN_FRAGMENT: usize = 8;

/// An API key. Its Debug output is redacted so it cannot leak through `{:?}` of a config.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces the whole key wherever it stands as a token of its own in text from outside
    /// (a server may echo it back), however short: a short key is still a secret. Inside a
    /// word or a number it is left: a placeholder key (`k`, `0`) is in every reply
    /// (`k_proj`, `0.1`, `127.0.0.1`), and replacing it there broke them.
    fn scrub_whole(&self, text: &str) -> String {
        if self.0.is_empty() {
            return text.to_string();
        }
        // A neighbour that makes the match part of a longer token: a word character, or
        // a dot with one after it (a sentence's full stop ends the token).
        let joins = |c: Option<char>, beyond: Option<char>| match c {
            Some(c) if c.is_alphanumeric() || c == '_' || c == '-' => true,
            Some('.') => beyond.is_some_and(char::is_alphanumeric),
            _ => false,
        };
        let (mut out, mut copied) = (String::with_capacity(text.len()), 0);
        for (i, m) in text.match_indices(&self.0) {
            let before = text[..i].chars().rev();
            let after = text[i + m.len()..].chars();
            let (mut b, mut a) = (before.clone(), after.clone());
            if joins(b.next(), b.next()) || joins(a.next(), a.next()) {
                continue;
            }
            out.push_str(&text[copied..i]);
            out.push_str("<redacted>");
            copied = i + m.len();
        }
        out.push_str(&text[copied..]);
        out
    }

    /// Replaces the key as [`ApiKey::scrub_whole`] does; servers and
    /// gateways also echo part of it ("key prefix sk-abc123def…", "sk-abc1...wxyz"), so
    /// every run of [`MIN_FRAGMENT`] or more of the key's consecutive characters goes too.
    /// Replies too, since they are recorded: a placeholder key ("sk-no-key-required") may
    /// then take a word of one ("required"), which a real key's random runs never match.
    pub(crate) fn scrub(&self, text: &str) -> String {
        let key = self.0.as_bytes();
        if key.len() <= MIN_FRAGMENT {
            return self.scrub_whole(text);
        }
        let starts: std::collections::HashSet<&[u8]> = key.windows(MIN_FRAGMENT).collect();
        let in_key = |s: &[u8]| key.windows(s.len()).any(|w| w == s);
        let b = text.as_bytes();
        let (mut out, mut copied, mut i) = (String::with_capacity(text.len()), 0, 0);
        while i + MIN_FRAGMENT <= b.len() {
            if !starts.contains(&b[i..i + MIN_FRAGMENT]) {
                i += 1;
                continue;
            }
            let mut end = i + MIN_FRAGMENT;
            while end < b.len() && in_key(&b[i..=end]) {
                end += 1;
            }
            // Whole characters (a key with non-ASCII bytes could match inside one).
            let start = (0..=i)
                .rev()
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(0);
            let end = (end..=b.len())
                .find(|&j| text.is_char_boundary(j))
                .unwrap_or(b.len());
            out.push_str(&text[copied..start]);
            copied = end;
            out.push_str("<redacted>");
            i = end;
        }
        out.push_str(&text[copied..]);
        out
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Retries on 429, 5xx and connection failures, waiting base, 2·base, 4·base ... or the
/// server's Retry-After (seconds form), capped at `max_retry_after`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Wait before the next attempt after `failures` failed ones (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        self.base_delay * 2u32.saturating_pow(failures.saturating_sub(1).min(16))
    }

    /// The wait before the next attempt: the server's Retry-After within the cap (a header
    /// of `1e20` reads as forever), else the backoff.
    pub fn wait(&self, retry_after: Option<Duration>, failures: u32) -> Duration {
        match retry_after {
            Some(s) => s.min(self.max_retry_after),
            None => self.backoff(failures),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub backend: Backend,
    pub model: String,
    /// None: the backend's public API. A trailing `/v1` is accepted and dropped.
    pub base_url: Option<String>,
    pub api_key: Option<ApiKey>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub retry: RetryPolicy,
    /// Sent as max_tokens; Anthropic requires one (default 4096), OpenAI gets none unless set.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
}

impl LlmConfig {
    pub fn new(backend: Backend, model: impl Into<String>) -> LlmConfig {
        LlmConfig {
            backend,
            model: model.into(),
            base_url: None,
            api_key: None,
            timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            max_tokens: None,
            temperature: None,
        }
    }

    /// The CLI's view: `--agent`, `--agent-model`, `--base-url`, key from the environment.
    pub fn from_env(backend: Backend, model: &str, base_url: Option<&str>) -> LlmConfig {
        let mut c = LlmConfig::new(backend, model);
        c.base_url = base_url.map(str::to_string);
        c.api_key = std::env::var(backend.env_key())
            .ok()
            .filter(|k| !k.trim().is_empty())
            .map(|k| ApiKey::new(k.trim()));
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_key_debug_is_redacted() {
        let p = RetryPolicy::default();
        let secs: Vec<u64> = (1..=4).map(|n| p.backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8]);
        // A server's Retry-After is kept within a minute, and used as sent below it.
        assert_eq!(p.max_retry_after, Duration::from_secs(60));
        let hour = Some(Duration::from_secs(3600));
        assert_eq!(p.wait(hour, 1), Duration::from_secs(60));
        assert_eq!(p.wait(Some(Duration::MAX), 2), Duration::from_secs(60));
        assert_eq!(
            p.wait(Some(Duration::from_secs(7)), 3),
            Duration::from_secs(7)
        );
        assert_eq!(p.wait(None, 3), Duration::from_secs(4));
        let k = ApiKey::new("sk-very-secret");
        assert_eq!(format!("{k:?}"), "ApiKey(<redacted>)");
        assert_eq!(k.scrub("echo sk-very-secret!"), "echo <redacted>!");
        // A short key is redacted too, where it stands alone.
        assert_eq!(
            ApiKey::new("k9Z").scrub("key k9Z echoed, k9Z."),
            "key <redacted> echoed, <redacted>."
        );
        // Not inside a word or a number: a placeholder key is in every reply.
        let k = ApiKey::new("k");
        assert_eq!(
            k.scrub(r#""self_attn.k_proj", "prompt_tokens": 5, key: k"#),
            r#""self_attn.k_proj", "prompt_tokens": 5, key: <redacted>"#
        );
        let k = ApiKey::new("0");
        assert_eq!(
            k.scrub("http://127.0.0.1:80/ 0.1 [0, 10] (0)"),
            "http://127.0.0.1:80/ 0.1 [<redacted>, 10] (<redacted>)"
        );
        // Parts of a key as servers echo them: a prefix, a masked middle, inside a word.
        let k = ApiKey::new("sk-FAKEKEY-arbrev-1234567890abcdefXYZ");
        for (text, want) in [
            ("key prefix sk-FAKEKEY-arbrev-.", "key prefix <redacted>."),
            (
                "invalid key sk-FAKEKEY-a...defXYZ",
                "invalid key <redacted>...defXYZ",
            ),
            ("x1234567890aby", "x<redacted>y"),
            ("é1234567890abé", "é<redacted>é"),
            ("7 chars 1234567 stay", "7 chars 1234567 stay"),
        ] {
            assert_eq!(k.scrub(text), want, "{text}");
        }
        let whole = format!("a{}b{}", k.expose(), k.expose());
        assert_eq!(k.scrub(&whole), "a<redacted>b<redacted>");
        // A key of 8 characters or fewer goes only whole (its runs are the key itself).
        let k = ApiKey::new("12345678");
        let reply = r#"{"sparsity": 0.12345678, "note": "key 12345678, not 1234567"}"#;
        assert_eq!(
            k.scrub(reply),
            r#"{"sparsity": 0.12345678, "note": "key <redacted>, not 1234567"}"#
        );
        let k = ApiKey::new("sk-no-key-required");
        assert_eq!(k.scrub_whole("pruning required"), "pruning required");
        assert_eq!(k.scrub("error: key required"), "error: key <redacted>");
        assert!("gemini"
            .parse::<Backend>()
            .unwrap_err()
            .to_string()
            .contains("openai or anthropic"));
        assert_eq!("anthropic".parse::<Backend>().unwrap(), Backend::Anthropic);
    }
}
