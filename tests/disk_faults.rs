//! A disk that refuses writes: stdout or stderr on a full disk (`/dev/full`) and a file-size
//! limit (`ulimit -f`). The session file keeps every whole event and the process ends with
//! a message, never a panic or a signal.

mod common;
mod session_support;
use common::*;
use session_support::*;
use std::process::{Command, Stdio};

/// `arborist ARGS` in `env`'s work directory with stdout and stderr sent where asked.
fn run_to(env: &Env, args: &[&str], stdout: Stdio, stderr: Stdio) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_arborist"))
        .args(args)
        .current_dir(env.work())
        .env("ARBORIST_CACHE", &env.cache)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .output()
        .expect("spawn arborist")
}

fn full() -> Stdio {
    Stdio::from(std::fs::File::create("/dev/full").expect("/dev/full"))
}

fn session_args<'a>(s: &'a str, iters: &'a str) -> Vec<&'a str> {
    let mut a = vec!["run", "--headless", "--auto-approve", "--session", s];
    a.extend(["--max-iters", iters]);
    a.extend(SMALL);
    a
}

// A progress log on a full disk (`> run.log 2>&1`) panicked in eprintln! and ended the
// session mid-run with status 101; it is dropped and the session finishes.
#[test]
fn a_session_whose_stderr_is_full_finishes() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let o = run_to(&env, &session_args(&p(&s), "2"), Stdio::piped(), full());
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let summary: serde_yaml::Value = serde_yaml::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["finished"].as_str(), Some("max_iterations"));
    let r = env.run(&["replay", &p(&s), "--headless"]);
    assert!(
        r.stdout
            .contains("finished (max iterations): 2 iteration(s)"),
        "{}",
        r.stdout
    );
    // The errors said before a command runs, and a usage error, exit with their status
    // (they panicked with 101 on a full stderr).
    for (args, status) in [
        (&["eval", "--model", "bundled", "--threads", "0"][..], 1),
        (&["eval", "--threads", "1"][..], 2),
    ] {
        let o = run_to(&env, args, Stdio::null(), full());
        assert_eq!(o.status.code(), Some(status), "{args:?}");
    }
}

// A result that cannot be printed is an error with a message (it was a panic, 101).
#[test]
fn a_result_that_cannot_be_written_to_stdout_is_an_error() {
    let env = Env::new();
    let s = env.path("s.yaml");
    let o = run_to(
        &env,
        &session_args(&p(&s), "1"),
        Stdio::null(),
        Stdio::null(),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // A replay's timeline and a benchmark's figures (the benchmark panicked with status
    // 101).
    let replay = ["replay", &p(&s), "--headless"];
    let bench = [
        "bench", "--suite", "forward", "--iters", "1", "--seqlen", "32", "--batch", "1",
    ];
    for args in [&replay[..], &bench[..]] {
        let o = run_to(&env, args, full(), Stdio::piped());
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(
            err.trim_end(),
            "error: cannot write to standard output: No space left on device (os error 28)"
        );
    }
    // An export is written whole, then said to be: the error says it is there.
    let out = env.path("ex");
    let o = run_to(
        &env,
        &["export", &p(&s), "--out", &p(&out)],
        full(),
        Stdio::piped(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "wrote {}, but not its report: cannot write to standard output",
            p(&out)
        )),
        "{err}"
    );
    assert!(out.join("model.safetensors").is_file());
}

// Past `ulimit -f` the kernel sent SIGXFSZ, which killed the process without a word
// (a TUI left the terminal raw); the write now fails like a full disk's.
#[test]
fn a_file_size_limit_stops_the_session_with_a_message_and_it_resumes() {
    let env = Env::new();
    // The bundled model is unpacked into the cache first, with no limit.
    let warm = env.path("warm.yaml");
    let o = run_to(
        &env,
        &session_args(&p(&warm), "1"),
        Stdio::null(),
        Stdio::null(),
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let s = env.path("s.yaml");
    let sp = p(&s);
    let args = session_args(&sp, "3");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    // 16 blocks of 1 KiB: the header and the first events fit, the first profile does not.
    let script = format!(
        "ulimit -f 16; exec '{}' {}",
        env!("CARGO_BIN_EXE_arborist"),
        quoted.join(" ")
    );
    let o = Command::new("sh")
        .args(["-c", &script])
        .current_dir(env.work())
        .env("ARBORIST_CACHE", &env.cache)
        .stdin(Stdio::null())
        .output()
        .expect("sh");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let last = err.trim_end().lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!(
            "error: cannot write session {}: File too large",
            p(&s)
        )),
        "{err}"
    );
    assert!(last.contains("--resume"), "{last}");
    let r = env.resume(&s);
    let sum = ok_json(&r);
    assert_eq!(sum["finished"], "max_iterations", "{sum}");
    assert_eq!(sum["iterations"], 3, "{sum}");
}
