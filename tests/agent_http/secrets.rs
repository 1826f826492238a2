//! The API key and the base URL's credentials: never echoed, logged or parsed as the
//! agent's words, whole or in part.

use super::*;

#[test]
fn unauthorized_is_one_line_not_retried_and_hides_the_key() {
    let echo = format!("Incorrect API key provided: {KEY}. You can find your key at ...");
    let server = ScriptedServer::start(vec![Scripted::error(401, &echo)]);
    let e = agent(&server)
        .propose(&AgentContext::example())
        .unwrap_err();
    let msg = format!("{e:#}");
    assert_eq!(server.requests().len(), 1, "401 must not be retried");
    assert!(
        msg.contains("401") && msg.contains("Incorrect API key"),
        "{msg}"
    );
    assert!(msg.contains("OPENAI_API_KEY"), "hint missing: {msg}");
    assert!(
        !msg.contains(KEY) && !format!("{e:?}").contains(KEY),
        "{msg}"
    );
    assert!(!msg.contains('\n'), "{msg}");
}

#[test]
fn debug_output_never_shows_the_key() {
    let cfg = config(Backend::OpenAi, "http://127.0.0.1:9");
    let client = LlmClient::new(cfg.clone()).unwrap();
    let agent = LlmAgent::new(LlmClient::new(cfg.clone()).unwrap(), Templates::builtin()).unwrap();
    for text in [
        format!("{cfg:?}"),
        format!("{client:?}"),
        format!("{agent:?}"),
    ] {
        assert!(!text.contains(KEY), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("redacted"), "{text}");
    }
}

#[test]
fn missing_key_for_the_public_api_is_a_clear_error() {
    let e = LlmClient::new(LlmConfig::new(Backend::Anthropic, "claude")).unwrap_err();
    assert!(
        e.to_string().contains("ANTHROPIC_API_KEY is not set"),
        "{e}"
    );
    // Local servers need no key.
    let mut cfg = LlmConfig::new(Backend::OpenAi, "llama");
    cfg.base_url = Some("http://127.0.0.1:8080/v1".into());
    assert!(LlmClient::new(cfg).is_ok());
}

/// A key echoed where a message is cut (server messages at 300 characters, bodies quoted
/// at 120 or 200) is redacted before the cut, so no part of it shows.
#[test]
fn a_key_echoed_across_a_cut_shows_no_part_of_it() {
    let at = |n: usize| format!("{}{KEY} and more", "x".repeat(n));
    let mut cases = Vec::new();
    for n in [250, 290, 295] {
        cases.push(Scripted::error(401, &at(n)));
        cases.push(Scripted::error(200, &at(n)));
    }
    for n in [60, 100, 110, 180, 190] {
        let no_choices = serde_json::json!({"id": at(n), "object": "chat.completion"});
        cases.push(Scripted::json(200, no_choices));
        let mut bad = Scripted::json(200, serde_json::json!({}));
        bad.body = format!("{{\"id\": \"{}\", broken", at(n));
        cases.push(bad);
    }
    let head = &KEY[..6];
    for case in cases {
        let body = case.body.clone();
        let server = ScriptedServer::start(vec![case]);
        let e = agent(&server)
            .propose(&AgentContext::example())
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("redacted") || msg.contains('…'), "{msg}");
        assert!(
            !msg.contains(head),
            "part of the key in: {msg} (body {body})"
        );
    }
}

/// Credentials in the base URL would reach the session header: refused, without echoing them.
#[test]
fn a_base_url_with_credentials_is_refused_without_echoing_them() {
    for url in [
        "http://alice:pw-SECRET@127.0.0.1:9/v1",
        "https://pw-SECRET@example.org",
    ] {
        let mut cfg = config(Backend::OpenAi, url);
        cfg.api_key = None;
        let msg = format!("{:#}", LlmClient::new(cfg).unwrap_err());
        assert!(
            msg.contains("holds credentials") && msg.contains("OPENAI_API_KEY"),
            "{msg}"
        );
        assert!(!msg.contains("SECRET") && !msg.contains("alice"), "{msg}");
    }
}

