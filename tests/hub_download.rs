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

/// Serve `files` as repository `REPO` at revision main until the test ends; returns the
/// endpoint and the paths requested.
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
    let listing = format!("/api/models/{REPO}/revision/main");
    let prefix = format!("/{REPO}/resolve/main/");
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
    if path == listing {
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
    let Some(data) = path.strip_prefix(&prefix).and_then(|f| files.get(f)) else {
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
    let eval = |m: &str, envs: &[(&str, &str)]| {
        let args = [
            "eval",
            "--model",
            m,
            "--ppl",
            &p(&txt),
            "--seqlen",
            "64",
            "--json",
        ];
        let o = arborist(&args, envs);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["ppl"]["value"].as_f64().unwrap()
    };
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
