//! TUI benchmarks (`cargo bench --bench tui`), plain `std::time`, no harness:
//!
//! 1. frame time: the main screen at 200x60 with a 36x7 heatmap (Qwen3-8B's shape) drawn
//!    into a `TestBackend`, many frames; goal ≤ 2 ms per frame.
//! 2. key-to-frame latency while every CPU is busy with f32 matrix multiplies: a thread
//!    sends key events the way a terminal does, the UI thread waits for input like the run
//!    loop (`recv_timeout` of one tick), handles the key and draws; goal ≤ 50 ms.
//!
//! It prints the numbers and the goals and asserts nothing about time.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use arborist::session::{Event, Machine};
use arborist::tui::app::App;
use arborist::tui::fixtures::{self, view};
use arborist::tui::keymap::Keymap;
use arborist::tui::theme::Themes;
use arborist::tui::ui;
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::Terminal;

const FRAME_GOAL_MS: f64 = 2.0;
const LATENCY_GOAL_MS: f64 = 50.0;
/// The run loop's longest wait for input.
const TICK: Duration = Duration::from_millis(50);

/// A 36-block session with history: two steps (one rolled back), a proposal waiting.
fn session() -> (Machine, Vec<Event>) {
    let (mut m, mut events) = fixtures::reviewing(36);
    fixtures::step(&mut m, &mut events, 10.1);
    fixtures::next_proposal(&mut m, &mut events);
    fixtures::step(&mut m, &mut events, 12.0);
    fixtures::next_proposal(&mut m, &mut events);
    (m, events)
}

/// Median, p95 and max in milliseconds.
fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), *ms.last().unwrap())
}

fn frame_time() {
    let (m, events) = session();
    let v = view(&m, &events);
    let mut app = App::new(Keymap::builtin(), Themes::builtin(false));
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    let (warmup, n) = (50, 1000);
    let mut ms = Vec::with_capacity(n);
    for i in 0..warmup + n {
        app.cursor = (i % 36, i % 7);
        let t = Instant::now();
        term.draw(|f| {
            app.areas = ui::draw(f, &app, &v);
        })
        .unwrap();
        if i >= warmup {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let (med, p95, max) = stats(ms);
    println!("frame 200x60, 36x7 heatmap, {n} frames:");
    println!(
        "  median {med:.3} ms  p95 {p95:.3} ms  max {max:.3} ms  (goal <= {FRAME_GOAL_MS} ms)"
    );
}

/// One busy worker: 256x256 f32 matrix multiplies in plain loops until `stop`.
fn busy(stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let n = 256;
    let a: Vec<f32> = (0..n * n).map(|i| (i % 17) as f32 * 0.01).collect();
    let b: Vec<f32> = (0..n * n).map(|i| (i % 13) as f32 * 0.02).collect();
    let mut c = vec![0f32; n * n];
    while !stop.load(Ordering::Relaxed) {
        for i in 0..n {
            for k in 0..n {
                let aik = a[i * n + k];
                let (row, brow) = (&mut c[i * n..(i + 1) * n], &b[k * n..(k + 1) * n]);
                for (cv, bv) in row.iter_mut().zip(brow) {
                    *cv += aik * bv;
                }
            }
        }
        std::hint::black_box(&mut c);
        done.fetch_add(1, Ordering::Relaxed);
    }
}

fn key_latency() {
    let cpus = thread::available_parallelism().map_or(2, |n| n.get());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..cpus)
        .map(|_| {
            let (s, d) = (stop.clone(), done.clone());
            thread::spawn(move || busy(s, d))
        })
        .collect();
    thread::sleep(Duration::from_millis(200));

    let (m, events) = session();
    let v = view(&m, &events);
    let mut app = App::new(Keymap::builtin(), Themes::builtin(false));
    let mut term = Terminal::new(TestBackend::new(200, 60)).unwrap();
    // The "terminal": keys with the time they were pressed, a human-like pace apart.
    let presses = 300;
    let (tx, rx) = mpsc::channel::<(KeyEvent, Instant)>();
    let input = thread::spawn(move || {
        let keys = [
            KeyCode::Char('l'),
            KeyCode::Char('j'),
            KeyCode::Char('m'),
            KeyCode::Char('h'),
            KeyCode::Char('k'),
            KeyCode::Tab,
        ];
        for i in 0..presses {
            thread::sleep(Duration::from_millis(7 + (i % 5) as u64 * 3));
            let k = KeyEvent::new(keys[i % keys.len()], KeyModifiers::NONE);
            tx.send((k, Instant::now())).unwrap();
        }
    });
    let started = Instant::now();
    let mut ms = Vec::with_capacity(presses);
    // The run loop's shape: wait up to one tick for input, take it, draw.
    while ms.len() < presses {
        let Ok((key, pressed)) = rx.recv_timeout(TICK) else {
            continue;
        };
        let _ = app.on_key(key, &v);
        term.draw(|f| {
            app.areas = ui::draw(f, &app, &v);
        })
        .unwrap();
        ms.push(pressed.elapsed().as_secs_f64() * 1e3);
    }
    let secs = started.elapsed().as_secs_f64();
    input.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let matmuls = done.load(Ordering::Relaxed);
    let (med, p95, max) = stats(ms);
    println!(
        "key-to-frame at 200x60 with {cpus} busy threads ({:.0} 256x256 f32 matmuls/s), {presses} keys:",
        matmuls as f64 / secs
    );
    println!(
        "  median {med:.3} ms  p95 {p95:.3} ms  max {max:.3} ms  (goal <= {LATENCY_GOAL_MS} ms)"
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: keep it short.
    let bench = std::env::args().any(|a| a == "--bench");
    if !bench {
        println!("tui bench: run with `cargo bench --bench tui`");
        return;
    }
    frame_time();
    key_latency();
}
