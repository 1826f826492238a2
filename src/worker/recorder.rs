//! The session file's writer on a thread of its own: a slow disk (a network home directory,
//! a busy journal) delays the record of an event, never the screen. Writes are acknowledged
//! in order, one acknowledgement per event, so the driver can move the machine on exactly
//! when the event it took is on disk.

use anyhow::{bail, Result};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::session::file::SessionWriter;
use crate::session::Event;

/// Where the recorder's thread writes: the session file, or a test's stand-in.
pub trait Append: Send + 'static {
    fn append(&mut self, event: &Event) -> Result<()>;
    fn path(&self) -> &std::path::Path;
}

impl Append for SessionWriter {
    fn append(&mut self, event: &Event) -> Result<()> {
        SessionWriter::append(self, event)
    }
    fn path(&self) -> &std::path::Path {
        SessionWriter::path(self)
    }
}

pub struct Recorder {
    tx: Option<Sender<Event>>,
    acks: Receiver<Result<(), String>>,
    thread: Option<JoinHandle<()>>,
    path: PathBuf,
    /// Events sent, and acknowledged, so far: an event's ticket is `sent` after sending it.
    sent: u64,
    acked: u64,
    /// The first failed write's message (it says what the file still holds).
    failure: Option<String>,
}

impl Recorder {
    pub fn spawn(mut writer: impl Append) -> Recorder {
        let path = writer.path().to_path_buf();
        let (tx, rx) = channel::<Event>();
        let (ack_tx, acks) = channel();
        let thread = std::thread::Builder::new()
            .name("session-writer".into())
            .spawn(move || {
                for ev in rx {
                    let done = writer.append(&ev).map_err(|e| format!("{e:#}"));
                    if ack_tx.send(done).is_err() {
                        break;
                    }
                }
            })
            .expect("the session writer thread starts");
        Recorder {
            tx: Some(tx),
            acks,
            thread: Some(thread),
            path,
            sent: 0,
            acked: 0,
            failure: None,
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Queue `ev` for writing; its ticket for `wait_for`.
    pub fn send(&mut self, ev: &Event) -> Result<u64> {
        if self.failed() {
            bail!(
                "session {} is no longer written after a failed write; it holds every event before that (--resume continues it)",
                self.path.display()
            );
        }
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(ev.clone()).is_ok());
        if !sent {
            let e = format!("the writer of session {} has stopped", self.path.display());
            self.failure.get_or_insert(e.clone());
            bail!(e);
        }
        self.sent += 1;
        Ok(self.sent)
    }

    /// Wait up to `timeout` until the write of `ticket` (and every one before it) is
    /// acknowledged: `Some(Ok)` written, `Some(Err)` a write up to it failed (the first
    /// failure's message), `None` not yet.
    pub fn wait_for(&mut self, ticket: u64, timeout: Duration) -> Option<Result<()>> {
        // No deadline at all for a wait as long as `Duration::MAX`.
        let until = Instant::now().checked_add(timeout);
        while self.acked < ticket {
            let ack = match until {
                Some(t) => self
                    .acks
                    .recv_timeout(t.saturating_duration_since(Instant::now())),
                None => self.acks.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match ack {
                Ok(done) => {
                    self.acked += 1;
                    if let Err(e) = done {
                        self.failure.get_or_insert(e);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    let e = format!("the writer of session {} has stopped", self.path.display());
                    self.failure.get_or_insert(e);
                    break;
                }
            }
        }
        Some(match &self.failure {
            Some(e) => Err(anyhow::anyhow!("{e}")),
            None => Ok(()),
        })
    }

    /// Take the acknowledgements already in: a failed write of a derived event is said
    /// once, when it is seen, rather than at the next event.
    pub fn check(&mut self) -> Result<()> {
        let (before, upto) = (self.failed(), self.sent);
        // The failed acknowledgement may be taken while later ones are still to come.
        let _ = self.wait_for(upto, Duration::ZERO);
        match (&self.failure, before) {
            (Some(e), false) => Err(anyhow::anyhow!("{e}")),
            _ => Ok(()),
        }
    }

    /// The ticket of the last event sent.
    pub fn last_ticket(&self) -> u64 {
        self.sent
    }

    /// Wait until every event sent is written.
    pub fn flush(&mut self) -> Result<()> {
        let upto = self.sent;
        self.wait_for(upto, Duration::MAX)
            .expect("a wait without a deadline ends with an answer")
    }

    /// As `flush`, but a failure already reported is not an error again.
    pub fn flush_unreported(&mut self) -> Result<()> {
        let before = self.failed();
        match self.flush() {
            Err(e) if !before => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for Recorder {
    /// Every queued event is written before the file is let go (its lock with it).
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::file::read;
    use std::path::Path;

    fn example() -> crate::session::file::SessionLog {
        let p = concat!(env!("CARGO_MANIFEST_DIR"), "/sessions/example.yaml");
        read(Path::new(p)).unwrap()
    }

    // Events queued and never waited for are written before the file is let go, in order.
    #[test]
    fn queued_events_are_written_in_order_before_the_file_is_let_go() {
        let log = example();
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("s.yaml");
        let events: Vec<Event> = log.entries[..5].iter().map(|e| e.event.clone()).collect();
        {
            let mut r = Recorder::spawn(SessionWriter::create(&path, &log.header).unwrap());
            let tickets: Vec<u64> = events.iter().map(|e| r.send(e).unwrap()).collect();
            assert_eq!(tickets, vec![1, 2, 3, 4, 5]);
            r.wait_for(2, Duration::from_secs(60)).unwrap().unwrap();
        }
        let back = read(&path).unwrap();
        let kinds = |e: &[Event]| e.iter().map(|e| e.kind()).collect::<Vec<_>>();
        let got: Vec<Event> = back.entries.iter().map(|e| e.event.clone()).collect();
        assert_eq!(kinds(&got), kinds(&events));
        assert_eq!(
            back.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
    }

    // A failed write answers its own ticket and every later one with the first failure,
    // and `check` says it once.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_the_answer_from_then_on() {
        let log = example();
        let mut r = Recorder::spawn(SessionWriter::on_full_device().unwrap());
        let first = r.send(&log.entries[0].event).unwrap();
        let e = r.wait_for(first, Duration::from_secs(60)).unwrap();
        assert!(format!("{:#}", e.unwrap_err()).contains("No space left"));
        assert!(r.failed());
        assert!(r.check().is_ok(), "said twice");
        let e = format!("{:#}", r.send(&log.entries[1].event).unwrap_err());
        assert!(e.contains("no longer written"), "{e}");
    }
}
