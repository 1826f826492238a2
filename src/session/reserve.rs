//! Claiming a default session name before the model loads. Two runs started in the same
//! second both saw `STEM.yaml` free, loaded their models, and the second was refused when
//! it came to create the file. A run now claims the name at once with a marker created
//! exclusively (`.NAME.reserved`, holding its host and process id) and keeps it until the
//! session file exists; a name that is taken or claimed by a live process goes to the next
//! number.

use anyhow::{Context, Result};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A claimed session name; dropping it releases the claim (and the directory the claim
/// created, when nothing else was put in it).
#[derive(Debug)]
pub struct Reservation {
    marker: PathBuf,
    made_dir: Option<PathBuf>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
        if let Some(d) = &self.made_dir {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn marker(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(crate::runtime::hidden_prefix(&name, ".reserved"))
}

/// Whether the process that wrote a claim is gone (false where /proc cannot tell, or the
/// claim is unreadable: it is then left alone).
fn claim_is_stale(marker: &Path) -> bool {
    std::fs::read_to_string(marker).is_ok_and(|s| crate::runtime::owner_gone(s.trim()))
}

/// Removes the claims in `dir` whose process is gone, of any name: a run killed before
/// its session file existed (a Ctrl-C while a model loads, before the signal handlers are
/// set) left one that no later claim, made in a later second, would pass by.
fn sweep_stale(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        // `.reserved`, not `.yaml.reserved`: a long name's marker ends in a hash.
        if name.starts_with('.') && name.ends_with(".reserved") && claim_is_stale(&e.path()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The first of `dir/STEM.yaml`, `dir/STEM-2.yaml`, ... that no file takes and no live
/// process claims, claimed for this process.
pub fn claim(dir: &Path, stem: &str) -> Result<(PathBuf, Reservation)> {
    let made_dir = (!dir.exists()).then(|| dir.to_path_buf());
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    sweep_stale(dir);
    for n in 1..=100_000u32 {
        let path = match n {
            1 => dir.join(format!("{stem}.yaml")),
            n => dir.join(format!("{stem}-{n}.yaml")),
        };
        let m = marker(&path);
        // A claim left by a killed run goes: taken over when its name is free, and removed
        // beside the file it created (nothing else would remove it); a live one is passed by.
        if m.exists() && claim_is_stale(&m) {
            let _ = std::fs::remove_file(&m);
        }
        if path.exists() {
            continue;
        }
        // Errors name the session file, not the hidden marker, and take the directory made
        // for it away again.
        let fail = |e: std::io::Error| {
            if let Some(d) = &made_dir {
                let _ = std::fs::remove_dir(d);
            }
            anyhow::Error::new(e).context(format!("cannot create session {}", path.display()))
        };
        match OpenOptions::new().write(true).create_new(true).open(&m) {
            Ok(mut f) => {
                // Held from here, so a failed write or a lost race removes the marker.
                let mut r = Reservation {
                    marker: m,
                    made_dir: None,
                };
                if let Err(e) = f.write_all(crate::runtime::owner_tag().as_bytes()) {
                    drop(r);
                    return Err(fail(e));
                }
                // Created between the check and the claim: it is someone else's.
                if path.exists() {
                    continue;
                }
                r.made_dir = made_dir;
                return Ok((path, r));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(fail(e)),
        }
    }
    anyhow::bail!("{}: no free session name for {stem}", dir.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claimed_or_taken_name_goes_to_the_next_number() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sessions");
        let (a, ra) = claim(&dir, "7-m").unwrap();
        assert_eq!(a, dir.join("7-m.yaml"));
        assert!(dir.join(".7-m.yaml.reserved").exists());
        let (b, rb) = claim(&dir, "7-m").unwrap();
        assert_eq!(b, dir.join("7-m-2.yaml"));
        std::fs::write(&a, "made").unwrap();
        drop(ra);
        assert!(!dir.join(".7-m.yaml.reserved").exists());
        let (c, _rc) = claim(&dir, "7-m").unwrap();
        assert_eq!(c, dir.join("7-m-3.yaml"));
        drop(rb);
        // A claim whose process is gone is taken over.
        std::fs::write(dir.join(".7-m-2.yaml.reserved"), "4294967294").unwrap();
        let (e, _re) = claim(&dir, "7-m").unwrap();
        assert_eq!(e, dir.join("7-m-2.yaml"));
        let tag = std::fs::read_to_string(dir.join(".7-m-2.yaml.reserved")).unwrap();
        assert_eq!(tag, crate::runtime::owner_tag());
        // Another machine's claim (a shared filesystem) is never taken: its process cannot
        // be seen from here. This machine's dead one is.
        std::fs::write(dir.join(".7-m-4.yaml.reserved"), "node-17-4294967294").unwrap();
        let dead_here = crate::runtime::owner_tag_of(4294967294);
        std::fs::write(dir.join(".7-m-5.yaml.reserved"), &dead_here).unwrap();
        let (f, _rf) = claim(&dir, "7-m").unwrap();
        assert_eq!(f, dir.join("7-m-5.yaml"));
        // A dead claim beside a session file that exists goes when a claim passes by.
        let beside = dir.join(".7-m.yaml.reserved");
        std::fs::write(&beside, &dead_here).unwrap();
        let _ = claim(&dir, "7-m").unwrap();
        assert!(!beside.exists());
    }

    /// A claim of an earlier second whose run was killed before its file existed goes at
    /// the next claim in its directory; a live one, another machine's, and other hidden
    /// files stay.
    #[test]
    fn stale_claims_of_any_name_are_swept() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let dead = crate::runtime::owner_tag_of(4294967294);
        let put = |name: &str, tag: &str| {
            std::fs::write(dir.join(name), tag).unwrap();
            dir.join(name)
        };
        let stale = put(".5-m.yaml.reserved", &dead);
        let live = put(".6-m.yaml.reserved", &crate::runtime::owner_tag());
        let remote = put(".6-m-2.yaml.reserved", "node-17-4294967294");
        let other = put(".notes.txt", &dead);
        let (p, _r) = claim(dir, "9-m").unwrap();
        assert_eq!(p, dir.join("9-m.yaml"));
        assert!(!stale.exists());
        assert!(live.exists() && remote.exists() && other.exists());
    }

    // The error named the hidden marker (`cannot write sessions/.N-m.yaml.reserved`).
    // Nothing can be created in /proc, not even by root.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_claim_names_the_session_file() {
        let dir = Path::new("/proc/self");
        let e = format!("{:#}", claim(dir, "1-m").unwrap_err());
        assert!(
            e.starts_with("cannot create session /proc/self/1-m.yaml: "),
            "{e}"
        );
        assert!(!e.contains(".reserved"), "{e}");
    }

    #[test]
    fn a_directory_made_for_a_claim_goes_with_it_when_empty() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("sessions");
        let (_, r) = claim(&dir, "1-m").unwrap();
        drop(r);
        assert!(!dir.exists());
    }
}
