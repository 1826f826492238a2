//! Damage that fits any text file: cuts, foreign bytes, tabs, lost or doubled lines.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

/// Byte sequences that are not UTF-8: a lone continuation byte, a cut multi-byte
/// character, an overlong encoding, bytes never valid, and a NUL among them.
const NOT_UTF8: [&[u8]; 5] = [b"\x80", b"\xe2\x82", b"\xc0\xaf", b"\xff\xfe", b"a\x00\xff"];

/// The file cut after a random byte (never the whole file: that is no damage).
pub fn truncate(rng: &mut StdRng, bytes: &mut Vec<u8>) -> String {
    let at = rng.gen_range(0..bytes.len().max(1));
    bytes.truncate(at);
    format!("cut to its first {at} bytes")
}

/// Bytes that are not UTF-8 put in at a random place.
pub fn not_utf8(rng: &mut StdRng, bytes: &mut Vec<u8>) -> String {
    let at = rng.gen_range(0..=bytes.len());
    let b = NOT_UTF8.choose(rng).unwrap();
    bytes.splice(at..at, b.iter().copied());
    format!("bytes {b:02x?} put in at byte {at}")
}

/// Random bytes overwritten in place (a bad download or disk).
pub fn flip(rng: &mut StdRng, bytes: &mut [u8]) -> String {
    if bytes.is_empty() {
        return "nothing to flip".into();
    }
    let n = rng.gen_range(1..=4);
    let mut at = Vec::new();
    for _ in 0..n {
        let i = rng.gen_range(0..bytes.len());
        bytes[i] = rng.gen();
        at.push(i);
    }
    format!("bytes at {at:?} overwritten")
}

/// Line `i` (of the `\n`-separated lines) removed.
pub fn delete_line(bytes: &mut Vec<u8>, i: usize) -> String {
    let mut lines = split_lines(bytes);
    let gone = lines.remove(i);
    *bytes = lines.concat();
    format!("line {} removed: {}", i + 1, show_line(&gone))
}

/// Line `i` written twice.
pub fn duplicate_line(bytes: &mut Vec<u8>, i: usize) -> String {
    let mut lines = split_lines(bytes);
    let mut twice = lines[i].clone();
    if !twice.ends_with(b"\n") {
        twice.push(b'\n');
    }
    lines.insert(i, twice);
    *bytes = lines.concat();
    format!("line {} doubled: {}", i + 1, show_line(&lines[i]))
}

/// A tab put before line `i`'s text (YAML refuses tabs in indentation).
pub fn tab_indent(bytes: &mut Vec<u8>, i: usize) -> String {
    let mut lines = split_lines(bytes);
    if lines.is_empty() {
        lines.push(Vec::new());
    }
    let i = i.min(lines.len() - 1);
    lines[i].insert(0, b'\t');
    *bytes = lines.concat();
    format!("tab put before line {}", i + 1)
}

/// One of `texts` put in at a random byte.
pub fn insert(rng: &mut StdRng, bytes: &mut Vec<u8>, texts: &[&str]) -> String {
    let text = *texts.choose(rng).unwrap();
    let at = rng.gen_range(0..=bytes.len());
    bytes.splice(at..at, text.bytes());
    format!("{text:?} put in at byte {at}")
}

/// Line endings turned into `\r\n` (a file saved on Windows).
pub fn crlf(bytes: &mut Vec<u8>) -> String {
    let mut out = Vec::with_capacity(bytes.len() + 64);
    for &b in bytes.iter() {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    *bytes = out;
    "line endings made \\r\\n".into()
}

/// A UTF-8 byte-order mark put first.
pub fn bom(bytes: &mut Vec<u8>) -> String {
    bytes.splice(0..0, [0xef, 0xbb, 0xbf]);
    "a byte-order mark put first".into()
}

/// The lines with their `\n`; the last may lack it.
pub fn split_lines(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn show_line(line: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(line).trim_end())
}

/// A file's bytes for a failure report, escaped (`\xNN` for bytes that are not UTF-8),
/// cut after 1,500 bytes.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(1500)];
    let mut text = String::from("\"");
    for chunk in cut.utf8_chunks() {
        text += chunk.valid().escape_debug().to_string().as_str();
        for b in chunk.invalid() {
            text += &format!("\\x{b:02x}");
        }
    }
    text.push('"');
    if bytes.len() > cut.len() {
        text += &format!(" ... ({} bytes in all)", bytes.len());
    }
    text
}
