//! Reading the agent's replies: bare, fenced or in prose, the one repair, reflections,
//! refusals and cut replies, and what a failed call keeps.

use super::*;

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
