//! A failing, hanging or unrepairable agent: retried, skipped, or the session ends as
//! agent-failed and continues on resume.

use super::*;

#[test]
fn session_survives_429_500_and_a_broken_body() {
    let env = Env::new();
    let p1 = proposal(&[(down(3), 0.05)], "one");
    let p2 = proposal(&[(down(4), 0.05)], "two");
    let broken = Scripted {
        status: 200,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: "{\"choices\": [{\"message\": ".into(),
        drop_connection: false,
        hang: None,
        stall_body: None,
    };
    let server = ScriptedServer::start(vec![
        Scripted::error(429, "slow down").header("Retry-After", "0"),
        Scripted::openai(&p1, 10, 1),
        Scripted::openai("fine", 10, 1),
        Scripted::error(500, "oops").header("Retry-After", "0"),
        broken,
        Scripted::openai(&p2, 10, 1),
        Scripted::openai("fine again", 10, 1),
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "3");
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    assert_eq!(server.requests().len(), 7);
    // Headless, each retry is said on stderr as it happens (a Retry-After can be a minute).
    let retries: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("retrying in"))
        .collect();
    assert_eq!(retries.len(), 2, "{}", r.stderr);
    assert!(
        retries[0].starts_with("warning: openai: HTTP 429"),
        "{}",
        retries[0]
    );
    assert!(
        retries[1].starts_with("warning: openai: HTTP 500"),
        "{}",
        retries[1]
    );
    let (_, entries) = session_docs(&s);
    assert_layers_exist(&entries, &[down(3), down(4)]);
    let failed = events(&entries, "agent_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["iteration"], 2);
    let err = failed[0]["error"].as_str().unwrap();
    assert!(err.contains("unexpected response"), "{err}");
    let evs = events(&entries, "evaluated");
    assert_eq!(evs.len(), 2);
    assert!(evs[1]["applied"].get(down(4)).is_some(), "{}", evs[1]);
    // The failure is on disk; headless, that iteration is recorded as skipped and the
    // session carries on with the next one.
    let kinds: Vec<&str> = entries.iter().map(kind).collect();
    let at = kinds.iter().position(|k| *k == "agent_failed").unwrap();
    assert_eq!(kinds[at + 1], "decided");
    assert_eq!(entries[at + 1]["event"]["decision"]["action"], "skip");
    assert_eq!(kinds[at + 2], "proposed");
    assert_eq!(entries[at + 2]["event"]["iteration"], 3);
    assert_no_key(&env, &r);
}

#[test]
fn a_server_that_keeps_failing_ends_the_session_as_agent_failed() {
    // Retry-After: 0 keeps the 4-attempt retry policy fast. The server echoes the key.
    // Each failure skips its iteration; three in a row end the session.
    let env = Env::new();
    let echo = format!("upstream exploded while checking key {KEY}");
    let server = ScriptedServer::start(vec![
        Scripted::error(500, &echo).header("Retry-After", "0");
        12
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "3");
    let sum = agent_failed_json(&r);
    assert_eq!(sum["finished"], "agent_failed", "{sum}");
    assert_eq!(
        server.requests().len(),
        12,
        "three proposals of four attempts each"
    );
    let (_, entries) = session_docs(&s);
    let failed = events(&entries, "agent_failed");
    assert_eq!(failed.len(), 3);
    for (i, f) in failed.iter().enumerate() {
        assert_eq!(f["iteration"], i + 1);
        let e = f["error"].as_str().unwrap();
        assert!(e.contains("500") && e.contains("after 4 attempts"), "{e}");
        assert!(e.contains("upstream exploded"), "{e}");
    }
    assert!(events(&entries, "evaluated").is_empty());
    let fin = events(&entries, "finished");
    assert_eq!(fin.len(), 1);
    assert_eq!(fin[0]["reason"], "agent_failed");
    assert_eq!(fin[0]["global_sparsity"].as_f64(), Some(0.0));
    assert_no_key(&env, &r);
}

#[test]
fn proposals_still_invalid_after_the_repair_end_the_session_cleanly() {
    let env = Env::new();
    let bad = |i: usize| proposal(&[(down(90 + i), 0.05)], "bad");
    let server = ScriptedServer::start((0..6).map(|i| Scripted::openai(&bad(i), 7, 3)).collect());
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "3");
    let sum = agent_failed_json(&r);
    assert_eq!(sum["finished"], "agent_failed", "{sum}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 6, "each proposal gets exactly one repair");
    for k in [1, 3, 5] {
        let roles: Vec<&str> = reqs[k].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(
            roles,
            ["system", "user", "assistant", "user"],
            "request {k}"
        );
    }
    let (_, entries) = session_docs(&s);
    let failed = events(&entries, "agent_failed");
    assert_eq!(failed.len(), 3);
    for (k, f) in failed.iter().enumerate() {
        let e = f["error"].as_str().unwrap();
        let name = down(90 + 2 * k + 1);
        assert!(e.contains(&format!("{name}: unknown layer name")), "{e}");
    }
}

// An outage is not a verdict: --resume of a session the agent's failures ended asks again,
// here of a server at a new address (--base-url may change on resume), and goes on.
#[test]
fn a_session_ended_by_agent_failures_continues_on_resume() {
    let env = Env::new();
    let bad = |i: usize| proposal(&[(down(90 + i), 0.05)], "bad");
    let down_server =
        ScriptedServer::start((0..6).map(|i| Scripted::openai(&bad(i), 7, 3)).collect());
    let s = env.path("s.yaml");
    let r = env.session_with(&down_server, &s, "3", &["--agent-max-tokens", "300"]);
    let sum = agent_failed_json(&r);
    assert_eq!(sum["finished"], "agent_failed", "{sum}");
    assert!(down_server
        .requests()
        .iter()
        .all(|r| r.body["max_tokens"] == 300));
    let (header, _) = session_docs(&s);
    assert_eq!(header["options"]["agent"]["max_tokens"], 300, "{header}");
    let good = ScriptedServer::start(vec![
        Scripted::openai(&proposal(&[(down(0), 0.05)], "small step"), 7, 3),
        Scripted::openai("It held.", 5, 2),
    ]);
    let r = env.resume(&good, &s, &["--agent-max-tokens", "500"]);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    assert_eq!(good.requests().len(), 2, "a proposal and a reflection");
    // Three failures, but the third iteration was asked again, not skipped (the warning
    // said "3 time(s) ... those iterations were skipped").
    assert!(
        r.stderr.contains(
            "no valid proposal 3 time(s) in this session, and 2 iteration(s) were skipped for it"
        ),
        "{}",
        r.stderr
    );
    // A resume may raise the reply limit (replies cut off), as it may move the server.
    assert!(good.requests().iter().all(|r| r.body["max_tokens"] == 500));
    let (_, entries) = session_docs(&s);
    let kinds: Vec<&str> = entries.iter().map(kind).collect();
    let at = kinds
        .iter()
        .position(|k| *k == "continued")
        .expect("a continued event");
    assert_eq!(kinds[at - 1], "finished");
    assert_eq!(entries[at]["event"]["iteration"], 3);
    assert_eq!(kinds[at + 1], "proposed");
    assert_eq!(events(&entries, "evaluated").len(), 1);
    // Other options stay the header's.
    let r = env.resume(&good, &s, &["--seqlen", "32"]);
    assert!(
        r.stderr
            .contains("--seqlen: a resumed session keeps the options"),
        "{}",
        r.stderr
    );
    assert_no_key(&env, &r);
}

/// A server that hangs on the first proposal (8 s, past a 1 s --agent-timeout), then
/// proposes `down(2)` at 0.05 and reflects.
fn hang_then_answer() -> ScriptedServer {
    let p = proposal(&[(down(2), 0.05)], "after the hang");
    ScriptedServer::start(vec![
        Scripted::hang(std::time::Duration::from_secs(8)),
        Scripted::openai(&p, 5, 2),
        Scripted::openai("fine", 5, 2),
    ])
}

#[test]
fn a_server_that_hangs_past_the_timeout_costs_one_skipped_iteration() {
    let env = Env::new();
    let server = hang_then_answer();
    let s = env.path("s.yaml");
    let r = env.session_with(&server, &s, "2", &["--agent-timeout", "1"]);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    // A finished run still says the agent failed on the way.
    assert_eq!(sum["agent_failures"], 1, "{sum}");
    assert!(
        r.stderr
            .contains("warning: the agent gave no valid proposal 1 time(s) in this session, and 1 iteration(s) were skipped"),
        "{}",
        r.stderr
    );
    let (_, entries) = session_docs(&s);
    let failed = events(&entries, "agent_failed");
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["iteration"], 1);
    let e = failed[0]["error"].as_str().unwrap().to_lowercase();
    assert!(e.contains("timed out") || e.contains("timeout"), "{e}");
    let evs = events(&entries, "evaluated");
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["iteration"], 2);
    assert!(evs[0]["applied"].get(down(2)).is_some(), "{}", evs[0]);
    assert_no_key(&env, &r);
}