/// A redirect is not followed: reqwest kept Anthropic's x-api-key header on a redirect to
/// another host, and would send any key over plain http after a redirect there. The error
/// names where the server pointed.
#[test]
fn a_redirect_is_not_followed_and_names_where_it_points() {
    for backend in [Backend::OpenAi, Backend::Anthropic] {
        let elsewhere = ScriptedServer::start(vec![]);
        let to = format!("{}/v1/elsewhere", elsewhere.url());
        let server =
            ScriptedServer::start(vec![Scripted::error(307, "moved").header("Location", &to)]);
        let e = agent_for(backend, &server)
            .propose(&AgentContext::example())
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(
            msg.contains("307 Temporary Redirect") && msg.contains(&format!("redirects to {to}")),
            "{msg}"
        );
        assert!(msg.contains("not followed"), "{msg}");
        assert_eq!(server.requests().len(), 1, "not retried: {msg}");
        assert!(
            elsewhere.requests().is_empty(),
            "{backend}: the request was followed"
        );
    }
}

/// An address that does not parse was accepted unchecked (credentials included) and
/// failed at every agent call after the model had loaded; refused at once, without its
/// user part.
#[test]
fn a_base_url_that_does_not_parse_is_refused_without_its_credentials() {
    for url in [
        "http://127.0.0.1:80000/v1",
        "https://bob:pw-SECRET@host:80O0",
    ] {
        let mut cfg = config(Backend::OpenAi, url);
        cfg.api_key = None;
        let msg = format!("{:#}", LlmClient::new(cfg).unwrap_err());
        assert!(msg.contains("not a valid URL"), "{msg}");
        assert!(!msg.contains("SECRET") && !msg.contains("bob"), "{msg}");
    }
    let msg = format!(
        "{:#}",
        LlmClient::new(config(Backend::OpenAi, "http://127.0.0.1:80000")).unwrap_err()
    );
    assert!(
        msg.contains("--base-url http://127.0.0.1:80000: not a valid URL"),
        "{msg}"
    );
}

/// A query or fragment in the base URL: its key went into the session header, and the
/// endpoint was requested as `/v1?api-key=.../v1/chat/completions`. Refused without
/// echoing the query (`run` refuses it before writing anything: tests/cli_errors/flag_combinations.rs).
#[test]
fn a_base_url_with_a_query_or_fragment_is_refused() {
    for url in [
        "http://127.0.0.1:9/v1?api-key=sk-SECRET-1",
        "http://127.0.0.1:9/#SECRET",
    ] {
        let mut cfg = config(Backend::OpenAi, url);
        cfg.api_key = None;
        let msg = format!("{:#}", LlmClient::new(cfg).unwrap_err());
        assert!(
            msg.contains("a query (?...) or fragment (#...) is not taken"),
            "{msg}"
        );
        assert!(!msg.contains("SECRET"), "{msg}");
    }
}

/// A key with a control character was left out of every request without a word.
#[test]
fn a_key_a_header_cannot_carry_is_refused_by_position() {
    let mut cfg = config(Backend::OpenAi, "http://127.0.0.1:9");
    cfg.api_key = Some(ApiKey::new("sk-SECRET-\u{1}123"));
    let msg = format!("{:#}", LlmClient::new(cfg).unwrap_err());
    assert!(
        msg.contains("OPENAI_API_KEY: character 11 of the key is not printable ASCII"),
        "{msg}"
    );
    assert!(!msg.contains("SECRET"), "{msg}");
}

/// Any key, however short, is redacted from what the server echoes.
#[test]
fn a_short_key_is_redacted_too() {
    let server = ScriptedServer::start(vec![Scripted::error(401, "bad key k9Z")]);
    let mut cfg = config(Backend::OpenAi, &server.url());
    cfg.api_key = Some(ApiKey::new("k9Z"));
    let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
    let msg = format!("{:#}", a.propose(&AgentContext::example()).unwrap_err());
    assert!(
        msg.contains("bad key <redacted>") && !msg.contains("k9Z"),
        "{msg}"
    );
}

/// The first run of 8 of `KEY`'s characters found in `text`, if any.
fn key_run(text: &str) -> Option<&'static str> {
    (0..=KEY.len() - 8)
        .map(|i| &KEY[i..i + 8])
        .find(|w| text.contains(w))
}

