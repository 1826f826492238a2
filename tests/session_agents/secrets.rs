//! The API key, whole or in part, echoed by the server: never in the session file.

use super::*;

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
