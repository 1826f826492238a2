//! The requests and the HTTP around them: request shapes, structured output, retries,
//! timeouts, token limits and body caps.

use super::*;

#[test]
fn response_format_is_sent_then_dropped_after_a_400() {
    let server = ScriptedServer::start(vec![
        Scripted::error(
            400,
            "response_format json_schema is not supported by this server",
        ),
        Scripted::openai(&good(0.35), 1, 1),
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    a.propose(&ctx).unwrap();
    a.propose(&ctx).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    let rf = &reqs[0].body["response_format"];
    assert_eq!(rf["type"], "json_schema");
    assert_eq!(rf["json_schema"]["name"], "proposal");
    assert_eq!(rf["json_schema"]["strict"], true);
    assert_eq!(rf["json_schema"]["schema"], proposal_schema());
    // The retry and every later call go without it.
    assert!(reqs[1].body.get("response_format").is_none());
    assert!(reqs[2].body.get("response_format").is_none());
}

#[test]
fn base_url_with_v1_is_accepted_and_usage_recorded() {
    let server = ScriptedServer::start(vec![Scripted::openai("hello", 1234, 56)]);
    let client = LlmClient::new(config(Backend::OpenAi, &format!("{}/v1/", server.url()))).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(client.chat("sys", "hi", None)).unwrap();
    assert_eq!(reply.text, "hello");
    assert_eq!(reply.model, "scripted-model");
    let u = reply.usage;
    assert_eq!((u.prompt_tokens, u.completion_tokens), (1234, 56));
    assert_eq!(server.requests()[0].path, "/v1/chat/completions");
}

// Retry-After in seconds, and as an HTTP date (as proxies send it: the wait until then; it
// fell back to the backoff).
#[test]
fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    // The date is whole seconds: at least 2 s after it was written.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3));
    for (status, retry_after) in [(429, "1"), (503, date.as_str())] {
        let server = ScriptedServer::start(vec![
            Scripted::error(status, "slow down").header("Retry-After", retry_after),
            Scripted::openai(&good(0.35), 1, 1),
        ]);
        agent(&server).propose(&AgentContext::example()).unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        let gap = reqs[1].at - reqs[0].at;
        // The backoff alone would be 10 ms.
        assert!(
            gap >= Duration::from_secs(1),
            "{retry_after}: retried after {gap:?}"
        );
    }
}

#[test]
fn two_503s_then_success_and_a_dropped_connection_is_retried() {
    let server = ScriptedServer::start(vec![
        Scripted::error(503, "overloaded"),
        Scripted::error(503, "overloaded"),
        Scripted::openai(&good(0.35), 1, 1),
        Scripted::drop_connection(),
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let mut a = agent(&server);
    a.propose(&AgentContext::example()).unwrap();
    assert_eq!(server.requests().len(), 3);
    a.propose(&AgentContext::example()).unwrap();
    assert_eq!(server.requests().len(), 5);
}

#[test]
fn persistent_5xx_gives_up_after_max_attempts() {
    let server = ScriptedServer::start(vec![Scripted::error(502, "bad gateway"); 5]);
    let e = agent(&server)
        .propose(&AgentContext::example())
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("502") && msg.contains("after 4 attempts"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn anthropic_request_shape_and_reply() {
    let server = ScriptedServer::start(vec![Scripted::anthropic(&good(0.35), 321, 12)]);
    let mut a = agent_for(Backend::Anthropic, &server);
    assert_eq!(a.name(), "anthropic:test-model");
    let r = a.propose(&AgentContext::example()).unwrap();
    assert_eq!(r.value.layers[0].sparsity, 0.35);
    assert_eq!(
        (r.usage.prompt_tokens, r.usage.completion_tokens),
        (321, 12)
    );
    let req = &server.requests()[0];
    assert_eq!(req.path, "/v1/messages");
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert!(req.header("authorization").is_none());
    assert!(req.body["system"]
        .as_str()
        .unwrap()
        .contains("pruning agent"));
    assert_eq!(req.body["max_tokens"], 4096);
    let msgs = req.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["role"], "user");
    assert!(req.body.get("response_format").is_none());
}

/// Anthropic counts tokens read from or written to its prompt cache apart from
/// input_tokens; the prompt's count is all three.
#[test]
fn anthropic_cached_prompt_tokens_are_counted() {
    let reply = serde_json::json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": good(0.35)}], "stop_reason": "end_turn",
        "usage": {"input_tokens": 21, "cache_creation_input_tokens": 300,
                  "cache_read_input_tokens": 4000, "output_tokens": 12}
    });
    let server = ScriptedServer::start(vec![Scripted::json(200, reply)]);
    let r = agent_for(Backend::Anthropic, &server)
        .propose(&AgentContext::example())
        .unwrap();
    assert_eq!(
        (r.usage.prompt_tokens, r.usage.completion_tokens),
        (4321, 12)
    );
}

#[test]
fn a_400_not_about_response_format_keeps_structured_output_on() {
    let server = ScriptedServer::start(vec![
        Scripted::error(400, "messages[1]: unexpected role"),
        Scripted::openai(&good(0.35), 1, 1),
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    a.propose(&ctx).unwrap();
    a.propose(&ctx).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[0].body.get("response_format").is_some());
    assert!(
        reqs[1].body.get("response_format").is_none(),
        "the retry goes without it"
    );
    assert!(
        reqs[2].body.get("response_format").is_some(),
        "the next request asks for structured output again"
    );
}

// A prompt past the model's context fails the same way without response_format, and on
// every resume: sent once, and said to be what it is (an audit's 36-block session sent
// each 15,312-token prompt twice and was told to resume "once it answers").
#[test]
fn a_prompt_past_the_context_is_sent_once_and_named() {
    for backend in [Backend::OpenAi, Backend::Anthropic] {
        let server = ScriptedServer::start(vec![Scripted::error(
            400,
            "This model's maximum context length is 15000 tokens. However, your messages resulted in 15312 tokens.",
        )]);
        let e = agent_for(backend, &server)
            .propose(&AgentContext::example())
            .unwrap_err();
        let msg = format!("{e:#}");
        assert_eq!(server.requests().len(), 1, "{backend:?}: {msg}");
        assert!(
            msg.contains("(the prompt is longer than the model's context, and a resume sends the same prompt: shorten the templates with --prompts DIR, or serve the model with a longer context)"),
            "{msg}"
        );
    }
}

/// OpenAI's reasoning models refuse `max_tokens`: a 400 naming it sends the limit as
/// `max_completion_tokens` from then on, without dropping structured output.
#[test]
fn a_rejected_max_tokens_is_sent_as_max_completion_tokens() {
    let server = ScriptedServer::start(vec![
        Scripted::error(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
        ),
        Scripted::openai(&good(0.35), 1, 1),
        Scripted::openai(&good(0.36), 1, 1),
    ]);
    let mut cfg = config(Backend::OpenAi, &server.url());
    cfg.max_tokens = Some(900);
    let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
    let ctx = AgentContext::example();
    a.propose(&ctx).unwrap();
    a.propose(&ctx).unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].body["max_tokens"], 900);
    for r in &reqs[1..] {
        assert_eq!(r.body["max_completion_tokens"], 900);
        assert!(r.body.get("max_tokens").is_none());
        assert_eq!(r.body["response_format"]["type"], "json_schema");
    }
}

/// A 400 about the limit's value, not its name, keeps the name: it used to switch to
/// `max_completion_tokens` for the rest of the session.
#[test]
fn a_max_tokens_value_error_keeps_the_field_name() {
    // The second also holds a word of a refused field ("instead"): the agent audit's case,
    // which switched the name until 2026-12-03.
    for said in [
        "max_tokens is too large: 100000. This model supports at most 4096 completion tokens.",
        "max_tokens is too large (100000); use a value of at most 4096 instead",
    ] {
        let server = ScriptedServer::start(vec![
            Scripted::error(400, said),
            Scripted::openai(&good(0.35), 1, 1),
        ]);
        let mut cfg = config(Backend::OpenAi, &server.url());
        cfg.max_tokens = Some(100000);
        let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
        a.propose(&AgentContext::example()).unwrap();
        let reqs = server.requests();
        assert_eq!(reqs.len(), 2);
        for r in &reqs {
            assert_eq!(r.body["max_tokens"], 100000, "{said}: {}", r.body);
            assert!(r.body.get("max_completion_tokens").is_none());
        }
        // The retry was the one without response_format, which such a 400 cannot rule out.
        assert!(reqs[1].body.get("response_format").is_none());
    }
}

/// A huge reply is refused in one line instead of being read, stored and sent back.
#[test]
fn a_reply_body_over_the_cap_is_refused_in_one_line() {
    let huge = "x".repeat(5 << 20);
    let server = ScriptedServer::start(vec![Scripted::openai(&huge, 1, 1)]);
    let e = agent(&server)
        .propose(&AgentContext::example())
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("larger than 4 MiB"),
        "{}",
        &msg[..msg.len().min(300)]
    );
    assert!(
        msg.len() < 400 && !msg.contains('\n'),
        "{}",
        &msg[..msg.len().min(300)]
    );
    assert_eq!(server.requests().len(), 1, "not retried, no repair");
}