// Two iterations are too few for the three failures in a row that end a session, but a run
// whose every iteration was skipped for the agent pruned nothing: not a success.
#[test]
fn a_short_run_the_agent_never_answered_is_an_error() {
    let env = Env::new();
    let bad = |i: usize| proposal(&[(down(90 + i), 0.05)], "bad");
    let server = ScriptedServer::start((0..4).map(|i| Scripted::openai(&bad(i), 7, 3)).collect());
    let s = env.path("s.yaml");
    let r = env.session_with(&server, &s, "2", &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let sum: Value = serde_json::from_str(r.stdout.trim()).expect("the summary still comes");
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    let last = r.stderr.trim_end().lines().last().unwrap();
    assert!(
        last.starts_with("error: the agent gave no valid proposal in any of this run's 2 iteration(s), so nothing was pruned"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr
            .contains("warning: the agent gave no valid proposal"),
        "{}",
        r.stderr
    );
    let (_, entries) = session_docs(&s);
    assert_eq!(events(&entries, "agent_failed").len(), 2);
    assert!(events(&entries, "evaluated").is_empty());
}

// With --decisions, an iteration the agent leaves without a proposal is skipped and its
// scripted decisions with it: the run went on to stop at "decision for iteration 1 was
// never used", and a resume with the same file did the same.
#[test]
fn a_skipped_iteration_drops_its_scripted_decisions() {
    let env = Env::new();
    let server = hang_then_answer();
    let dec = env.path("d.yaml");
    std::fs::write(
        &dec,
        "- {iteration: 1, action: approve}\n- {iteration: 2, action: approve}\n",
    )
    .unwrap();
    let extra = ["--decisions", &p(&dec), "--agent-timeout", "1"];
    let r = env.session_with(&server, &env.path("s.yaml"), "2", &extra);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    // Both iterations ran; the skipped one reached no guard (`iterations` said 1).
    assert_eq!(
        (&sum["iterations"], &sum["steps_evaluated"]),
        (&2.into(), &1.into()),
        "{sum}"
    );
    assert!(
        r.stderr.contains("1 decision(s) for iteration 1 not used"),
        "{}",
        r.stderr
    );
    let (_, entries) = session_docs(&env.path("s.yaml"));
    let decided: Vec<(u64, String)> = events(&entries, "decided")
        .iter()
        .map(|d| {
            (
                d["iteration"].as_u64().unwrap(),
                d["by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [(1, "auto".to_string()), (2, "script".to_string())]
    );
}

// A scripted stop is about the session, not the proposal: where the agent gave none, the
// other decisions of that iteration are dropped and the stop still stops the run (it was
// dropped with them, and the run went on; code review, 2026-12-05).
#[test]
fn a_scripted_stop_still_stops_where_the_agent_gave_no_proposal() {
    let env = Env::new();
    let server = hang_then_answer();
    let dec = env.path("d.yaml");
    std::fs::write(
        &dec,
        "- {iteration: 1, action: reject, feedback: smaller}\n- {iteration: 1, action: stop}\n",
    )
    .unwrap();
    let extra = ["--decisions", &p(&dec), "--agent-timeout", "1"];
    let r = env.session_with(&server, &env.path("s.yaml"), "2", &extra);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "user_stop", "{sum}");
    assert_eq!(sum["steps_evaluated"], 0, "{sum}");
    assert!(
        r.stderr.contains("1 decision(s) for iteration 1 not used: the agent gave no valid proposal, its stop is kept"),
        "{}",
        r.stderr
    );
    let (_, entries) = session_docs(&env.path("s.yaml"));
    let stops = events(&entries, "stop_requested");
    assert_eq!(stops.len(), 1, "{}", r.stderr);
    assert_eq!(stops[0]["by"], "script");
    assert!(events(&entries, "decided").is_empty());
}
