//! What the session file records of the agent's exchanges: prompts, replies, tokens,
//! templates, and a prompt the server did not read whole.

use super::*;

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
