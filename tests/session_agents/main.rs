//! Full headless sessions driven by an LLM agent: `--agent openai` against the scripted
//! OpenAI-compatible server on 127.0.0.1. What the server received is compared with what
//! the session file recorded, and the API key must never reach the file or the terminal.

#[path = "../common/mod.rs"]
mod common;
mod failures;
mod recording;
mod secrets;

#[path = "../common/scripted_server.rs"]
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
