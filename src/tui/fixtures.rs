//! Synthetic sessions for rendering tests and benchmarks: a machine fed made-up events
//! (Qwen3-8B has 36 blocks of q/k/v/o/gate/up/down), no model involved.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::Terminal;

use crate::agent::{AgentReply, LayerRow, LayerTarget, Proposal, Usage};
use crate::session::{Evaluation, Event, LayerInfo, LoopOptions, Machine};

use super::app::{App, Request};
use super::keymap::Keymap;
use super::theme::Themes;
use super::view::View;

use super::grid::KINDS;

const PATHS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

pub fn layer_name(block: usize, kind: usize) -> String {
    format!("model.layers.{block}.{}", PATHS[kind])
}

pub fn eval(ppl: f64) -> Evaluation {
    Evaluation {
        ppl,
        dataset: "synthetic".into(),
        seqlen: 128,
        windows: 8,
        dtype: "f32".into(),
        probe: None,
        seconds: 0.1,
        from_block: None,
    }
}

/// z_s and z_g of a layer: smooth in the block, distinct per kind, so cells differ.
pub fn z(block: usize, kind: usize) -> (f64, f64) {
    let b = block as f64;
    let k = kind as f64;
    (
        ((b * 0.37 + k).sin() * 1.5),
        ((b * 0.11 - k * 0.5).cos() * 1.2),
    )
}

fn rows(blocks: usize, m: &Machine) -> Vec<LayerRow> {
    let ckpt = m.checkpoint();
    let mut rows = Vec::new();
    for b in 0..blocks {
        for (k, kind) in KINDS.iter().enumerate() {
            let name = layer_name(b, k);
            let (z_s, z_g) = z(b, k);
            rows.push(LayerRow {
                sparsity: ckpt
                    .and_then(|c| c.sparsity.get(&name).copied())
                    .unwrap_or(0.0),
                name,
                block: b,
                kind: kind.to_string(),
                s: 1.0 + z_s,
                g: 0.5 + z_g,
                z_s,
                z_g,
                params: 4096,
            });
        }
    }
    rows
}

pub fn reply<T>(value: T) -> AgentReply<T> {
    AgentReply {
        value,
        prompt: None,
        raw: None,
        usage: Usage {
            prompt_tokens: 1200,
            completion_tokens: 300,
            cost: None,
        },
    }
}

/// A reply whose usage carries a cost in USD, as OpenRouter reports it.
pub fn reply_costing<T>(value: T, cost: f64) -> AgentReply<T> {
    let mut r = reply(value);
    r.usage.cost = Some(cost);
    r
}

/// Feed an event, panicking with the machine's message when it does not fit.
pub fn feed(m: &mut Machine, events: &mut Vec<Event>, ev: Event) {
    m.handle(&ev)
        .unwrap_or_else(|e| panic!("{}: {e}", ev.kind()));
    events.push(ev);
}

/// Baseline and profile of a `blocks`-block model: the machine proposes iteration 1.
pub fn profiled(blocks: usize) -> (Machine, Vec<Event>) {
    let mut m = Machine::new("synthetic", LoopOptions::default());
    m.start();
    let mut events = Vec::new();
    let layers = (0..blocks)
        .flat_map(|b| (0..7).map(move |k| (b, k)))
        .map(|(b, k)| LayerInfo {
            name: layer_name(b, k),
            params: 4096,
            sparsity: 0.0,
        })
        .collect();
    feed(
        &mut m,
        &mut events,
        Event::Baseline {
            layers,
            eval: eval(10.0),
        },
    );
    let rows = rows(blocks, &m);
    let iteration = m.iteration;
    feed(
        &mut m,
        &mut events,
        Event::Profiled {
            iteration,
            rows,
            seconds: 1.0,
            calib_from_block: None,
        },
    );
    (m, events)
}

/// A proposal of `+0.1` on the down projections of the first blocks.
pub fn proposal(m: &Machine, n: usize) -> Proposal {
    let layers = (0..n)
        .map(|b| {
            let name = layer_name(b, 6);
            let cur = m
                .checkpoint()
                .and_then(|c| c.sparsity.get(&name).copied())
                .unwrap_or(0.0);
            LayerTarget {
                name,
                sparsity: cur + 0.1,
            }
        })
        .collect();
    Proposal {
        layers,
        reasoning: "down projections have the lowest combined sensitivity".into(),
    }
}

/// A `blocks`-block session waiting for review of iteration 1.
pub fn reviewing(blocks: usize) -> (Machine, Vec<Event>) {
    let (mut m, mut events) = profiled(blocks);
    let p = proposal(&m, 4);
    let iteration = m.iteration;
    let ev = Event::Proposed {
        iteration,
        agent: "builtin".into(),
        reply: reply(p),
    };
    feed(&mut m, &mut events, ev);
    (m, events)
}

/// Approve, evaluate at `ppl`, reflect: one whole iteration after `reviewing`.
pub fn step(m: &mut Machine, events: &mut Vec<Event>, ppl: f64) {
    let iteration = m.iteration;
    let p = m.proposal.clone().expect("reviewing");
    feed(
        m,
        events,
        Event::Decided {
            iteration,
            by: "human".into(),
            decision: crate::session::Decision::Approve,
        },
    );
    let applied = p
        .layers
        .iter()
        .map(|l| (l.name.clone(), l.sparsity))
        .collect();
    feed(
        m,
        events,
        Event::Evaluated {
            iteration,
            applied,
            eval: eval(ppl),
        },
    );
    feed(
        m,
        events,
        Event::Reflected {
            iteration,
            reply: reply(format!("iteration {iteration} at ppl {ppl}")),
        },
    );
}

/// After `step`: profile again if the machine asks, then propose the next iteration.
pub fn next_proposal(m: &mut Machine, events: &mut Vec<Event>) {
    let iteration = m.iteration;
    if m.phase == crate::session::Phase::Profiling {
        let blocks = m.layers.len() / 7;
        let rows = rows(blocks, m);
        feed(
            m,
            events,
            Event::Profiled {
                iteration,
                rows,
                seconds: 1.0,
                calib_from_block: None,
            },
        );
    }
    let p = proposal(m, 4);
    feed(
        m,
        events,
        Event::Proposed {
            iteration,
            agent: "builtin".into(),
            reply: reply(p),
        },
    );
}

/// An app with the built-in keymap and themes, colours on.
pub fn app() -> App {
    App::new(Keymap::builtin(), Themes::builtin(false))
}

/// A live view of `m`: its proposal pending while it is reviewing, no worker progress.
pub fn view<'a>(m: &'a Machine, events: &'a [Event]) -> View<'a> {
    View {
        machine: m,
        events,
        pending: crate::tui::view::pending(m),
        progress: None,
        replay: None,
        session: "sessions/test.yaml",
        options: "",
        loading: None,
        busy_for: None,
    }
}

pub fn ch(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

pub fn code(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

/// Press keys in order; the requests of all of them.
pub fn press(app: &mut App, v: &View, keys: &[KeyEvent]) -> Vec<Request> {
    keys.iter().flat_map(|k| app.on_key(*k, v)).collect()
}

pub fn typed(text: &str) -> Vec<KeyEvent> {
    text.chars().map(ch).collect()
}

/// One frame at `w`×`h` into a test backend; the app learns the panel areas as it would.
pub fn draw(app: &mut App, v: &View, w: u16, h: u16) -> Buffer {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    let mut areas = None;
    app.follow(v);
    term.draw(|f| areas = Some(super::ui::draw(f, app, v)))
        .expect("drawing into a test backend");
    app.areas = areas.expect("drawn");
    term.backend().buffer().clone()
}
