//! The TUI's `V`: `arborist replay --verify --json` in a child process, so candle stays out
//! of the UI process and the screen stays responsive, with its progress read as it runs.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, Sender};

use super::app::Level;
use crate::runtime::{PROGRESS_LINE, PROGRESS_LINES_ENV};

/// What the child has said: how far it is (events done, events in the file), then its
/// verdict.
#[derive(Debug, Clone, PartialEq)]
pub enum VerifyNews {
    Progress(usize, usize),
    Done(Level, String),
}

/// The child ends with this process (Linux): a quit during `V` left it computing at full
/// CPU. This thread waits on it, so it outlives the child unless the process exits.
fn die_with_parent(cmd: &mut std::process::Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe and touches only the child's own state.
        unsafe {
            cmd.pre_exec(|| {
                // SIGKILL: the child writes nothing, and a headless run treats SIGTERM as
                // a request it may finish a step for.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// Starts the child; its news arrives on the returned channel, the verdict last.
pub fn spawn_verify(path: &Path, extra: &[String]) -> Receiver<VerifyNews> {
    let (tx, rx) = channel();
    let path = path.to_path_buf();
    let extra = extra.to_vec();
    std::thread::spawn(move || {
        let done = match run_child(&path, &extra, &tx) {
            Ok(verdict) => verdict,
            Err(e) => VerifyNews::Done(Level::Error, format!("verify could not start: {e}")),
        };
        let _ = tx.send(done);
    });
    rx
}

fn run_child(
    path: &Path,
    extra: &[String],
    tx: &Sender<VerifyNews>,
) -> std::io::Result<VerifyNews> {
    let exe = crate::runtime::this_executable()?;
    let mut cmd = Command::new(exe);
    cmd.args(["replay", "--verify", "--json"])
        .args(extra)
        .arg(path)
        .env(PROGRESS_LINES_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn()?;
    let mut stdout = child.stdout.take().expect("piped");
    // Read beside stderr: a child blocked on a full stdout pipe would never end.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).map(|_| out)
    });
    let mut errors = Vec::new();
    // Bytes, not `lines()`: a line that is not UTF-8 (a path in an error) ended the reading
    // with "verify could not start".
    for line in BufReader::new(child.stderr.take().expect("piped")).split(b'\n') {
        let line = String::from_utf8_lossy(&line?).into_owned();
        match progress(&line) {
            Some((done, total)) => {
                let _ = tx.send(VerifyNews::Progress(done, total));
            }
            None => errors.push(line),
        }
    }
    let out = reader.join().unwrap_or_else(|_| Ok(Vec::new()))?;
    child.wait()?;
    Ok(verdict(&out, &errors))
}

/// `done/total` from a progress line of the child.
fn progress(line: &str) -> Option<(usize, usize)> {
    let (done, total) = line.strip_prefix(PROGRESS_LINE)?.split_once('/')?;
    Some((done.parse().ok()?, total.parse().ok()?))
}

/// The verdict from the child's JSON report, or else its last line of error.
fn verdict(stdout: &[u8], stderr: &[String]) -> VerifyNews {
    match serde_json::from_slice::<serde_json::Value>(stdout) {
        Ok(v) if v["ok"] == true => {
            let exact = if v["bit_exact"] == true {
                ", bit-exact"
            } else {
                ""
            };
            let n = v["checks"].as_array().map_or(0, Vec::len);
            VerifyNews::Done(Level::Info, format!("verified: {n} compute checks{exact}"))
        }
        _ => {
            let last = stderr.last().map_or("no output", String::as_str);
            VerifyNews::Done(Level::Error, format!("NOT verified: {last}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_are_told_from_errors() {
        assert_eq!(progress(&format!("{PROGRESS_LINE}45/276")), Some((45, 276)));
        assert_eq!(progress("error: x.yaml: 45/276"), None);
        assert_eq!(progress(&format!("{PROGRESS_LINE}45")), None);
        let errors = vec!["a warning".to_string(), "error: the last".to_string()];
        assert_eq!(
            verdict(b"", &errors),
            VerifyNews::Done(Level::Error, "NOT verified: error: the last".into())
        );
        let ok = br#"{"ok": true, "bit_exact": true, "checks": [1, 2, 3]}"#;
        assert_eq!(
            verdict(ok, &[]),
            VerifyNews::Done(Level::Info, "verified: 3 compute checks, bit-exact".into())
        );
    }
}