/// A reply echoing part of the key (the audit's gateway put `key[3..20]` in a layer name) is
/// scrubbed as it comes, before it is parsed: the recorded reply, the problems and the
/// repair request hold no run of the key, also where JSON escapes or Anthropic's text
/// blocks split the echo in the body. The proposal then names `model.<redacted>`, an
/// unknown layer, and is repaired as any other.
#[test]
fn a_key_fragment_echoed_in_a_reply_is_scrubbed_before_it_is_parsed() {
    let fragment = &KEY[3..20];
    let bad = format!(
        r#"{{"layers": [{{"name": "model.{fragment}", "sparsity": 0.35}}], "reasoning": "x"}}"#
    );
    let plain = Scripted::openai(&bad, 1, 1);
    // Every fourth character as a \u escape: no 8 key characters in a row in the body.
    let escaped: String = fragment
        .chars()
        .enumerate()
        .map(|(i, c)| match i % 4 {
            3 => format!("\\u{:04x}", c as u32),
            _ => c.to_string(),
        })
        .collect();
    let mut escaped_body = Scripted::openai(&bad, 1, 1);
    escaped_body.body = escaped_body.body.replace(fragment, &escaped);
    assert!(
        key_run(&escaped_body.body).is_none(),
        "{}",
        escaped_body.body
    );
    let (head, tail) = bad.split_at(bad.find(fragment).unwrap() + 6);
    let (mid, tail) = tail.split_at(6);
    let split = Scripted::json(
        200,
        serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "text", "text": head}, {"type": "text", "text": mid},
                        {"type": "text", "text": tail}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}
        }),
    );
    assert!(key_run(&split.body).is_none(), "{}", split.body);
    for (backend, first) in [
        (Backend::OpenAi, plain),
        (Backend::OpenAi, escaped_body),
        (Backend::Anthropic, split),
    ] {
        let second = match backend {
            Backend::OpenAi => Scripted::openai(&good(0.35), 1, 1),
            Backend::Anthropic => Scripted::anthropic(&good(0.35), 1, 1),
        };
        let server = ScriptedServer::start(vec![first, second]);
        let r = agent_for(backend, &server)
            .propose(&AgentContext::example())
            .unwrap();
        assert_eq!(r.value.layers[0].name, UP0);
        let raw = r.raw.unwrap();
        assert_eq!(key_run(&raw), None, "{backend}: {raw}");
        assert!(raw.contains(r#""name": "model.<redacted>""#), "{raw}");
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2, "one repair");
        let repair = reqs[1].body.to_string();
        assert_eq!(key_run(&repair), None, "{backend}: {repair}");
        assert!(
            repair.contains("model.<redacted>: unknown layer name"),
            "{repair}"
        );
    }
}

/// A placeholder key (`k`, `0`) for a local server: its characters are in every reply
/// (`k_proj`, `"index": 0`), and scrubbing them before the parse broke each proposal, its
/// JSON and its token counts (the agent audit of 2026-12-03). The reply is parsed as sent;
/// what is kept loses the key only where it stands alone.
#[test]
fn a_placeholder_key_leaves_the_reply_readable() {
    let k_proj = "model.layers.0.self_attn.k_proj";
    for key in ["k", "0"] {
        let text = format!(
            r#"{{"layers": [{{"name": "{k_proj}", "sparsity": 0.35}}], "reasoning": "k_proj at 0.35; key {key}"}}"#
        );
        let server = ScriptedServer::start(vec![Scripted::openai(&text, 10, 5)]);
        let mut cfg = config(Backend::OpenAi, &server.url());
        cfg.api_key = Some(ApiKey::new(key));
        let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
        let r = a
            .propose(&AgentContext::example())
            .unwrap_or_else(|e| panic!("{key}: {e:#}"));
        assert_eq!(r.value.layers[0].name, k_proj, "{key}");
        assert_eq!(r.value.layers[0].sparsity, 0.35, "{key}");
        assert_eq!(
            (r.usage.prompt_tokens, r.usage.completion_tokens),
            (10, 5),
            "{key}"
        );
        assert_eq!(r.value.reasoning, "k_proj at 0.35; key <redacted>", "{key}");
        assert!(r.raw.unwrap().ends_with(r#"key <redacted>"}"#), "{key}");
    }
}
