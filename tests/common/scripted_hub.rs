//! A scripted Hugging Face hub on 127.0.0.1 for hf-hub (`HF_ENDPOINT`): the repository
//! listing, then each file by HTTP range requests, answered with the headers the real hub
//! sends (`x-repo-commit`, `etag`, `content-range`).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const COMMIT: &str = "89abcdef0123456789abcdef0123456789abcdef";
pub const REPO: &str = "acme/tiny-qwen3";
/// A repository that needs a token with access.
pub const GATED: &str = "acme/gated";
/// The branches and tags the scripted hub answers for.
pub const REVISIONS: [&str; 3] = ["main", "v1", "refs/pr/2"];

/// What the hub gets wrong, by file name.
#[derive(Default)]
pub struct Faults {
    /// The etag sent instead of `etag-NAME`.
    pub etag: HashMap<String, String>,
    /// Files whose body comes with its first byte changed (the metadata probe aside).
    pub corrupt: Vec<String>,
    /// Files answered with this status, the given number of times, before they are served.
    pub fail: HashMap<String, (u16, usize)>,
    /// Files whose body stops halfway, the given number of times (the connection stays
    /// open and silent), before they are served whole.
    pub stall: HashMap<String, usize>,
    /// Files whose metadata probe gets no answer, the given number of times.
    pub stall_probe: HashMap<String, usize>,
}

/// How long a stalled answer stays silent: longer than any test waits for it.
const SILENCE: Duration = Duration::from_secs(120);

/// Serve `files` as repository `REPO` at each of `REVISIONS` until the test ends; returns
/// the endpoint and the paths requested.
pub fn scripted_hub(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
    scripted_hub_paced(files, Duration::ZERO)
}

/// As `scripted_hub`, with `faults`.
pub fn scripted_hub_faulty(
    files: HashMap<String, Vec<u8>>,
    faults: Faults,
) -> (String, Arc<Mutex<Vec<String>>>) {
    serve(files, Duration::ZERO, faults)
}

/// As `scripted_hub`, sending each body 64 KiB at a time with `pace` between the pieces:
/// a download slow enough to be watched.
pub fn scripted_hub_paced(
    files: HashMap<String, Vec<u8>>,
    pace: Duration,
) -> (String, Arc<Mutex<Vec<String>>>) {
    serve(files, pace, Faults::default())
}

fn serve(
    files: HashMap<String, Vec<u8>>,
    pace: Duration,
    faults: Faults,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let faults = Arc::new(Mutex::new(faults));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let files = Arc::new(files);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (files, log, faults) = (Arc::clone(&files), Arc::clone(&log), Arc::clone(&faults));
            std::thread::spawn(move || answer(stream, &files, &log, pace, &faults));
        }
    });
    (endpoint, seen)
}

fn answer(
    stream: TcpStream,
    files: &HashMap<String, Vec<u8>>,
    log: &Mutex<Vec<String>>,
    pace: Duration,
    faults: &Mutex<Faults>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range = None;
    let mut token = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap() == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or(("", ""));
        if name.eq_ignore_ascii_case("authorization") {
            token = true;
            log.lock()
                .unwrap()
                .push(format!("authorization {}", value.trim()));
        }
        if name.eq_ignore_ascii_case("range") {
            let v = value.trim().trim_start_matches("bytes=");
            let (a, b) = v.split_once('-').unwrap();
            range = Some((a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap()));
            log.lock().unwrap().push(format!("range {v} {path}"));
        }
    }
    log.lock().unwrap().push(path.clone());
    // Every revision this hub has is the one commit, which it also answers for.
    let rev = |p: &str, before: &str| -> Option<String> {
        REVISIONS.iter().chain([&COMMIT]).find_map(|r| {
            let r = r.replace('/', "%2F");
            p.strip_prefix(&format!("{before}{r}")).map(str::to_string)
        })
    };
    let is_listing = rev(&path, &format!("/api/models/{REPO}/revision/")).as_deref() == Some("");
    let file = rev(&path, &format!("/{REPO}/resolve/"))
        .and_then(|rest| rest.strip_prefix('/').map(str::to_string));
    // A second handle, for the stalled answer that `send` does not give.
    let mut raw = stream.try_clone().unwrap();
    let mut out = stream;
    let mut send = |status: &str, headers: &[(String, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let _ = out.write_all(head.as_bytes());
        for piece in body.chunks(64 << 10) {
            if out.write_all(piece).is_err() {
                return;
            }
            std::thread::sleep(pace);
        }
    };
    // A gated repository, as the hub answers for it: 401 without a token, 403 with one
    // that has not been granted access.
    if path.contains(&format!("/{GATED}/")) {
        let (status, body) = match token {
            false => (
                "401 Unauthorized",
                "Access to model acme/gated is restricted.",
            ),
            true => (
                "403 Forbidden",
                "Access to model acme/gated is restricted and you are not in the authorized list.",
            ),
        };
        send(status, &[], body.as_bytes());
        return;
    }
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
    let mut f = faults.lock().unwrap();
    if let Some((status, times)) = f.fail.get_mut(name).filter(|(_, n)| *n > 0) {
        *times -= 1;
        let status = format!("{status} Scripted");
        drop(f);
        send(&status, &[], b"scripted failure");
        return;
    }
    let probe = range == Some((0, 0));
    let stalls = if probe {
        &mut f.stall_probe
    } else {
        &mut f.stall
    };
    let stalled = match stalls.get_mut(name).filter(|n| **n > 0) {
        Some(n) => {
            *n -= 1;
            true
        }
        None => false,
    };
    if stalled && probe {
        drop(f);
        std::thread::sleep(SILENCE);
        return;
    }
    let etag = f.etag.get(name).cloned().unwrap_or(format!("etag-{name}"));
    let mut data = data.clone();
    if f.corrupt.iter().any(|c| c == name) && range != Some((0, 0)) {
        data[0] ^= 0xff;
    }
    drop(f);
    let mut headers = vec![
        ("x-repo-commit".to_string(), COMMIT.to_string()),
        ("etag".to_string(), format!("\"{etag}\"")),
    ];
    let (status, body) = match range {
        Some((a, b)) => {
            let b = b.min(data.len() - 1);
            headers.push((
                "content-range".into(),
                format!("bytes {a}-{b}/{}", data.len()),
            ));
            ("206 Partial Content", &data[a..=b])
        }
        None => ("200 OK", &data[..]),
    };
    if stalled {
        // The head and half the body, then silence on an open connection.
        let mut head = format!("HTTP/1.1 {status}\r\n");
        for (k, v) in &headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
        let _ = raw.write_all(head.as_bytes());
        let _ = raw.write_all(&body[..body.len() / 2]);
        let _ = raw.flush();
        std::thread::sleep(SILENCE);
        return;
    }
    send(status, &headers, body);
}
