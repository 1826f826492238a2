//! The one line an error ends a command with: its context chain joined with ": ".

use crate::agent::text::one_line;

/// `error: ` and the chain: each cause said once (a cause its parent already quotes, as
/// candle quotes the io errors it wraps, is left out).
pub fn error_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for c in e.chain() {
        let line = cause_line(&c.to_string());
        if line.is_empty() || msg.contains(&line) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&line);
    }
    format!("error: {msg}")
}

/// A cause on one line. Candle appends a backtrace (`\n   0: frame`) when RUST_BACKTRACE
/// is set: it goes. Any other line break or control character is escaped: taking the
/// first line cut `--device "cpu\ncpu"` to `--device cpu`, which said nothing wrong.
fn cause_line(text: &str) -> String {
    let frame = |i: usize| {
        let rest = text[i + 1..].trim_start_matches(' ');
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        digits > 0 && rest[digits..].starts_with(": ")
    };
    let end = (text.match_indices('\n').map(|(i, _)| i))
        .find(|&i| frame(i))
        .unwrap_or(text.len());
    one_line(text[..end].trim(), usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backtrace_goes_and_other_line_breaks_are_escaped() {
        let traced = "shape mismatch in matmul\n   0: candle_core::error::Error::bt\n             at src/error.rs:1";
        assert_eq!(cause_line(traced), "shape mismatch in matmul");
        assert_eq!(
            cause_line("--device cpu\ncpu: invalid device"),
            "--device cpu\\ncpu: invalid device"
        );
        let e = anyhow::anyhow!("cannot read x\u{1b}[31m")
            .context("--ppl f.txt")
            .context("--ppl f.txt");
        assert_eq!(
            error_line(&e),
            "error: --ppl f.txt: cannot read x\\u{1b}[31m"
        );
    }
}
