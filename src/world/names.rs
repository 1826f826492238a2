//! Pronounceable invented names, so the bundled model's knowledge cannot come from anywhere else.

use rand::{rngs::StdRng, Rng};
use std::collections::HashSet;

const ONSETS: &[&str] = &[
    "b", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr",
    "kr", "st", "tr", "th", "sh",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "io"];
const CODAS: &[&str] = &["", "", "", "n", "r", "l", "s", "th", "m", "k"];

fn syllable(rng: &mut StdRng) -> String {
    let o = ONSETS[rng.gen_range(0..ONSETS.len())];
    let v = VOWELS[rng.gen_range(0..VOWELS.len())];
    let c = CODAS[rng.gen_range(0..CODAS.len())];
    format!("{o}{v}{c}")
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Draws names of `syllables` syllables that were never drawn before by this generator.
pub struct NameGen {
    used: HashSet<String>,
}

impl NameGen {
    pub fn new() -> Self {
        NameGen {
            used: HashSet::new(),
        }
    }

    pub fn draw(&mut self, rng: &mut StdRng, syllables: usize) -> String {
        loop {
            let raw: String = (0..syllables).map(|_| syllable(rng)).collect();
            let name = capitalise(&raw);
            if name.len() >= 4 && name.len() <= 10 && self.used.insert(name.to_lowercase()) {
                return name;
            }
        }
    }
}

impl Default for NameGen {
    fn default() -> Self {
        Self::new()
    }
}
