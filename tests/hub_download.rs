//! Models named by Hugging Face id download through hf-hub from a scripted hub on
//! 127.0.0.1 (HF_ENDPOINT): the repository listing, then each file by HTTP range
//! requests, answered with the headers the real hub sends (`x-repo-commit`, `etag`,
//! `content-range`). The files the repository lists beside the weights come too.

mod common;
use candle_core::DType;
use common::*;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
const REPO: &str = "acme/tiny-qwen3";
/// The branches and tags the scripted hub answers for.
const REVISIONS: [&str; 3] = ["main", "v1", "refs/pr/2"];

/// Serve `files` as repository `REPO` at each of `REVISIONS` until the test ends; returns
/// the endpoint and the paths requested.
fn scripted_hub(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, log) = (Arc::clone(&files), Arc::clone(&log));
            std::thread::spawn(move || answer(stream, &files, &log));
        }
    });
    (endpoint, seen)
}

fn answer(stream: TcpStream, files: &HashMap<String, Vec<u8>>, log: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or(("", ""));
        if name.eq_ignore_ascii_case("authorization") {
            log.lock()
                .unwrap()
                .push(format!("authorization {}", value.trim()));
        }
        if name.eq_ignore_ascii_case("range") {
            let v = value.trim().trim_start_matches("bytes=");
            let (a, b) = v.split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
        }
    }
    log.lock().unwrap().push(path.clone());
    // Every revision this hub has is the one commit.
    let rev = |p: &str, before: &str| -> Option<String> {
        REVISIONS.iter().find_map(|r| {
            let r = r.replace('/', "%2F");
            p.strip_prefix(&format!("{before}{r}")).map(str::to_string)
        })
    };
    let is_listing = rev(&path, &format!("/api/models/{REPO}/revision/")).as_deref() == Some("");
    let file = rev(&path, &format!("/{REPO}/resolve/"))
        .and_then(|rest| rest.strip_prefix('/').map(str::to_string));
    let mut out = stream;
    let mut send = |status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let _ = out.write_all(head.as_bytes());
        let _ = out.write_all(body);
    };
    if is_listing {
        let mut names: Vec<&String> = files.keys().collect();
        names.sort();
        let siblings: Vec<_> = names
            .iter()
            .map(|n| serde_json::json!({ "rfilename": n }))
            .collect();
        let body = serde_json::json!({ "sha": COMMIT, "siblings": siblings }).to_string();
        let json = [("content-type".to_string(), "application/json".to_string())];
        send("200 OK", &json, body.as_bytes());
        return;
    }
    let Some(data) = file.and_then(|f| files.get(&f)) else {
        send("404 Not Found", &[], b"Entry not found");
        return;
    };
    let name = path.rsplit('/').next().unwrap();
    let mut headers = vec![
        ("x-repo-commit".to_string(), COMMIT.to_string()),
        ("etag".to_string(), format!("\"etag-{name}\"")),
    ];
    match range {
        Some((a, b)) => {
            let b = b.min(data.len() - 1);
            headers.push((
                "content-range".into(),
                format!("bytes {a}-{b}/{}", data.len()),
            ));
            send("206 Partial Content", &headers, &data[a..=b]);
        }
        None => send("200 OK", &headers, data),
    }
}

