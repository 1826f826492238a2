//! Random sessions: a machine state, a terminal size and a sequence of inputs.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// The machine state a session starts from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `fixtures::reviewing(blocks)`: iteration 1's proposal waits.
    Reviewing { blocks: usize },
    /// `steps` whole iterations, then the next proposal waits (rollback is possible).
    ReviewingLater { steps: usize },
    /// The agent gave no valid proposal.
    AgentFailed,
    /// The reviewer approved: a step is running.
    Approved,
    /// Profiled, the agent is thinking.
    Proposing,
    /// Stopped by the reviewer: finished.
    Finished,
    /// Replay of the legacy session file at event `at` (taken modulo its length).
    Replay { at: usize },
}

impl Kind {
    pub const NAMES: [&'static str; 7] = [
        "reviewing",
        "reviewing-later",
        "agent-failed",
        "approved",
        "proposing",
        "finished",
        "replay",
    ];

    pub fn name(&self) -> &'static str {
        let i = match self {
            Kind::Reviewing { .. } => 0,
            Kind::ReviewingLater { .. } => 1,
            Kind::AgentFailed => 2,
            Kind::Approved => 3,
            Kind::Proposing => 4,
            Kind::Finished => 5,
            Kind::Replay { .. } => 6,
        };
        Self::NAMES[i]
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    /// The terminal is resized (the next frame is drawn at this size).
    Resize(u16, u16),
    /// The worker (or the agent) finishes what the machine waits for; the number picks
    /// the outcome (a perplexity, or an agent failure).
    Work(u8),
}

#[derive(Debug, Clone)]
pub struct Session {
    pub kind: Kind,
    pub size: (u16, u16),
    pub inputs: Vec<Input>,
}

/// Sizes worth hitting: tiny, around the layout's thresholds (50×12, 23 lines, 100×30),
/// common and large.
const SIZES: [(u16, u16); 16] = [
    (1, 1),
    (10, 3),
    (20, 5),
    (2, 40),
    (200, 2),
    (49, 11),
    (50, 12),
    (60, 22),
    (60, 23),
    (80, 24),
    (99, 29),
    (100, 30),
    (120, 40),
    (150, 45),
    (200, 60),
    (250, 80),
];

fn size(rng: &mut StdRng) -> (u16, u16) {
    let roll = rng.gen_range(0..100);
    if roll < 15 {
        // Too small to draw (below 50×12): the first six.
        SIZES[rng.gen_range(0..6)]
    } else if roll < 60 {
        SIZES[rng.gen_range(6..SIZES.len())]
    } else {
        (rng.gen_range(1..=260), rng.gen_range(1..=90))
    }
}

/// Characters the keymap binds, digits and what a value or a number takes, and text
/// that is hard to draw (wide, combining, emoji with its variation selector).
const CHARS: &[char] = &[
    'a', 'e', 'o', 'r', 'x', 'A', 'p', 'b', 's', 'q', 'h', 'j', 'k', 'l', 'm', 'M', 'i', 't', 'c',
    '?', 'g', 'G', 'V', '[', ']', ',', '.', '+', '-', '%', ' ', '0', '1', '2', '3', '4', '5', '6',
    '7', '8', '9', 'z', 'Z', 'é', '\u{301}', '→', '漢', '\u{263a}', '\u{fe0f}', '😀', '\u{200b}',
    'ß',
];

const CODES: &[KeyCode] = &[
    KeyCode::Backspace,
    KeyCode::Delete,
    KeyCode::Enter,
    KeyCode::Esc,
    KeyCode::Tab,
    KeyCode::BackTab,
    KeyCode::Left,
    KeyCode::Right,
    KeyCode::Up,
    KeyCode::Down,
    KeyCode::Home,
    KeyCode::End,
    KeyCode::PageUp,
    KeyCode::PageDown,
    KeyCode::Insert,
];

fn plain_char(c: char) -> KeyEvent {
    // A terminal reports an upper-case letter with shift.
    let mods = if c.is_uppercase() {
        KeyModifiers::SHIFT
    } else {
        KeyModifiers::NONE
    };
    KeyEvent::new(KeyCode::Char(c), mods)
}

