//! The LLM agents against a scripted OpenAI/Anthropic-compatible server on 127.0.0.1.

#[path = "common/scripted_server.rs"]
mod scripted_server;

use std::time::Duration;

use arborist::agent::parse::proposal_schema;
use arborist::agent::{
    Agent, AgentContext, ApiKey, Backend, LlmAgent, LlmClient, LlmConfig, ProposalError,
    RetryPolicy, Templates, REPAIR_SEPARATOR,
};
use scripted_server::{Scripted, ScriptedServer};

const KEY: &str = "sk-test-SECRET-0123456789";
const UP0: &str = "model.layers.0.mlp.up_proj";

fn config(backend: Backend, url: &str) -> LlmConfig {
    let mut c = LlmConfig::new(backend, "test-model");
    c.base_url = Some(url.to_string());
    c.api_key = Some(ApiKey::new(KEY));
    c.timeout = Duration::from_secs(20);
    c.retry = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_retry_after: Duration::from_secs(5),
    };
    c
}

fn agent_for(backend: Backend, server: &ScriptedServer) -> LlmAgent {
    let client = LlmClient::new(config(backend, &server.url())).unwrap();
    LlmAgent::new(client, Templates::builtin()).unwrap()
}

fn agent(server: &ScriptedServer) -> LlmAgent {
    agent_for(Backend::OpenAi, server)
}

fn good(sparsity: f64) -> String {
    format!(
        r#"{{"layers": [{{"name": "{UP0}", "sparsity": {sparsity}}}], "reasoning": "lowest z"}}"#
    )
}

