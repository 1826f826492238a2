//! Run-time choices shared by every command: device, dtype and compute threads.

use anyhow::{bail, Result};

/// Refuse a character or block device given as an input file: `/dev/zero` or
/// `/dev/urandom` would be read until memory ran out. Pipes are read (`<(zcat ...)`).
pub fn refuse_device(path: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let t = std::fs::metadata(path).map(|m| m.file_type());
    if t.is_ok_and(|t| t.is_char_device() || t.is_block_device()) {
        bail!(
            "{}: a device, not a file (it would be read without end)",
            path.display()
        );
    }
    Ok(())
}

/// Arborist's cache: $ARBORIST_CACHE, else $XDG_CACHE_HOME/arborist, else
/// ~/.cache/arborist (the bundled model's files, a read-only replay's log).
pub fn cache_root() -> std::path::PathBuf {
    use std::path::PathBuf;
    if let Some(p) = std::env::var_os("ARBORIST_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("arborist");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".cache").join("arborist"),
        None => std::env::temp_dir().join("arborist"),
    }
}

/// The cores this process may use (its CPU affinity and quota).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most `--threads` accepts: four per core (a few more than the cores can help a test
/// of thread-count independence; thousands only queue for the cores).
pub fn max_threads() -> usize {
    4 * cores()
}

/// Default compute threads: every core for a headless job; every core but one under the
/// terminal interface, which keeps one free for drawing and the agent.
pub fn default_threads(interactive: bool) -> usize {
    let cores = cores();
    if interactive {
        cores.saturating_sub(1).max(1)
    } else {
        cores
    }
}

/// Fix the number of compute threads for candle and gemm. Must run before any compute,
/// because both read the environment when their pools start. The rayon pool starts here,
/// so that threads the system refuses are an error, not a panic at the first parallel op.
pub fn set_compute_threads(n: usize) -> Result<(), rayon::ThreadPoolBuildError> {
    let n = n.max(1);
    // Safe in edition 2021; called at start-up before other threads exist.
    std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    // candle's element-wise ops run on a pool of spinning workers beside rayon's threads.
    // On 2 cores that worker took a core from gemm (forward 2646 vs 2893 tokens/s) and it
    // serialises ops called from several threads, as the data-parallel calibration does
    // (one-shot Wanda 2.35 vs 1.75 s). Unless the user chose a size, keep it empty:
    // element-wise ops then run on the calling thread; gemm, norms and RoPE still use rayon.
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
}

/// One malloc arena for the whole process (glibc only), unless the user chose a count with
/// `MALLOC_ARENA_MAX=N` or `GLIBC_TUNABLES=glibc.malloc.arena_max=N` (N ≥ 1, as glibc reads
/// them). With glibc's default of an arena per thread (up to 8 per core), memory freed in one
/// compute thread's arena cannot serve another thread's tensors, and a session's peak RSS
/// grew iteration by iteration (README, "One malloc arena"). Call first thing in main:
/// arenas already made are never removed.
pub fn single_heap_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let count = |v: &str| v.parse::<u64>().is_ok_and(|n| n >= 1);
        let chosen = std::env::var("MALLOC_ARENA_MAX").is_ok_and(|v| count(&v))
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| {
                t.split(':')
                    .filter_map(|kv| kv.strip_prefix("glibc.malloc.arena_max="))
                    .any(count)
            });
        if !chosen {
            // SAFETY: mallopt takes no pointers; it only sets malloc's parameter.
            let set = unsafe { libc::mallopt(libc::M_ARENA_MAX, 1) };
            debug_assert_eq!(set, 1, "mallopt(M_ARENA_MAX, 1) failed");
        }
    }
}

