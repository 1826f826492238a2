//! The session file read back after a crash cut it at any byte, and after random damage.
//! A crash loses at most the event being written: a cut file reads as the whole one's first
//! events, and damage is refused in one line that names the file, never with a panic.

mod common;
use arborist::session::file::{read, SessionLog};
use common::*;
use rand::{Rng, SeedableRng};

const END: &str = "\n...\n";

/// The committed example session's header and first `events` event documents, and the
/// offset where each of those documents ends (the header's first).
fn example_prefix(events: usize) -> (String, Vec<usize>) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
    let whole = std::fs::read_to_string(path).unwrap();
    let ends: Vec<usize> = whole
        .match_indices(END)
        .map(|(i, _)| i + END.len())
        .take(events + 1)
        .collect();
    assert_eq!(ends.len(), events + 1, "the example has fewer events");
    (whole[..ends[events]].to_string(), ends)
}

fn read_bytes(
    dir: &std::path::Path,
    bytes: &[u8],
) -> (std::path::PathBuf, anyhow::Result<SessionLog>) {
    let f = dir.join("cut.yaml");
    std::fs::write(&f, bytes).unwrap();
    let log = read(&f);
    (f, log)
}

/// An error is one line that names the file first.
fn assert_one_line_naming(e: &anyhow::Error, f: &std::path::Path, what: &str) {
    let msg = format!("{e:#}");
    assert!(!msg.contains('\n'), "{what}: more than one line: {msg}");
    assert!(
        msg.starts_with(&p(f)) || msg.contains(&format!("session {}", p(f))),
        "{what}: the file is not named first: {msg}"
    );
}

#[test]
fn a_file_cut_at_any_byte_reads_as_the_events_written_whole_before_the_cut() {
    let events = 24;
    let (text, ends) = example_prefix(events);
    let d = tmp();
    let (_, whole) = read_bytes(d.path(), text.as_bytes());
    let whole = whole.unwrap();
    assert_eq!(whole.entries.len(), events);
    assert!(!whole.torn_tail);

    // Each document's last bytes and the next one's first, where a cut is hardest to tell
    // from a whole document, and random offsets between.
    let mut cuts: Vec<usize> = ends
        .iter()
        .flat_map(|&e| e.saturating_sub(6)..(e + 5).min(text.len()))
        .collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    cuts.extend((0..300).map(|_| rng.gen_range(1..text.len())));
    cuts.sort();
    cuts.dedup();
    for n in cuts {
        let (f, log) = read_bytes(d.path(), &text.as_bytes()[..n]);
        let what = format!("cut at byte {n} of {}", text.len());
        // Documents whose end marker lies wholly before the cut.
        let kept = ends.iter().filter(|&&e| e <= n).count();
        // A header cut just before its end marker holds every field, and reads as the
        // header of a build from before the markers: whole, with no event.
        if n == ends[0] - "...\n".len() {
            let log = log.unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert_eq!(log.header, whole.header, "{what}");
            assert!(log.entries.is_empty() && !log.torn_tail, "{what}");
            continue;
        }
        if kept == 0 {
            // The header itself is cut: refused, and the message says so.
            let Err(e) = log else {
                panic!("{what}: a cut header was read")
            };
            assert_one_line_naming(&e, &f, &what);
            continue;
        }
        let log = log.unwrap_or_else(|e| panic!("{what}: {e:#}"));
        assert_eq!(log.header, whole.header, "{what}");
        assert_eq!(log.entries, whole.entries[..kept - 1], "{what}");
        assert_eq!(log.valid_len, ends[kept - 1] as u64, "{what}");
        assert_eq!(log.torn_tail, n > ends[kept - 1], "{what}");
        assert!(!log.appended, "{what}: a cut read as text added by hand");
    }
}

/// Bytes a hand edit or a disk fault puts in: YAML's own syntax, quotes, a non-ASCII
/// character, a control character, a NUL and a byte that is not UTF-8.
const DAMAGE: &[&[u8]] = &[
    b"-",
    b":",
    b" ",
    b"\n",
    b"'",
    b"\"",
    b"{",
    b"[",
    b"#",
    b"&",
    b"*",
    b"!",
    b"|",
    b">",
    b"9",
    b"x",
    b"\t",
    "é".as_bytes(),
    b"\x07",
    b"\0",
    b"\xff",
];

#[test]
fn random_damage_is_read_or_refused_in_one_line_never_panics() {
    let (text, ends) = example_prefix(12);
    let d = tmp();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (mut refused, mut read_ok) = (0, 0);
    for round in 0..400 {
        let mut bytes = text.as_bytes().to_vec();
        for _ in 0..rng.gen_range(1..=3) {
            let at = rng.gen_range(0..bytes.len());
            match rng.gen_range(0..3) {
                0 => {
                    let b = DAMAGE[rng.gen_range(0..DAMAGE.len())];
                    bytes.splice(at..at + 1, b.iter().copied());
                }
                1 => {
                    bytes.remove(at);
                }
                _ => {
                    let b = DAMAGE[rng.gen_range(0..DAMAGE.len())];
                    bytes.splice(at..at, b.iter().copied());
                }
            }
        }
        let what = format!("round {round}");
        let (f, log) = read_bytes(d.path(), &bytes);
        match log {
            Err(e) => {
                refused += 1;
                assert_one_line_naming(&e, &f, &what);
            }
            Ok(log) => {
                read_ok += 1;
                // What was read is numbered from 1 without a gap, and no more than was
                // written.
                let seqs: Vec<u64> = log.entries.iter().map(|e| e.seq).collect();
                let want: Vec<u64> = (1..=seqs.len() as u64).collect();
                assert_eq!(seqs, want, "{what}");
                assert!(log.entries.len() < ends.len(), "{what}");
            }
        }
    }
    // Both outcomes occurred, so neither branch's checks went unexercised.
    assert!(
        refused > 0 && read_ok > 0,
        "refused {refused}, read {read_ok}"
    );
}
