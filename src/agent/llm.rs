//! The chat client over the OpenAI-compatible and Anthropic APIs. Errors are one line and
//! never carry the API key.

use std::fmt;
use std::sync::atomic::AtomicBool;

use anyhow::{bail, Result};
use reqwest::header::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use super::config::{ApiKey, Backend, LlmConfig, RetryPolicy};
use super::context::Usage;
use super::http::HttpError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn user(content: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: content.into(),
        }
    }

    pub fn assistant(content: impl Into<String>) -> Message {
        Message {
            role: Role::Assistant,
            content: content.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ChatReply {
    /// The answer with any echo of the key removed: what is recorded and shown.
    pub text: String,
    /// The answer as the server sent it, to parse: the scrub can change a short key's
    /// characters in ordinary text. Never recorded.
    pub said: String,
    pub usage: Usage,
    /// The model the server says answered (falls back to the configured one).
    pub model: String,
    /// The text stopped at the token limit (so a proposal in it may be cut short).
    pub cut_off: bool,
}

impl ChatReply {
    /// A back end's reply: what is kept of the answer and the model's name has any echo of
    /// the key removed (on the decoded text: JSON escapes such as `\/` or `\u0041` could
    /// hide an echo in the body).
    pub(crate) fn from_server(
        c: &LlmClient,
        said: String,
        usage: Usage,
        model: &str,
        cut_off: bool,
    ) -> ChatReply {
        ChatReply {
            text: c.scrub(&said),
            said,
            usage,
            model: c.scrub(model),
            cut_off,
        }
    }
}

pub struct LlmClient {
    pub(crate) cfg: LlmConfig,
    /// Base URL without trailing slash or `/v1`.
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    /// Set once an OpenAI-compatible server has rejected `response_format`.
    pub(crate) schema_off: AtomicBool,
    /// The reply limit goes as `max_completion_tokens` (OpenAI's own API, whose reasoning
    /// models refuse `max_tokens`) rather than `max_tokens` (what other servers read);
    /// flipped once a server rejects the one sent.
    pub(crate) completion_tokens: AtomicBool,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient")
            .field("backend", &self.cfg.backend)
            .field("model", &self.cfg.model)
            .field("base_url", &self.base)
            .field("api_key", &self.cfg.api_key.as_ref().map(|_| "<redacted>"))
            .field("retry", &self.cfg.retry)
            .finish()
    }
}

/// `raw` with whatever precedes an `@` in its authority replaced, for an error message
/// about a URL that does not parse (so its parts cannot be taken apart reliably).
fn without_userinfo(raw: &str) -> String {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once("://").unwrap_or(("", raw));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]),
        None => raw.to_string(),
    }
}

/// The server's base URL as requests are built from it (without a trailing `/` or `/v1`),
/// or why it cannot be one. It is recorded in the session header and named in errors, so
/// it must not carry a secret (the message names it without its user part); the endpoint
/// path is appended to it, so it takes no query or fragment (a query's key went into the
/// header, and the path was appended after the query).
pub fn base_url(raw: &str, env_key: &str) -> Result<String> {
    let base = raw.trim().trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base).to_string();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!(
            "--base-url {}: expected an http:// or https:// URL",
            without_userinfo(raw)
        );
    }
    // An address that does not parse was taken as it was, unchecked for credentials, and
    // failed at every agent call after the model had loaded.
    let mut url = reqwest::Url::parse(&base).map_err(|e| {
        anyhow::anyhow!(
            "--base-url {}: not a valid URL ({e})",
            without_userinfo(raw)
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        let _ = url.set_username("");
        let _ = url.set_password(None);
        bail!(
            "--base-url {url}: the URL holds credentials (user:password@), which would be \
             written to the session file; pass the key in {env_key} instead"
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        url.set_query(None);
        url.set_fragment(None);
        bail!(
            "--base-url: a query (?...) or fragment (#...) is not taken: the endpoint's path \
             is appended to the URL, which is written to the session file; pass {url} \
             and any key in {env_key}"
        );
    }
    Ok(base)
}

impl LlmClient {
    pub fn new(cfg: LlmConfig) -> Result<LlmClient> {
        let b = cfg.backend;
        if cfg.model.trim().is_empty() {
            bail!("{b}: no model given; pass --agent-model NAME");
        }
        if cfg.api_key.is_none() && cfg.base_url.is_none() {
            bail!(
                "{b}: {} is not set (needed for {}; a local server given with --base-url needs no key)",
                b.env_key(),
                b.default_base_url()
            );
        }
        let raw = cfg.base_url.as_deref().unwrap_or(b.default_base_url());
        let base = base_url(raw, b.env_key())?;
        // A key a header cannot carry was left out of every request, unsaid (the server
        // then answered 401 without saying why). Named by position, never shown.
        if let Some(k) = &cfg.api_key {
            if let Some(i) = k
                .expose()
                .chars()
                .position(|c| !(c == '\t' || (' '..='~').contains(&c)))
            {
                bail!(
                    "{}: character {} of the key is not printable ASCII, which an HTTP header cannot carry (a stray control character or quote from how it was set?)",
                    b.env_key(),
                    i + 1
                );
            }
        }
        // No redirects: reqwest keeps Anthropic's x-api-key header across hosts and
        // schemes, and turns a POST into a GET on 301/302. A redirect is an error that
        // names where to point --base-url.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .timeout(cfg.timeout)
            .user_agent(concat!("arborist/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("{b}: cannot build the HTTP client: {e}"))?;
        let public = cfg.base_url.is_none();
        Ok(LlmClient {
            cfg,
            base,
            http,
            schema_off: AtomicBool::new(false),
            completion_tokens: AtomicBool::new(public),
        })
    }

    pub fn backend(&self) -> Backend {
        self.cfg.backend
    }

    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// One system prompt and one user message.
    pub async fn chat(
        &self,
        system: &str,
        user: &str,
        schema: Option<&Value>,
    ) -> Result<ChatReply> {
        self.chat_messages(system, &[Message::user(user)], schema)
            .await
    }

    /// A conversation (user and assistant turns) after one system prompt.
    pub async fn chat_messages(
        &self,
        system: &str,
        messages: &[Message],
        schema: Option<&Value>,
    ) -> Result<ChatReply> {
        match self.cfg.backend {
            Backend::OpenAi => super::openai::chat(self, system, messages, schema).await,
            // Anthropic has no portable response_format; the prompt and tolerant parsing suffice.
            Backend::Anthropic => super::anthropic::chat(self, system, messages).await,
        }
    }

    /// A header holding the key, marked sensitive so reqwest never prints it.
    pub(crate) fn secret_header(&self, prefix: &str) -> Option<HeaderValue> {
        let key = self.cfg.api_key.as_ref()?;
        let mut v = HeaderValue::from_str(&format!("{prefix}{}", key.expose())).ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        headers: HeaderMap,
        body: &Value,
    ) -> Result<Value, HttpError> {
        super::http::post_with_retry(self, path, headers, body).await
    }

    /// A failed call as the one-line error users see.
    pub(crate) fn fail(&self, path: &str, e: HttpError) -> anyhow::Error {
        let text = e.describe(self.cfg.backend, &format!("{}{path}", self.base));
        anyhow::anyhow!(self.scrub(&text))
    }

    /// Server text (errors, logs and replies) with any echo of the key, or of 8 or more of
    /// its characters, removed.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match &self.cfg.api_key {
            Some(k) => k.scrub(text),
            None => text.to_string(),
        }
    }
}
