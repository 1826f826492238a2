//! Full headless sessions driven by an LLM agent: `--agent openai` against the scripted
//! OpenAI-compatible server on 127.0.0.1. What the server received is compared with what
//! the session file recorded, and the API key must never reach the file or the terminal.

mod common;
#[path = "common/scripted_server.rs"]
mod scripted_server;

use common::*;
use scripted_server::{Scripted, ScriptedServer};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const KEY: &str = "sk-test-SECRET-123";
const SEP: &str = "\n\n----- repair -----\n\n";

/// Layer names of the bundled model (checked against its baseline event in every test).
fn down(b: usize) -> String {
    format!("model.layers.{b}.mlp.down_proj")
}
fn q(b: usize) -> String {
    format!("model.layers.{b}.self_attn.q_proj")
}

fn proposal(layers: &[(String, f64)], reasoning: &str) -> String {
    let l: Vec<Value> = layers
        .iter()
        .map(|(n, s)| serde_json::json!({"name": n, "sparsity": s}))
        .collect();
    serde_json::json!({"layers": l, "reasoning": reasoning}).to_string()
}

struct Env {
    dir: tempfile::TempDir,
    cache: String,
}

impl Env {
    fn new() -> Env {
        let dir = tmp();
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::create_dir_all(dir.path().join("work")).unwrap();
        let cache = p(&dir.path().join("cache"));
        Env { dir, cache }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join("work").join(name)
    }

    fn run(&self, args: &[&str], key: &str) -> Ran {
        self.run_env(args, key, &[])
    }

    fn run_env(&self, args: &[&str], key: &str, env: &[(&str, &str)]) -> Ran {
        let mut all = vec![
            ("ARBORIST_CACHE", self.cache.as_str()),
            ("OPENAI_API_KEY", key),
            ("ANTHROPIC_API_KEY", ""),
        ];
        all.extend(env);
        arborist_timed(args, &all, &self.dir.path().join("work"), LIMIT)
    }

    /// A headless openai session against `server`, auto-approved.
    fn session(&self, server: &ScriptedServer, s: &Path, iters: &str) -> Ran {
        self.session_with(server, s, iters, &[])
    }

    /// `--resume` of `s`, headless and auto-approved, with the agent at `server`.
    fn resume(&self, server: &ScriptedServer, s: &Path, extra: &[&str]) -> Ran {
        let (url, sp) = (server.url(), p(s));
        let mut a = vec!["run", "--headless", "--auto-approve", "--session", &sp];
        a.extend(["--resume", "--base-url", &url, "--json"]);
        a.extend(extra);
        self.run(&a, KEY)
    }

    fn session_with(&self, server: &ScriptedServer, s: &Path, iters: &str, extra: &[&str]) -> Ran {
        self.session_logged(server, s, iters, extra, &[])
    }

    /// `session_with`, with more environment (a log level).
    fn session_logged(
        &self,
        server: &ScriptedServer,
        s: &Path,
        iters: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Ran {
        let (url, sp) = (server.url(), p(s));
        let mut a = vec![
            "run",
            "--headless",
            "--auto-approve",
            "--session",
            &sp,
            "--agent",
            "openai",
            "--agent-model",
            "test",
            "--base-url",
            &url,
            "--max-iters",
            iters,
            "--json",
        ];
        a.extend(SMALL);
        a.extend(extra);
        self.run_env(&a, KEY, env)
    }
}

fn kind(e: &Value) -> &str {
    e["event"]["event"].as_str().unwrap()
}

fn events<'a>(entries: &'a [Value], k: &str) -> Vec<&'a Value> {
    entries
        .iter()
        .filter(|e| kind(e) == k)
        .map(|e| &e["event"])
        .collect()
}

/// A run the agent's failures ended: the summary still comes on stdout, then one error line
/// saying how to continue, and exit status 1.
fn agent_failed_json(r: &Ran) -> Value {
    assert!(
        !r.timed_out && !r.stderr.contains("panicked"),
        "{}",
        r.stderr
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let errs = r.error_lines();
    assert_eq!(errs.len(), 1, "{}", r.stderr);
    assert!(
        errs[0].contains("three times in a row") && errs[0].contains("--resume"),
        "{}",
        errs[0]
    );
    json_exact(r.stdout.lines().last().unwrap_or(""))
}

fn usage(v: &Value) -> (u64, u64) {
    (
        v["prompt_tokens"].as_u64().unwrap(),
        v["completion_tokens"].as_u64().unwrap(),
    )
}

fn user_message(body: &Value) -> &str {
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[0]["role"], "system");
    msgs[1]["content"].as_str().unwrap()
}