#[test]
fn proposals_bare_fenced_and_in_prose() {
    let server = ScriptedServer::start(vec![
        Scripted::openai(&good(0.35), 10, 5),
        Scripted::openai(&format!("```json\n{}\n```", good(0.36)), 10, 5),
        Scripted::openai(&format!("Sure {{ok}}! Here:\n{}\nDone.", good(0.37)), 10, 5),
    ]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    for want in [0.35, 0.36, 0.37] {
        let r = a.propose(&ctx).unwrap();
        assert_eq!(r.value.layers[0].name, UP0);
        assert_eq!(r.value.layers[0].sparsity, want);
        assert_eq!(r.value.reasoning, "lowest z");
        assert!(r.prompt.unwrap().contains("| layer | sparsity |"));
        assert!(r.raw.unwrap().contains(UP0));
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3);
    assert_eq!(reqs[0].path, "/v1/chat/completions");
    assert_eq!(reqs[0].method, "POST");
    let auth = format!("Bearer {KEY}");
    assert_eq!(reqs[0].header("authorization"), Some(auth.as_str()));
    let msgs = reqs[0].body["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    assert_eq!(msgs[1]["role"], "user");
    assert_eq!(reqs[0].body["model"], "test-model");
}

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
fn invalid_proposal_gets_exactly_one_repair() {
    let bad = r#"{"layers": [{"name": "model.layers.7.mlp.up_proj", "sparsity": 0.3}], "reasoning": "x"}"#;
    let server = ScriptedServer::start(vec![
        Scripted::openai(bad, 100, 10),
        Scripted::openai(&good(0.35), 200, 20),
    ]);
    let r = agent(&server).propose(&AgentContext::example()).unwrap();
    assert_eq!(r.value.layers[0].name, UP0);
    assert_eq!(
        (r.usage.prompt_tokens, r.usage.completion_tokens),
        (300, 30)
    );
    assert!(r.prompt.unwrap().contains(REPAIR_SEPARATOR));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    let msgs = reqs[1].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(msgs[2]["content"], bad);
    let repair = msgs[3]["content"].as_str().unwrap();
    assert!(
        repair.contains("model.layers.7.mlp.up_proj: unknown layer name"),
        "{repair}"
    );
}

#[test]
fn still_invalid_after_repair_fails_with_the_problems() {
    let server = ScriptedServer::start(vec![
        Scripted::openai("I would prune the MLPs.", 1, 1),
        Scripted::openai(&good(0.9), 1, 1),
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let e = agent(&server)
        .propose(&AgentContext::example())
        .unwrap_err();
    let pe = e.downcast_ref::<ProposalError>().expect("a ProposalError");
    assert!(
        pe.problems[0].contains("more than max_step"),
        "{:?}",
        pe.problems
    );
    assert!(pe.raw.contains("I would prune"));
    assert_eq!(server.requests().len(), 2, "exactly one repair");
    assert_eq!(server.remaining(), 1);
}

#[test]
fn reflection_is_plain_text_without_schema() {
    let server = ScriptedServer::start(vec![Scripted::openai(
        "  Block 1 attention is fragile.\n",
        5,
        6,
    )]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    let p = arborist::agent::parse::parse_proposal(&good(0.35)).unwrap();
    let r = a.reflect(&ctx, &p, &ctx.history[1]).unwrap();
    assert_eq!(r.value, "Block 1 attention is fragile.");
    assert_eq!(r.usage.completion_tokens, 6);
    let req = &server.requests()[0];
    assert!(req.body.get("response_format").is_none());
    let user = req.body["messages"][1]["content"].as_str().unwrap();
    assert!(user.contains("ROLLED BACK"), "{user}");
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

#[test]
fn a_failed_repair_request_keeps_the_first_exchange_and_its_tokens() {
    let server = ScriptedServer::start(vec![
        Scripted::openai("I would prune the MLPs.", 100, 10),
        Scripted::error(401, "key revoked"),
    ]);
    let e = agent(&server)
        .propose(&AgentContext::example())
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("no JSON object")
            && msg.contains("repair request failed")
            && msg.contains("401"),
        "{msg}"
    );
    let pe = e.downcast_ref::<ProposalError>().expect("a ProposalError");
    assert!(pe.repair_failed.as_deref().unwrap().contains("key revoked"));
    assert!(pe.prompt.contains("| layer | sparsity |"), "{}", pe.prompt);
    assert!(pe.prompt.contains(REPAIR_SEPARATOR));
    assert!(pe.raw.starts_with("I would prune the MLPs."), "{}", pe.raw);
    assert_eq!(
        (pe.usage.prompt_tokens, pe.usage.completion_tokens),
        (100, 10)
    );
    assert_eq!(server.requests().len(), 2);
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

fn anthropic_json(content: serde_json::Value, stop_reason: &str) -> Scripted {
    Scripted::json(
        200,
        serde_json::json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": content, "stop_reason": stop_reason,
            "usage": {"input_tokens": 1, "output_tokens": 1}
        }),
    )
}

/// Replies with no text to read say why, in one line, and get no pointless repair.
#[test]
fn refusals_tool_calls_and_error_bodies_are_named_without_a_repair() {
    use serde_json::json;
    let cases: Vec<(Backend, Scripted, &str)> = vec![
        (
            Backend::OpenAi,
            Scripted::json(
                200,
                json!({"choices": [{"message": {"role": "assistant", "content": null,
                    "tool_calls": [{"id": "c1", "type": "function",
                        "function": {"name": "get_weather", "arguments": "{}"}}]}}]}),
            ),
            "tool calls (get_weather)",
        ),
        (
            Backend::OpenAi,
            Scripted::json(
                200,
                json!({"choices": [{"message": {"role": "assistant", "content": null,
                    "refusal": "I cannot help.\nThis violates policy."}}]}),
            ),
            "refused: I cannot help.\\nThis violates policy.",
        ),
        (
            Backend::OpenAi,
            Scripted::json(200, json!({"error": {"message": "model is loading"}})),
            "(HTTP 200): model is loading",
        ),
        (
            Backend::Anthropic,
            anthropic_json(
                json!([{"type": "text", "text": "I cannot help with that.\nSorry."}]),
                "refusal",
            ),
            "refused: I cannot help with that.\\nSorry.",
        ),
        (
            Backend::Anthropic,
            anthropic_json(
                json!([{"type": "tool_use", "id": "t1", "name": "prune", "input": {}}]),
                "tool_use",
            ),
            "no text, only tool_use block(s)",
        ),
        (
            Backend::Anthropic,
            Scripted::json(
                200,
                json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
            ),
            "(HTTP 200): Overloaded",
        ),
    ];
    for (backend, reply, want) in cases {
        let server = ScriptedServer::start(vec![reply, Scripted::openai(&good(0.35), 1, 1)]);
        let e = agent_for(backend, &server)
            .propose(&AgentContext::example())
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains(want), "{msg}");
        assert!(
            !msg.contains('\n') && !msg.contains("no JSON object"),
            "{msg}"
        );
        assert_eq!(server.requests().len(), 1, "no repair: {msg}");
    }
}

/// Replies cut off at the token limit before any answer fail at once, naming the flag that
/// raises the limit (a repair round would be cut off again); the limit is sent.
#[test]
fn replies_cut_off_before_an_answer_name_the_token_flag() {
    use serde_json::json;
    let openai_cut = |content: serde_json::Value| {
        Scripted::json(
            200,
            json!({"choices": [{"finish_reason": "length", "message": {"role": "assistant",
                "content": content, "reasoning_content": "Let me think about the layers..."}}]}),
        )
    };
    let cases: Vec<(Backend, Scripted, &str)> = vec![
        (
            Backend::OpenAi,
            openai_cut(json!(null)),
            "before any answer, spent on reasoning",
        ),
        (
            Backend::OpenAi,
            openai_cut(json!("")),
            "before any answer, spent on reasoning",
        ),
        (
            Backend::Anthropic,
            anthropic_json(
                json!([{"type": "thinking", "thinking": "hmm"}]),
                "max_tokens",
            ),
            "cut off at max_tokens (777) before any answer, spent on thinking",
        ),
    ];
    for (backend, reply, want) in cases {
        let server = ScriptedServer::start(vec![reply, Scripted::openai(&good(0.35), 1, 1)]);
        let mut cfg = config(backend, &server.url());
        cfg.max_tokens = Some(777);
        let mut a = LlmAgent::new(LlmClient::new(cfg).unwrap(), Templates::builtin()).unwrap();
        let msg = format!("{:#}", a.propose(&AgentContext::example()).unwrap_err());
        assert!(
            msg.contains(want) && msg.contains("--agent-max-tokens"),
            "{msg}"
        );
        let reqs = server.requests();
        assert_eq!(reqs.len(), 1, "no repair: {msg}");
        assert_eq!(reqs[0].body["max_tokens"], 777);
    }
}

/// Tokens billed for a reply that gave nothing usable were dropped from the session's
/// totals (the README promises failures are recorded with their token counts); and a
/// proposal cut mid-JSON at the token limit read only "no JSON object".
#[test]
fn failed_replies_keep_their_tokens_and_a_cut_proposal_names_the_limit() {
    use arborist::agent::{billed_usage, Usage};
    use arborist::session::Event;
    use arborist::worker::{agent_event, AgentJob};
    use serde_json::json;
    let tokens = |u: Usage| (u.prompt_tokens, u.completion_tokens);
    let openai = |content: &str, finish: &str, p: u64, c: u64| {
        Scripted::json(
            200,
            json!({"choices": [{"finish_reason": finish, "message": {"role": "assistant",
                "content": content}}], "usage": {"prompt_tokens": p, "completion_tokens": c}}),
        )
    };
    let refusal = |p: u64, c: u64| {
        Scripted::json(
            200,
            json!({"choices": [{"finish_reason": "stop", "message": {"role": "assistant",
                "content": null, "refusal": "no"}}],
                "usage": {"prompt_tokens": p, "completion_tokens": c}}),
        )
    };
    let ctx = AgentContext::example();

    // Cut off before any answer: the failure event carries the call's tokens.
    let server = ScriptedServer::start(vec![openai("", "length", 100, 777)]);
    let e = agent(&server).propose(&ctx).unwrap_err();
    assert_eq!(tokens(billed_usage(&e)), (100, 777), "{e:#}");
    match arborist::worker::failed(0, &e) {
        Event::AgentFailed { usage, .. } => assert_eq!(tokens(usage), (100, 777)),
        ev => panic!("{ev:?}"),
    }

    // Cut mid-JSON twice: the problems name the limit, and both calls are counted.
    let cut = format!("Thinking first.\n{{\"layers\": [{{\"name\": \"{UP0}\", \"spars");
    let server = ScriptedServer::start(vec![
        openai(&cut, "length", 10, 20),
        openai(&cut, "length", 30, 40),
    ]);
    let e = agent(&server).propose(&ctx).unwrap_err();
    let d = e.downcast_ref::<ProposalError>().unwrap();
    assert_eq!(tokens(d.usage), (40, 60));
    assert!(
        format!("{e:#}")
            .contains("cut off at the token limit (the server's own): raise --agent-max-tokens"),
        "{e:#}"
    );
    // The repair request tells the model what it can do, not the user's flag.
    let asked = server.requests()[1].body["messages"].to_string();
    assert!(
        asked.contains(
            "cut off at the token limit (the server's own): answer with the JSON object first"
        ) && !asked.contains("--agent-max-tokens"),
        "{asked}"
    );

    // An invalid first answer whose repair is refused: both calls are counted.
    let server = ScriptedServer::start(vec![openai("no idea", "stop", 1, 2), refusal(5, 6)]);
    let e = agent(&server).propose(&ctx).unwrap_err();
    let d = e.downcast_ref::<ProposalError>().unwrap();
    assert!(
        d.repair_failed.as_deref().unwrap().contains("refused"),
        "{e:#}"
    );
    assert_eq!(tokens(d.usage), (6, 8));

    // A refused reflection is recorded with its tokens.
    let server = ScriptedServer::start(vec![refusal(7, 9)]);
    let mut a = agent(&server);
    let p = arborist::agent::parse::parse_proposal(&good(0.35)).unwrap();
    let job = AgentJob::Reflect(Box::new((ctx.clone(), p, ctx.history[1].clone())));
    match agent_event(&mut a, job) {
        Event::Reflected { reply, .. } => {
            assert!(reply.value.contains("refused"), "{}", reply.value);
            assert_eq!(tokens(reply.usage), (7, 9));
        }
        ev => panic!("{ev:?}"),
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

/// Content as a list of parts (Mistral's reasoning models): the text parts are the reply.
#[test]
fn openai_content_as_a_list_of_parts_is_read() {
    use serde_json::json;
    let parts = json!([{"type": "thinking", "thinking": [{"type": "text", "text": "draft {}"}]},
                       {"type": "text", "text": good(0.35)}]);
    let server = ScriptedServer::start(vec![Scripted::json(
        200,
        json!({"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": parts}}]}),
    )]);
    let r = agent(&server).propose(&AgentContext::example()).unwrap();
    assert_eq!(r.value.layers[0].sparsity, 0.35);
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
/// echoing the query (`run` refuses it before writing anything: tests/cli_errors.rs).
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

/// A long invalid first answer is echoed into the repair conversation cut at 16 KiB, on a
/// character boundary, with its full length named; the whole answer stays in `raw`.
#[test]
fn a_long_first_answer_is_cut_in_the_repair_turn() {
    // 3-byte characters, so 16 KiB falls inside one of them.
    let long = format!("I would prune {} the MLPs.", "é∑".repeat(4000));
    assert!(long.len() > 16 * 1024 + 100);
    let server = ScriptedServer::start(vec![
        Scripted::openai(&long, 1, 1),
        Scripted::openai(&good(0.35), 1, 1),
    ]);
    let r = agent(&server).propose(&AgentContext::example()).unwrap();
    assert!(r.raw.unwrap().contains(&long));
    let reqs = server.requests();
    let echoed = reqs[1].body["messages"][2]["content"].as_str().unwrap();
    let (head, tail) = echoed.split_once("\n…(reply cut here: ").expect(echoed);
    assert!(
        head.len() <= 16 * 1024 && head.len() > 16 * 1024 - 4,
        "{}",
        head.len()
    );
    assert!(long.starts_with(head));
    assert_eq!(tail, format!("{} bytes in all)", long.len()));
}

/// A reflection is carried into later prompts cut at 2000 characters (not bytes); the
/// whole reply stays in `raw`.
#[test]
fn a_long_reflection_is_cut_at_2000_characters() {
    let long: String = "ü".repeat(2500);
    let server = ScriptedServer::start(vec![Scripted::openai(&long, 1, 1)]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    let p = arborist::agent::parse::parse_proposal(&good(0.35)).unwrap();
    let r = a.reflect(&ctx, &p, &ctx.history[1]).unwrap();
    assert_eq!(r.value, format!("{}…", "ü".repeat(2000)));
    assert_eq!(r.raw.as_deref(), Some(long.as_str()));
    let short = ScriptedServer::start(vec![Scripted::openai(&"a".repeat(2000), 1, 1)]);
    let r = agent(&short).reflect(&ctx, &p, &ctx.history[1]).unwrap();
    assert_eq!(r.value, "a".repeat(2000), "exactly 2000 is kept whole");
    // A proposal's reasoning goes into later prompts as well, cut alike.
    let text =
        format!(r#"{{"layers": [{{"name": "{UP0}", "sparsity": 0.35}}], "reasoning": "{long}"}}"#);
    let server = ScriptedServer::start(vec![Scripted::openai(&text, 1, 1)]);
    let r = agent(&server).propose(&ctx).unwrap();
    assert_eq!(r.value.reasoning, format!("{}…", "ü".repeat(2000)));
    assert_eq!(r.raw.as_deref(), Some(text.as_str()));
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

/// A proposal request that fails outright keeps the prompt it sent (until 2026-12-03 only
/// a failure in the repair round did), and an empty reflection its billed tokens.
#[test]
fn failed_calls_keep_their_prompt_and_tokens() {
    let server = ScriptedServer::start(vec![Scripted::error(401, "no such key")]);
    let mut a = agent(&server);
    let ctx = AgentContext::example();
    let e = a.propose(&ctx).unwrap_err();
    let failed = arborist::worker::failed(3, &e);
    let arborist::session::Event::AgentFailed { prompt, error, .. } = failed else {
        panic!("{failed:?}")
    };
    assert!(error.contains("HTTP 401"), "{error}");
    let sent = server.requests()[0].body["messages"][1]["content"].clone();
    assert_eq!(prompt.as_deref(), sent.as_str());
    let server = ScriptedServer::start(vec![Scripted::openai("  \n", 111, 22)]);
    let p = arborist::agent::parse::parse_proposal(&good(0.35)).unwrap();
    let e = agent(&server)
        .reflect(&ctx, &p, &ctx.history[1])
        .unwrap_err();
    assert!(format!("{e:#}").contains("empty reflection"), "{e:#}");
    let billed = arborist::agent::billed_usage(&e);
    assert_eq!((billed.prompt_tokens, billed.completion_tokens), (111, 22));
}

/// An error body too big to read, and an empty success body, are said as what they are
/// (both read "(empty body)", the second with a colon and nothing after it, until
/// 2026-12-03).
#[test]
fn an_unread_or_empty_body_is_said_as_such() {
    let huge = || {
        let mut s = Scripted::error(500, "x");
        s.body = "x".repeat(5 << 20);
        s
    };
    let error_of = |scripts: Vec<Scripted>| {
        let server = ScriptedServer::start(scripts);
        let e = agent(&server).propose(&AgentContext::example());
        format!("{:#}", e.unwrap_err())
    };
    let e = error_of((0..4).map(|_| huge()).collect());
    assert!(
        e.contains("HTTP 500 Internal Server Error from")
            && e.ends_with("after 4 attempts: a body over 4 MiB, not read"),
        "{e}"
    );
    let mut empty = Scripted::openai("", 1, 1);
    empty.body = String::new();
    let e = error_of(vec![empty]);
    assert!(
        e.contains("an empty body, not JSON") && !e.contains(": \n"),
        "{e}"
    );
    // A server that streams though not asked to: said as a stream, not as bad JSON.
    let mut stream = Scripted::openai("", 1, 1);
    stream.body = "data: {\"choices\": []}\n\ndata: [DONE]\n\n".into();
    let e = error_of(vec![stream]);
    assert!(
        e.contains("a stream of server-sent events (text/event-stream), not one JSON body")
            && !e.contains("invalid JSON"),
        "{e}"
    );
}