/// `eval --json` of `model` on `txt` at seqlen 64, which must succeed.
fn eval_json(model: &str, txt: &Path, envs: &[(&str, &str)]) -> serde_json::Value {
    let args = [
        "eval",
        "--model",
        model,
        "--ppl",
        &p(txt),
        "--seqlen",
        "64",
        "--json",
    ];
    let o = arborist(&args, envs);
    assert!(o.status.success(), "{model}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn model_files(dir: &Path) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn a_hub_id_downloads_the_model_and_the_files_listed_beside_it() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F32);
    let side = [
        ("generation_config.json", r#"{"eos_token_id": [3, 4]}"#),
        ("chat_template.jinja", "{{ messages }}"),
        ("tokenizer_config.json", r#"{"model_max_length": 256}"#),
    ];
    for (f, text) in side {
        std::fs::write(model.join(f), text).unwrap();
    }
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    let (endpoint, seen) = scripted_hub(model_files(&model));
    let home = d.path().join("hf");
    let envs = [
        ("HF_HOME", p(&home)),
        ("HF_ENDPOINT", endpoint),
        ("HF_HUB_OFFLINE", "0".to_string()),
        ("HF_TOKEN", "hf_scripted".to_string()),
    ];
    let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let eval = |m: &str, envs: &[(&str, &str)]| eval_json(m, &txt, envs)["ppl"]["value"].clone();
    assert_eq!(eval(REPO, &envs), eval(&p(&model), &[]));
    let snapshot = home
        .join("hub/models--acme--tiny-qwen3/snapshots")
        .join(COMMIT);
    for f in ["config.json", "tokenizer.json", "model.safetensors"]
        .into_iter()
        .chain(side.iter().map(|(f, _)| *f))
    {
        let got = std::fs::read(snapshot.join(f)).unwrap_or_default();
        assert_eq!(got, std::fs::read(model.join(f)).unwrap(), "{f}");
    }
    // Side files the listing does not name are never asked for.
    let paths = seen.lock().unwrap().clone();
    assert!(
        paths.iter().any(|p| p.starts_with("/api/models/")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p.ends_with("/vocab.json")),
        "{paths:?}"
    );
    // HF_TOKEN is sent, as huggingface_hub sends it.
    assert!(
        paths
            .iter()
            .any(|p| p == "authorization Bearer hf_scripted"),
        "{paths:?}"
    );
    // An export of the downloaded model carries them.
    let out = d.path().join("pruned");
    let o = arborist(
        &[
            "prune",
            "--model",
            REPO,
            "--method",
            "wanda",
            "--sparsity",
            "0.5",
            "--calib",
            &p(&txt),
            "--seqlen",
            "64",
            "--calib-windows",
            "2",
            "--out",
            &p(&out),
        ],
        &envs,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    for (f, text) in side {
        assert_eq!(std::fs::read_to_string(out.join(f)).unwrap(), text, "{f}");
    }
}

#[test]
fn a_revision_downloads_that_revision_and_its_additional_chat_templates() {
    let d = tmp();
    let model = d.path().join("src");
    write_model_dir(&model, TINY_QWEN3, 9, DType::F32);
    let mut files = model_files(&model);
    let template = "additional_chat_templates/tool_use.jinja";
    files.insert(template.to_string(), b"{{ tools }}".to_vec());
    let txt = d.path().join("eval.txt");
    std::fs::write(&txt, text(2500)).unwrap();
    let (endpoint, seen) = scripted_hub(files);
    let home = d.path().join("hf");
    let h = p(&home);
    let online = [("HF_HOME", h.as_str()), ("HF_ENDPOINT", endpoint.as_str())];
    let eval = |m: &str, envs: &[(&str, &str)]| eval_json(m, &txt, envs);
    let local = eval(&p(&model), &[])["ppl"]["value"].as_f64().unwrap();
    for rev in ["v1", "refs/pr/2"] {
        let v = eval(&format!("{REPO}@{rev}"), &online);
        assert_eq!(v["ppl"]["value"].as_f64().unwrap(), local, "{rev}");
        assert_eq!(v["model_commit"], COMMIT, "{rev}");
        // hf-hub keeps the ref as huggingface_hub does.
        let r = home.join("hub/models--acme--tiny-qwen3/refs").join(rev);
        assert_eq!(std::fs::read_to_string(&r).unwrap(), COMMIT, "{rev}");
    }
    let paths = seen.lock().unwrap().clone();
    let asked = |p: &str| paths.iter().any(|x| x == p);
    assert!(
        asked(&format!("/api/models/{REPO}/revision/v1")),
        "{paths:?}"
    );
    assert!(
        asked(&format!("/{REPO}/resolve/v1/config.json")),
        "{paths:?}"
    );
    assert!(
        asked(&format!("/{REPO}/resolve/refs%2Fpr%2F2/config.json")),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|x| x.contains("/main")),
        "only the revisions asked for: {paths:?}"
    );
    let snapshot = home
        .join("hub/models--acme--tiny-qwen3/snapshots")
        .join(COMMIT);
    assert_eq!(
        std::fs::read_to_string(snapshot.join(template)).unwrap(),
        "{{ tools }}"
    );

    // Offline, the cache answers for the revision and for its commit.
    let offline = [("HF_HOME", h.as_str()), ("HF_HUB_OFFLINE", "1")];
    let at_commit = format!("{REPO}@{COMMIT}");
    for m in [format!("{REPO}@v1"), at_commit.clone()] {
        assert_eq!(
            eval(&m, &offline)["ppl"]["value"].as_f64().unwrap(),
            local,
            "{m}"
        );
    }
    // A prune names the revision and the commit, and its export carries the templates.
    let out = d.path().join("pruned");
    let o = arborist(
        &[
            "prune",
            "--model",
            &at_commit,
            "--method",
            "magnitude",
            "--sparsity",
            "0.5",
            "--out",
            &p(&out),
        ],
        &offline,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("arborist.json")).unwrap()).unwrap();
    assert_eq!(meta["source_model"], at_commit.as_str());
    assert_eq!(meta["source_commit"], COMMIT);
    assert_eq!(
        std::fs::read_to_string(out.join(template)).unwrap(),
        "{{ tools }}"
    );
}