/// The heap's bytes in use and the bytes malloc holds for it (every arena plus direct
/// mappings; glibc's `mallinfo2`), or None off glibc. Held minus in use is freed memory
/// that malloc keeps: fragmentation, not data.
pub fn heap_bytes() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallinfo2 only reads malloc's counters.
        let m = unsafe { libc::mallinfo2() };
        Some(((m.uordblks + m.hblkhd) as u64, (m.arena + m.hblkhd) as u64))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// How many arenas malloc has (glibc's `malloc_info`), or None off glibc.
pub fn heap_arenas() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut buf: *mut libc::c_char = std::ptr::null_mut();
        let mut len: libc::size_t = 0;
        // SAFETY: open_memstream writes the buffer's address and length, which are read
        // only after fclose, and the buffer is freed once; malloc_info only writes to it.
        unsafe {
            let f = libc::open_memstream(&mut buf, &mut len);
            if f.is_null() {
                return None;
            }
            let rc = libc::malloc_info(0, f);
            libc::fclose(f);
            if buf.is_null() {
                return None;
            }
            let xml = std::ffi::CStr::from_ptr(buf).to_string_lossy().into_owned();
            libc::free(buf.cast());
            (rc == 0).then(|| xml.matches("<heap nr=").count())
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Give the heap's free pages back to the system (glibc's `malloc_trim`; nothing
/// elsewhere). glibc returns freed memory only from the top of the heap by itself, so a
/// large input read and dropped would otherwise stay resident for the whole run.
pub fn return_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free memory; it takes no pointers.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A "Name:   123 kB" field of a /proc file, in bytes (Linux; None elsewhere).
pub fn proc_kb_field(path: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// `f` over `items`, up to `width` at a time on rayon's threads, with each result handed to
/// `sink` in item order, one group at a time. Whatever `sink` sums is summed in the same
/// order at any width, so results do not depend on the thread count; at most `width`
/// results are alive at once.
pub fn map_in_order<T: Sync, R: Send>(
    items: &[T],
    width: usize,
    f: impl Fn(usize, &T) -> Result<R> + Sync,
    mut sink: impl FnMut(usize, R) -> Result<()>,
) -> Result<()> {
    use rayon::prelude::*;
    let width = width.max(1);
    for (g, group) in items.chunks(width).enumerate() {
        let base = g * width;
        let results: Vec<R> = if group.len() == 1 {
            vec![f(base, &group[0])?]
        } else {
            group
                .par_iter()
                .enumerate()
                .map(|(i, t)| f(base + i, t))
                .collect::<Result<_>>()?
        };
        for (i, r) in results.into_iter().enumerate() {
            sink(base + i, r)?;
        }
    }
    Ok(())
}

/// `map_in_order` collecting the results, in item order.
pub fn map_collect<T: Sync, R: Send>(
    items: &[T],
    width: usize,
    f: impl Fn(usize, &T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let mut out = Vec::with_capacity(items.len());
    map_in_order(items, width, f, |_, r| {
        out.push(r);
        Ok(())
    })?;
    Ok(out)
}

/// FNV-1a (64-bit): a stable, dependency-free hash for fingerprints and cache names
/// (std's hasher may change between Rust versions).
#[derive(Clone, Copy)]
pub struct Fnv1a(u64);

impl Fnv1a {
    pub fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn eat(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= *b as u64;
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn value(self) -> u64 {
        self.0
    }
}

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a::new()
    }
}

/// Whether `sig` was ignored when the process started (`nohup` ignores SIGHUP, a
/// non-interactive shell SIGINT for a `&` job): such a signal stays ignored, as Unix
/// programs leave it.
pub fn ignored_at_start(sig: i32) -> bool {
    // SAFETY: sigaction with a null new action only reads the current one.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(test)]
mod parallelism_tests {
    use super::*;

    #[test]
    fn map_in_order_hands_results_over_in_order_at_any_width() {
        let items: Vec<u64> = (0..11).collect();
        for width in [1, 2, 3, 16] {
            let mut seen = Vec::new();
            map_in_order(
                &items,
                width,
                |i, x| Ok((i, x * x)),
                |i, r| {
                    seen.push((i, r));
                    Ok(())
                },
            )
            .unwrap();
            let want: Vec<(usize, (usize, u64))> = items
                .iter()
                .map(|&x| (x as usize, (x as usize, x * x)))
                .collect();
            assert_eq!(seen, want, "width {width}");
        }
        let err = map_in_order(
            &items,
            4,
            |i, _| {
                anyhow::ensure!(i != 5, "item 5");
                Ok(())
            },
            |_, ()| Ok(()),
        );
        assert!(err.unwrap_err().to_string().contains("item 5"));
    }
}

/// `dir` and those of its ancestors that do not exist yet, deepest first: what creating
/// `dir` makes, to remove again (when still empty) if the write it was made for fails.
pub fn missing_dirs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    dir.ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(std::path::Path::to_path_buf)
        .collect()
}

/// This machine's name as a file name may carry it ([A-Za-z0-9._] kept, others `_`).
fn host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = (name.trim().chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// This process as the names of its claims and temporaries carry it: `HOST-PID`. On a
/// filesystem shared between machines, a process id alone named a live process of another
/// machine as gone (its claim was taken, its temporary removed while being written).
pub fn owner_tag() -> String {
    owner_tag_of(std::process::id())
}

/// The owner tag of process `pid` of this machine.
pub fn owner_tag_of(pid: u32) -> String {
    format!("{}-{pid}", host())
}

/// Whether the process an owner tag names is gone: false for another machine's process
/// (it cannot be told from here) and where /proc cannot tell; a bare `PID` (written before
/// tags had a host) is taken as this machine's.
pub fn owner_gone(tag: &str) -> bool {
    let (machine, pid) = match tag.rsplit_once('-') {
        Some((h, p)) => (Some(h), p),
        None => (None, tag),
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    machine.is_none_or(|h| h == host()) && process_gone(pid)
}

/// Entries of `parent` named `PREFIX<owner tag>` whose process no longer runs: temporaries
/// a killed process left. Empty where /proc cannot tell.
pub fn dead_process_leftovers(parent: &std::path::Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let tag = name.to_str()?.strip_prefix(prefix)?;
            owner_gone(tag).then(|| e.path())
        })
        .collect()
}

/// Set for a child `replay --verify` whose parent (the TUI's `V`) reads its progress: it
/// writes `PROGRESS_LINE` followed by `done/total` on stderr, a line per event.
pub const PROGRESS_LINES_ENV: &str = "ARBORIST_PROGRESS_LINES";
pub const PROGRESS_LINE: &str = "arborist-progress: ";

/// The longest file name most Linux file systems take, in bytes.
const NAME_MAX: usize = 255;
/// Room left after a hidden sibling's prefix for the owner tag (a 64-byte host name, `-`,
/// a process id).
const TAG_ROOM: usize = 64 + 1 + 10;

/// `.NAME` + `marker`: the prefix of a hidden sibling of `name` (a temporary, a claim).
/// A name too long to carry it within 255 bytes is cut at a character boundary and ends in
/// `~` and a hash of the whole name, so two long names with the same start still get
/// different siblings (a session name of 243 bytes or more was refused with "File name too
/// long", a name the file system would have taken).
pub fn hidden_prefix(name: &str, marker: &str) -> String {
    let whole = format!(".{name}{marker}");
    if whole.len() + TAG_ROOM <= NAME_MAX {
        return whole;
    }
    let mut h = Fnv1a::new();
    h.eat(name.as_bytes());
    let hash = format!("~{:016x}", h.value());
    let mut keep = NAME_MAX - TAG_ROOM - 1 - marker.len() - hash.len();
    while !name.is_char_boundary(keep) {
        keep -= 1;
    }
    format!(".{}{hash}{marker}", &name[..keep])
}

#[cfg(test)]
mod hidden_prefix_tests {
    use super::{hidden_prefix, NAME_MAX};

    #[test]
    fn short_names_are_kept_whole() {
        assert_eq!(hidden_prefix("s.yaml", ".new-"), ".s.yaml.new-");
    }

    #[test]
    fn long_names_fit_with_a_tag_and_stay_apart() {
        let dir = tempfile::tempdir().unwrap();
        let tag = format!("{}-4294967295", "h".repeat(64));
        // Two-byte characters, so that some cuts fall inside one.
        for len in [164, 165, 200, 243, 250] {
            let stem = "é".repeat(len / 2);
            let (a, b) = (format!("{stem}.yaml"), format!("{stem}x.yaml"));
            for marker in [".new-", ".reserved", ".partial-", ".replaced-"] {
                let (pa, pb) = (hidden_prefix(&a, marker), hidden_prefix(&b, marker));
                assert!(
                    pa.len() + tag.len() <= NAME_MAX,
                    "{len} {marker}: {}",
                    pa.len()
                );
                assert!(pa.starts_with('.') && pa.ends_with(marker));
                assert_ne!(pa, pb, "{len} {marker}");
                // The same name gives the same prefix: a later run finds its leftover.
                assert_eq!(pa, hidden_prefix(&a, marker));
                std::fs::write(dir.path().join(format!("{pa}{tag}")), "").unwrap();
            }
        }
    }
}

/// Whether process `pid` no longer runs; false where /proc cannot tell.
pub fn process_gone(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

/// The executable this process runs, for spawning a child of the same build. On Linux
/// `/proc/self/exe` still runs it after a rebuild has replaced or deleted the file (the
/// path `current_exe` returns then ends in " (deleted)" and cannot be spawned).
pub fn this_executable() -> std::io::Result<std::path::PathBuf> {
    let proc_exe = std::path::Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe()
}

#[cfg(all(test, target_os = "linux"))]
mod exe_tests {
    use super::this_executable;
    use std::process::Command;

    const STAGE: &str = "ARBORIST_EXE_TEST_STAGE";

    /// Runs one test of this binary, `exe`, in a child with the given stage.
    fn run_stage(exe: &std::path::Path, test: &str, stage: &str) -> std::process::Output {
        Command::new(exe)
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .env(STAGE, stage)
            .output()
            .unwrap()
    }

    /// A copy of this test binary deletes itself, then spawns `this_executable()`: the
    /// child must still start (a rebuild replaces the binary under a running TUI).
    #[test]
    fn spawns_itself_after_its_file_is_deleted() {
        let me = "runtime::exe_tests::spawns_itself_after_its_file_is_deleted";
        match std::env::var(STAGE).as_deref() {
            Ok("child") => println!("child ran"),
            Ok("deleter") => {
                std::fs::remove_file(std::env::current_exe().unwrap()).unwrap();
                let exe = this_executable().unwrap();
                let out = run_stage(&exe, me, "child");
                assert!(out.status.success(), "{out:?}");
                assert!(String::from_utf8_lossy(&out.stdout).contains("child ran"));
                println!("deleter ok");
            }
            _ => {
                let dir = tempfile::tempdir().unwrap();
                let copy = dir.path().join("copy");
                std::fs::copy(std::env::current_exe().unwrap(), &copy).unwrap();
                let out = run_stage(&copy, me, "deleter");
                assert!(!copy.exists(), "the copy should have deleted itself");
                let text = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success() && text.contains("deleter ok"),
                    "{out:?}"
                );
            }
        }
    }
}

thread_local! {
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`, a call into a third-party parser that asserts on malformed input, turning a
/// panic into its message without the panic's report on stderr (the caller says in one
/// line which file is malformed).
pub fn catch_quietly<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| q.get()) {
                tracing::debug!("caught: {info}");
            } else {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| panic_text(&p))
}

/// A panic's message, when it has one.
pub fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}