#[test]
fn a_timeout_names_the_flag_that_sets_it() {
    let server = ScriptedServer::start(vec![Scripted::hang(Duration::from_secs(5))]);
    let mut cfg = config(Backend::OpenAi, &server.url());
    cfg.timeout = Duration::from_secs(1);
    let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
    let msg = format!("{:#}", a.propose(&AgentContext::example()).unwrap_err());
    assert!(
        msg.contains("timed out after 1 s") && msg.contains("--agent-timeout"),
        "{msg}"
    );
}

/// A 5xx whose body stalls is the timeout's failure: not retried (each try would wait the
/// whole timeout again), and the line names the flag.
#[test]
fn a_5xx_whose_body_stalls_times_out_once() {
    let stall = Scripted::stalled(503, Duration::from_secs(8));
    let server = ScriptedServer::start(vec![
        stall.clone(),
        stall,
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let mut cfg = config(Backend::OpenAi, &server.url());
    cfg.timeout = Duration::from_secs(1);
    let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
    let msg = format!("{:#}", a.propose(&AgentContext::example()).unwrap_err());
    assert!(
        msg.contains("timed out after 1 s")
            && msg.contains("503 Service Unavailable")
            && msg.contains("--agent-timeout"),
        "{msg}"
    );
    assert_eq!(server.requests().len(), 1, "not retried: {msg}");
}
