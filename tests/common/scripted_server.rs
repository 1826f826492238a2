//! A scripted HTTP/1.1 server on 127.0.0.1 for testing the LLM clients without network.
//! It answers each request with the next scripted response (one request per connection)
//! and records what it received, with a timestamp, for assertions.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Close the connection without answering (a transport failure for the client).
    pub drop_connection: bool,
    /// Hold the connection this long without answering, then close it (a hung server).
    pub hang: Option<Duration>,
    /// Send the status line, headers and the start of the body, then hold the rest back
    /// this long (a server that stalls mid-body).
    pub stall_body: Option<Duration>,
}

impl Scripted {
    pub fn json(status: u16, body: Value) -> Scripted {
        Scripted {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
            drop_connection: false,
            hang: None,
            stall_body: None,
        }
    }

    /// An error status whose body stalls after its first bytes for `d`.
    pub fn stalled(status: u16, d: Duration) -> Scripted {
        Scripted {
            stall_body: Some(d),
            ..Scripted::error(status, "the rest of this body never comes")
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn drop_connection() -> Scripted {
        Scripted {
            status: 0,
            headers: vec![],
            body: String::new(),
            drop_connection: true,
            hang: None,
            stall_body: None,
        }
    }

    /// Accept the request, then say nothing for `d` (on its own thread, so the server keeps
    /// answering other connections).
    pub fn hang(d: Duration) -> Scripted {
        Scripted {
            hang: Some(d),
            ..Scripted::drop_connection()
        }
    }

    /// An OpenAI chat completion whose message content is `text`.
    pub fn openai(text: &str, prompt_tokens: u64, completion_tokens: u64) -> Scripted {
        Scripted::json(
            200,
            json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": "scripted-model",
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                          "total_tokens": prompt_tokens + completion_tokens}
            }),
        )
    }

    /// An Anthropic message; `text` is split over two text blocks around a non-text block.
    pub fn anthropic(text: &str, input_tokens: u64, output_tokens: u64) -> Scripted {
        let mid = text.len() / 2;
        let mid = (mid..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap();
        Scripted::json(
            200,
            json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": "scripted-claude",
                "content": [{"type": "text", "text": &text[..mid]},
                            {"type": "thinking", "thinking": "ignored"},
                            {"type": "text", "text": &text[mid..]}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens}
            }),
        )
    }

    /// An error in OpenAI's and Anthropic's shape.
    pub fn error(status: u16, message: &str) -> Scripted {
        Scripted::json(
            status,
            json!({"error": {"message": message, "type": "error"}}),
        )
    }
}

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct ScriptedServer {
    port: u16,
    queue: Arc<Mutex<VecDeque<Scripted>>>,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ScriptedServer {
    pub fn start(script: Vec<Scripted>) -> ScriptedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = listener.local_addr().unwrap().port();
        let queue = Arc::new(Mutex::new(VecDeque::from(script)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (q, r, s) = (queue.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    serve(stream, &q, &r);
                }
            }
        });
        ScriptedServer {
            port,
            queue,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Base URL, e.g. http://127.0.0.1:40123.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn push(&self, s: Scripted) {
        self.queue.lock().unwrap().push_back(s);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    pub fn remaining(&self) -> usize {
        self.queue.lock().unwrap().len()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, queue: &Mutex<VecDeque<Scripted>>, log: &Mutex<Vec<Recorded>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&mut stream) else {
        return; // e.g. the wake-up connection from Drop
    };
    log.lock().unwrap().push(req);
    // An exhausted script answers a non-retryable status so a test fails fast.
    let next = queue.lock().unwrap().pop_front();
    let resp = next.unwrap_or_else(|| Scripted::error(418, "script exhausted"));
    if let Some(d) = resp.hang {
        std::thread::spawn(move || {
            std::thread::sleep(d);
            let _ = stream.shutdown(Shutdown::Both);
        });
        return;
    }
    if resp.drop_connection {
        let _ = stream.shutdown(Shutdown::Both);
        return;
    }
    if let Some(d) = resp.stall_body {
        let head = format!(
            "HTTP/1.1 {} Scripted\r\nContent-Length: {}\r\n\r\n{}",
            resp.status,
            resp.body.len() + 100_000,
            &resp.body[..resp.body.len() / 2]
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.flush();
        std::thread::spawn(move || {
            std::thread::sleep(d);
            let _ = stream.shutdown(Shutdown::Both);
        });
        return;
    }
    let mut out = format!("HTTP/1.1 {} Scripted\r\n", resp.status);
    for (n, v) in &resp.headers {
        out.push_str(&format!("{n}: {v}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        resp.body.len(),
        resp.body
    ));
    let _ = stream.write_all(out.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
}

fn read_request(stream: &mut TcpStream) -> Option<Recorded> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, path) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..(head_end + len).min(buf.len())];
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_slice(body).unwrap_or(Value::Null),
        at,
    })
}