/// The key appears nowhere: session file, stdout, stderr, any file left in the temp dir.
fn assert_no_key(env: &Env, r: &Ran) {
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(!text.contains(KEY), "{what} shows the key: {text}");
        assert!(
            !text.contains("SECRET"),
            "{what} shows part of the key: {text}"
        );
    }
    let mut stack = vec![env.dir.path().join("work")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap().path();
            if e.is_dir() {
                stack.push(e);
            } else {
                let bytes = std::fs::read(&e).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                assert!(!text.contains(KEY), "{} holds the key", e.display());
                assert!(
                    !text.contains("SECRET"),
                    "{} holds part of the key",
                    e.display()
                );
            }
        }
    }
}

fn assert_layers_exist(entries: &[Value], names: &[String]) {
    let known: BTreeSet<&str> = events(entries, "baseline")[0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for n in names {
        assert!(
            known.contains(n.as_str()),
            "{n} is not a layer of the model"
        );
    }
}

#[test]
fn openai_session_records_prompts_replies_tokens_and_never_the_key() {
    let env = Env::new();
    let p1 = proposal(&[(down(0), 0.05), (q(1), 0.06)], "R-ONE: lowest z first");
    let fenced1 = format!("Here you go:\n```json\n{p1}\n```\n");
    let r1 = "REFLECT-ONE: the down projections took it well.";
    let bad2 = proposal(&[(down(99), 0.05)], "R-BAD");
    let p2 = proposal(&[(down(2), 0.05)], "R-TWO: fixed the name");
    let r2 = "REFLECT-TWO: still cheap.";
    let server = ScriptedServer::start(vec![
        Scripted::openai(&fenced1, 1000, 100),
        Scripted::openai(r1, 500, 50),
        Scripted::openai(&bad2, 300, 30),
        Scripted::openai(&p2, 400, 40),
        Scripted::openai(r2, 200, 20),
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "2");
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    assert_eq!(
        usage(&sum["agent_tokens"]),
        (1000 + 500 + 300 + 400 + 200, 100 + 50 + 30 + 40 + 20),
        "{sum}"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 5, "one repair, nothing else");
    assert_eq!(server.remaining(), 0);
    // The repair is said on stderr with its iteration and first problem.
    let said = format!(
        "iter 2: proposal invalid (1 problem(s), the first: {}: unknown layer name",
        down(99)
    );
    assert!(r.stderr.contains(&said), "{said}: {}", r.stderr);
    let bearer = format!("Bearer {KEY}");
    for (i, q) in reqs.iter().enumerate() {
        assert_eq!(q.path, "/v1/chat/completions");
        assert_eq!(
            q.header("authorization"),
            Some(bearer.as_str()),
            "request {i}"
        );
        assert_eq!(q.body["model"], "test");
        // Proposals ask for the JSON schema, reflections do not.
        let wants_schema = matches!(i, 0 | 2 | 3);
        assert_eq!(
            q.body.get("response_format").is_some(),
            wants_schema,
            "request {i}"
        );
    }

    let (h, entries) = session_docs(&s);
    assert_layers_exist(&entries, &[down(0), q(1), down(2)]);
    assert_eq!(h["options"]["agent"]["backend"], "openai");
    assert_eq!(h["options"]["agent"]["model"], "test");
    assert_eq!(h["options"]["agent"]["base_url"], server.url().as_str());
    let props = events(&entries, "proposed");
    assert_eq!(props.len(), 2);
    // Iteration 1: the prompt sent is the one recorded, with the whole profile table.
    let sent = user_message(&reqs[0].body);
    let rec = &props[0]["reply"];
    assert_eq!(props[0]["agent"], "openai:test");
    assert_eq!(rec["prompt"].as_str().unwrap(), sent);
    assert!(sent.contains("| layer | sparsity |"), "{sent}");
    let layers = events(&entries, "baseline")[0]["layers"]
        .as_array()
        .unwrap();
    for l in layers {
        let row = format!("| {} |", l["name"].as_str().unwrap());
        assert!(
            sent.contains(&row),
            "profile row {row} missing from the prompt"
        );
    }
    assert_eq!(rec["raw"].as_str().unwrap(), fenced1);
    assert_eq!(usage(&rec["usage"]), (1000, 100));
    assert_eq!(rec["value"]["reasoning"], "R-ONE: lowest z first");
    let applied: BTreeSet<String> = events(&entries, "evaluated")[0]["applied"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(applied, [down(0), q(1)].into_iter().collect());
    // Reflection 1: prompt and reply recorded; the next step prompt carries it.
    let refl = events(&entries, "reflected");
    assert_eq!(refl[0]["reply"]["value"], r1);
    assert_eq!(
        refl[0]["reply"]["prompt"].as_str().unwrap(),
        user_message(&reqs[1].body)
    );
    assert_eq!(usage(&refl[0]["reply"]["usage"]), (500, 50));
    assert!(user_message(&reqs[2].body).contains(r1));
    // Iteration 2: one repair round, both exchanges on disk.
    let rec = &props[1]["reply"];
    let repair_msgs = reqs[3].body["messages"].as_array().unwrap();
    let roles: Vec<&str> = repair_msgs
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_eq!(repair_msgs[2]["content"], bad2.as_str());
    let repair = repair_msgs[3]["content"].as_str().unwrap();
    assert!(
        repair.contains(&format!("{}: unknown layer name", down(99))),
        "{repair}"
    );
    assert_eq!(
        rec["prompt"].as_str().unwrap(),
        format!("{}{SEP}{repair}", user_message(&reqs[2].body))
    );
    assert_eq!(rec["raw"].as_str().unwrap(), format!("{bad2}{SEP}{p2}"));
    assert_eq!(usage(&rec["usage"]), (700, 70));
    assert_eq!(rec["value"]["layers"][0]["name"], down(2).as_str());
    assert_eq!(refl[1]["reply"]["value"], r2);
    assert_no_key(&env, &r);

    // Replay needs no agent: no server, no key.
    drop(server);
    let v = json_exact(
        env.run(&["replay", &p(&s), "--verify", "--json"], "")
            .stdout
            .trim(),
    );
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["bit_exact"], true, "{v}");
}

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

#[test]
fn replies_and_tokens_of_an_unrepairable_proposal_are_recorded() {
    let env = Env::new();
    let bad = |i: usize| proposal(&[(down(90 + i), 0.05)], &format!("BAD-REPLY-{i}"));
    let server = ScriptedServer::start((0..6).map(|i| Scripted::openai(&bad(i), 7, 3)).collect());
    let s = env.path("s.yaml");
    let sum = agent_failed_json(&env.session(&server, &s, "3"));
    assert_eq!(usage(&sum["agent_tokens"]), (42, 18), "{sum}");
    let text = std::fs::read_to_string(&s).unwrap();
    for i in 0..6 {
        assert!(
            text.contains(&format!("BAD-REPLY-{i}")),
            "reply {i} not recorded"
        );
    }
}

#[test]
fn a_key_echoed_in_a_reply_never_reaches_the_session_file() {
    let env = Env::new();
    let p1 = proposal(&[(down(0), 0.05)], "ok");
    let server = ScriptedServer::start(vec![
        Scripted::openai(&p1, 1, 1),
        Scripted::openai(&format!("Your header said Bearer {KEY}."), 1, 1),
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "1");
    ok_json(&r);
    assert_no_key(&env, &r);
    // The echo was asked for and recorded, with the key's place marked.
    assert_eq!(server.remaining(), 0);
    let (_, entries) = session_docs(&s);
    let reflected = events(&entries, "reflected");
    assert_eq!(reflected.len(), 1, "{entries:?}");
    let text = reflected[0]["reply"]["value"].as_str().unwrap();
    assert_eq!(text, "Your header said Bearer <redacted>.");
    // At the debug log level too: headless prints the log on stderr (the TUI's log file
    // takes the same events), and no line of it, the HTTP client's included, holds the key.
    let server = ScriptedServer::start(vec![
        Scripted::openai(&p1, 1, 1),
        Scripted::openai(&format!("Your header said Bearer {KEY}."), 1, 1),
    ]);
    let s = env.path("s2.yaml");
    let r = env.session_logged(&server, &s, "1", &[], &[("ARBORIST_LOG_LEVEL", "debug")]);
    ok_json(&r);
    // Debug lines are on, the HTTP client's among them.
    assert!(
        r.stderr.contains("note: connecting to 127.0.0.1"),
        "{}",
        r.stderr
    );
    assert_no_key(&env, &r);
    assert_eq!(server.remaining(), 0);
}

// A reply naming a layer after part of the key: the stderr lines, the recorded errors, the
// repair prompts and (since the reply is scrubbed as it comes) the raw replies show no part
// of the key.
#[test]
fn problems_quoting_part_of_the_key_are_scrubbed_like_errors() {
    let env = Env::new();
    let fragment = &KEY["sk-test-".len()..];
    let bad = proposal(&[(format!("model.{fragment}"), 0.05)], "bad");
    let server = ScriptedServer::start((0..6).map(|_| Scripted::openai(&bad, 7, 3)).collect());
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "3");
    agent_failed_json(&r);
    assert!(!r.stderr.contains("SECRET"), "{}", r.stderr);
    assert!(
        r.stderr.contains("<redacted>: unknown layer name"),
        "{}",
        r.stderr
    );
    let (_, entries) = session_docs(&s);
    let failed = events(&entries, "agent_failed");
    assert_eq!(failed.len(), 3);
    for f in failed {
        let (e, prompt) = (f["error"].as_str().unwrap(), f["prompt"].as_str().unwrap());
        assert!(e.contains("<redacted>: unknown layer name"), "{e}");
        assert!(!e.contains("SECRET") && !prompt.contains("SECRET"), "{f}");
        let raw = f["raw"].as_str().unwrap();
        assert!(
            !raw.contains(fragment) && raw.contains("model.<redacted>"),
            "{f}"
        );
    }
    for (k, req) in server
        .requests()
        .iter()
        .enumerate()
        .filter(|(k, _)| k % 2 == 1)
    {
        let repair = req.body["messages"][3]["content"].as_str().unwrap();
        assert!(!repair.contains("SECRET"), "request {k}: {repair}");
    }
}

/// The first run of 8 of `KEY`'s characters found in `text`, if any.
fn key_run(text: &str) -> Option<&'static str> {
    (0..=KEY.len() - 8)
        .map(|i| &KEY[i..i + 8])
        .find(|w| text.contains(w))
}

// The audit's case: a successful reply echoing 15 characters of the key in a layer name
// went verbatim into the session file's `raw`. Scrubbed as it comes, it names
// `model.layers.0.mlp.<redacted>`, refused as an unknown layer and repaired; a reflection
// echoing it is scrubbed too. The run goes on, and replay verifies what was recorded.
#[test]
fn a_reply_echoing_part_of_the_key_is_recorded_without_it() {
    let env = Env::new();
    let fragment = &KEY[3..];
    let echo = proposal(
        &[(format!("model.layers.0.mlp.{fragment}"), 0.05)],
        "named after the key",
    );
    let server = ScriptedServer::start(vec![
        Scripted::openai(&echo, 5, 2),
        Scripted::openai(&proposal(&[(down(0), 0.05)], "fixed"), 5, 2),
        Scripted::openai(&format!("Noted, {fragment}."), 5, 2),
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "1");
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    let reqs = server.requests();
    assert_eq!(reqs.len(), 3, "a proposal, its repair, a reflection");
    let repair = reqs[1].body["messages"][3]["content"].as_str().unwrap();
    let bad = "model.layers.0.mlp.<redacted>: unknown layer name";
    assert!(repair.contains(bad), "{repair}");
    let (_, entries) = session_docs(&s);
    let props = events(&entries, "proposed");
    assert_eq!(props.len(), 1);
    let raw = props[0]["reply"]["raw"].as_str().unwrap();
    assert!(
        raw.starts_with(&echo.replace(fragment, "<redacted>")),
        "{raw}"
    );
    assert!(events(&entries, "evaluated")[0]["applied"]
        .get(down(0))
        .is_some());
    let refl = events(&entries, "reflected");
    assert_eq!(refl[0]["reply"]["value"], "Noted, <redacted>.");
    for (what, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert_eq!(key_run(text), None, "{what}: {text}");
    }
    let text = std::fs::read_to_string(&s).unwrap();
    assert_eq!(key_run(&text), None, "{text}");
    assert_no_key(&env, &r);
    let v = json_exact(
        env.run(&["replay", &p(&s), "--verify", "--json"], "")
            .stdout
            .trim(),
    );
    assert_eq!(
        (&v["ok"], &v["bit_exact"]),
        (&true.into(), &true.into()),
        "{v}"
    );
}

// An empty template in --prompts sent every request with a blank prompt, and a directory
// named like one was passed over for the built-in: both refused before the model loads or
// any request is made, in one line naming the file.
#[test]
fn an_empty_or_directory_template_in_prompts_is_refused_at_start() {
    let env = Env::new();
    let server = ScriptedServer::start(vec![]);
    let pr = env.path("pr");
    std::fs::create_dir(&pr).unwrap();
    // Text to write, or None for a directory.
    for (name, text, want) in [
        (
            "step.j2",
            Some(""),
            "step.j2 is empty (remove it to use the built-in)",
        ),
        (
            "reflection.j2",
            Some(" \n\t\n"),
            "reflection.j2 holds only whitespace (remove it to use the built-in)",
        ),
        (
            "step.j2",
            None,
            "step.j2 is a directory, not a template file",
        ),
    ] {
        let f = pr.join(name);
        match text {
            Some(t) => std::fs::write(&f, t).unwrap(),
            None => std::fs::create_dir(&f).unwrap(),
        }
        let s = env.path("s.yaml");
        let r = env.session_with(&server, &s, "1", &["--prompts", "pr"]);
        assert!(
            !r.timed_out && !r.stderr.contains("panicked"),
            "{}",
            r.stderr
        );
        assert_ne!(r.code, Some(0), "{}", r.stderr);
        assert_eq!(
            r.error_lines(),
            [format!("error: --prompts pr: {want}").as_str()],
            "{}",
            r.stderr
        );
        assert!(!s.exists(), "a session file was left");
        if f.is_dir() {
            std::fs::remove_dir(&f).unwrap();
        } else {
            std::fs::remove_file(&f).unwrap();
        }
    }
    assert!(server.requests().is_empty(), "nothing may be asked");
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
    let (url, sp, dp) = (server.url(), p(&env.path("s.yaml")), p(&dec));
    let mut a = vec![
        "run",
        "--headless",
        "--decisions",
        &dp,
        "--session",
        &sp,
        "--agent",
        "openai",
        "--agent-model",
        "test",
        "--base-url",
        &url,
        "--max-iters",
        "2",
        "--json",
        "--agent-timeout",
        "1",
    ];
    a.extend(SMALL);
    let r = env.run(&a, KEY);
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

// The header records the prompt templates' hashes; a resume with templates edited since
// says so (until 2026-12-03 the edited text was used without a word, and the file then
// held prompts of two versions under the first one's hashes).
#[test]
fn a_resume_with_edited_prompt_templates_says_so() {
    let env = Env::new();
    let pr = env.path("pr");
    std::fs::create_dir(&pr).unwrap();
    let builtin = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/step.j2"));
    std::fs::write(pr.join("step.j2"), builtin.unwrap()).unwrap();
    let bad = |i: usize| proposal(&[(down(90 + i), 0.05)], "bad");
    let down_server =
        ScriptedServer::start((0..6).map(|i| Scripted::openai(&bad(i), 7, 3)).collect());
    let s = env.path("s.yaml");
    let r = env.session_with(&down_server, &s, "3", &["--prompts", "pr"]);
    assert_eq!(agent_failed_json(&r)["finished"], "agent_failed");
    let good = || {
        ScriptedServer::start(vec![
            Scripted::openai(&proposal(&[(down(0), 0.05)], "small step"), 7, 3),
            Scripted::openai("It held.", 5, 2),
        ])
    };
    let resume_with = |server: &ScriptedServer, extra: &[&str]| env.resume(server, &s, extra);
    let resume = |server: &ScriptedServer| resume_with(server, &[]);
    let said = "prompt template(s) step.j2 (in pr) differ from those the session was recorded with";
    // Unchanged templates raise nothing.
    let _ = std::fs::copy(&s, env.path("before.yaml"));
    let r = resume(&good());
    ok_json(&r);
    assert!(!r.stderr.contains("prompt template"), "{}", r.stderr);
    std::fs::copy(env.path("before.yaml"), &s).unwrap();
    let step = pr.join("step.j2");
    let edited = std::fs::read_to_string(&step).unwrap() + "\nBe brief.\n";
    std::fs::write(&step, edited).unwrap();
    let server = good();
    let r = resume(&server);
    ok_json(&r);
    assert!(r.stderr.contains(said), "{}", r.stderr);
    let prompt = server.requests()[0].body["messages"][1]["content"].clone();
    assert!(prompt.as_str().unwrap().ends_with("Be brief."), "{prompt}");
    // Moved: named, and found with --prompts on the resume (refused until 2026-12-03).
    std::fs::copy(env.path("before.yaml"), &s).unwrap();
    std::fs::rename(&pr, env.path("pr2")).unwrap();
    let r = resume(&good());
    assert_eq!(
        r.error_lines(),
        [format!(
            "error: {}: its prompt templates' directory pr (recorded in its header) is not there; pass --prompts DIR where it is now",
            p(&s)
        )
        .as_str()],
        "{}",
        r.stderr
    );
    let r = resume_with(&good(), &["--prompts", "pr2"]);
    ok_json(&r);
    assert!(
        r.stderr.contains(&said.replace("in pr)", "in pr2)")),
        "{}",
        r.stderr
    );
}

/// A server that counts far fewer prompt tokens than the prompt's characters allow (Ollama
/// cuts a prompt past num_ctx without an error) is warned about once in the run, and
/// `replay --headless` names each such exchange.
#[test]
fn a_prompt_the_server_did_not_read_whole_is_warned_about() {
    let env = Env::new();
    let server = ScriptedServer::start(vec![
        Scripted::openai(&proposal(&[(down(3), 0.05)], "one"), 5000, 9),
        Scripted::openai("fine", 5000, 3),
        Scripted::openai(&proposal(&[(down(4), 0.05)], "two"), 1024, 9),
        Scripted::openai("fine again", 5000, 3),
        Scripted::openai(&proposal(&[(down(5), 0.05)], "three"), 1024, 9),
        Scripted::openai("fine once more", 5000, 3),
    ]);
    let s = env.path("s.yaml");
    let r = env.session(&server, &s, "3");
    assert_eq!(ok_json(&r)["finished"], "max_iterations");
    let (_, entries) = session_docs(&s);
    let proposed = events(&entries, "proposed");
    let chars = proposed[1]["reply"]["prompt"]
        .as_str()
        .unwrap()
        .chars()
        .count();
    // The step prompt of the bundled model is long enough to be judged.
    assert!(chars > 6 * 1024, "{chars}");
    let warned: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("prompt tokens for"))
        .collect();
    assert_eq!(warned.len(), 1, "{}", r.stderr);
    let per_token = chars as f64 / 1024.0;
    let want = format!(
        "warning: iter 2, the agent's proposal: the server counted 1024 prompt tokens for {chars} characters of prompt ({per_token:.1} characters a token"
    );
    assert!(warned[0].starts_with(&want), "{}", warned[0]);
    assert!(
        warned[0].ends_with("(said once; `replay --headless` names each)"),
        "{}",
        warned[0]
    );
    let out = env.run(&["replay", &p(&s), "--headless"], "");
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let under: Vec<(usize, &str)> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("      warning: "))
        .map(|(i, l)| (i, *l))
        .collect();
    assert_eq!(under.len(), 2, "{}", out.stdout);
    for ((i, w), it) in under.iter().zip([2, 3]) {
        assert!(
            w.starts_with(&format!(
                "      warning: iter {it}, the agent's proposal: the server counted 1024"
            )),
            "{w}"
        );
        // Under the proposal's reasoning, under the proposal.
        assert!(
            lines[i - 1].starts_with("      reasoning: "),
            "{}",
            lines[i - 1]
        );
        assert!(
            lines[i - 2].contains(&format!("iter {it}: ")),
            "{}",
            lines[i - 2]
        );
    }
}