fn input(rng: &mut StdRng, size: (u16, u16)) -> Input {
    let roll = rng.gen_range(0..100);
    match roll {
        0..=39 => Input::Key(plain_char(*CHARS.choose(rng).expect("chars"))),
        40..=44 => Input::Key(plain_char(rng.gen_range('0'..='9'))),
        45..=49 => Input::Key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE)),
        50..=74 => Input::Key(KeyEvent::new(
            *CODES.choose(rng).expect("codes"),
            KeyModifiers::NONE,
        )),
        75..=83 => {
            // ctrl-, alt- and ctrl-alt- combinations, also on special keys; ctrl-c rarely,
            // since it ends the session's dialogs.
            let mods = *[
                KeyModifiers::CONTROL,
                KeyModifiers::ALT,
                KeyModifiers::CONTROL | KeyModifiers::ALT,
                KeyModifiers::CONTROL | KeyModifiers::SHIFT,
            ]
            .choose(rng)
            .expect("mods");
            let code = if rng.gen_bool(0.6) {
                let c = *CHARS.choose(rng).expect("chars");
                if c == 'c' && rng.gen_bool(0.7) {
                    KeyCode::Char('d')
                } else {
                    KeyCode::Char(c)
                }
            } else {
                *CODES.choose(rng).expect("codes")
            };
            Input::Key(KeyEvent::new(code, mods))
        }
        84..=86 => Input::Key(KeyEvent::new(
            KeyCode::F(rng.gen_range(1..=12)),
            KeyModifiers::NONE,
        )),
        87..=92 => {
            let kind = *[
                MouseEventKind::Down(MouseButton::Left),
                MouseEventKind::Down(MouseButton::Right),
                MouseEventKind::Up(MouseButton::Left),
                MouseEventKind::Drag(MouseButton::Left),
                MouseEventKind::Moved,
                MouseEventKind::ScrollUp,
                MouseEventKind::ScrollDown,
            ]
            .choose(rng)
            .expect("mouse");
            // Mostly on the screen, sometimes past its edge.
            let column = rng.gen_range(0..size.0.saturating_add(3));
            let row = rng.gen_range(0..size.1.saturating_add(3));
            Input::Mouse(MouseEvent {
                kind,
                column,
                row,
                modifiers: KeyModifiers::NONE,
            })
        }
        93..=95 => Input::Paste(paste(rng)),
        96..=97 => Input::Work(rng.gen()),
        _ => {
            let (w, h) = self::size(rng);
            Input::Resize(w, h)
        }
    }
}

/// Pasted text: line breaks, tabs and other control characters among printable text, now
/// and then longer than a field holds.
fn paste(rng: &mut StdRng) -> String {
    let parts = [
        "0.35",
        "35%",
        "line\nbreak",
        "tab\there",
        "cr\r\nlf",
        "bell\u{7}",
        "esc\u{1b}[2J",
        "nul\u{0}",
        "del\u{7f}",
        "\u{85}next",
        " 12 ",
        "é\u{301}",
        "漢字",
        "😀\u{fe0f}",
    ];
    if rng.gen_bool(0.05) {
        return "long text\n".repeat(260);
    }
    (0..rng.gen_range(1..4))
        .map(|_| *parts.choose(rng).expect("parts"))
        .collect()
}

pub fn session(rng: &mut StdRng) -> Session {
    let kind = match rng.gen_range(0..100) {
        0..=29 => Kind::Reviewing {
            blocks: *[4, 8, 36, 60].choose(rng).expect("blocks"),
        },
        30..=44 => Kind::ReviewingLater {
            steps: rng.gen_range(1..=4),
        },
        45..=54 => Kind::AgentFailed,
        55..=64 => Kind::Approved,
        65..=71 => Kind::Proposing,
        72..=81 => Kind::Finished,
        _ => Kind::Replay {
            at: rng.gen_range(0..10_000),
        },
    };
    let size = size(rng);
    let n = rng.gen_range(5..=60);
    let mut inputs = Vec::with_capacity(n);
    let mut at = size;
    // Most sessions start by opening something (the editor, an override, the feedback,
    // the go-to, the picker, a confirmation, the help, the details), so that random keys
    // reach the dialogs and fields, not only the main screen.
    if rng.gen_bool(0.6) {
        let opener = *['e', 'o', 'r', 'g', 'b', 's', '?', 'i', 'q']
            .choose(rng)
            .expect("openers");
        inputs.push(Input::Key(plain_char(opener)));
    }
    for _ in 0..n {
        let i = input(rng, at);
        if let Input::Resize(w, h) = i {
            at = (w, h);
        }
        inputs.push(i);
    }
    Session { kind, size, inputs }
}

/// The inputs as a reader would type them.
pub fn describe(inputs: &[Input]) -> String {
    let words: Vec<String> = inputs
        .iter()
        .map(|i| match i {
            Input::Key(k) => {
                let mut s = String::new();
                if k.modifiers.contains(KeyModifiers::CONTROL) {
                    s.push_str("ctrl-");
                }
                if k.modifiers.contains(KeyModifiers::ALT) {
                    s.push_str("alt-");
                }
                match k.code {
                    KeyCode::Char(c) => s.push_str(&format!("{c:?}")),
                    KeyCode::F(n) => s.push_str(&format!("f{n}")),
                    c => s.push_str(&format!("{c:?}").to_lowercase()),
                }
                s
            }
            Input::Mouse(m) => format!("mouse:{:?}@{},{}", m.kind, m.column, m.row),
            Input::Paste(t) if t.len() > 40 => format!("paste:{} chars", t.chars().count()),
            Input::Paste(t) => format!("paste:{t:?}"),
            Input::Resize(w, h) => format!("resize:{w}x{h}"),
            Input::Work(n) => format!("work:{n}"),
        })
        .collect();
    format!("[{}]", words.join(" "))
}
