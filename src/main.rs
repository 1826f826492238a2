use arborist::cli::usage_error;
use clap::CommandFactory;

/// `eprintln!` that cannot panic: the startup errors on a full stderr exited with 101.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// Rust ignores SIGPIPE, so `arborist profile | head` would panic in println!: the default
/// ends the process quietly on a closed pipe, as for other CLI tools (not a session or a
/// model being written: `Cli::outlives_its_pipes`). A file-size limit
/// (`ulimit -f`) killed the process mid-write without a word, leaving the terminal raw:
/// SIGXFSZ ignored, the write fails with EFBIG and takes the path of a full disk.
#[cfg(unix)]
fn set_signals() {
    // SAFETY: called at the start of main, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() {
    arborist::runtime::single_heap_arena();
    #[cfg(unix)]
    set_signals();
    let cli = match arborist::cli::parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let args: Vec<String> = std::env::args().collect();
            let cmd = arborist::cli::Cli::command();
            let sub = usage_error::typed_subcommand(&cmd, &args);
            let tip = match e.get(clap::error::ContextKind::InvalidArg) {
                Some(clap::error::ContextValue::String(a)) => {
                    usage_error::tip(&args, sub.as_deref(), a)
                }
                _ => None,
            };
            errln!(
                "{}",
                usage_error::one_line(&e.render().to_string(), sub.as_deref(), tip.as_deref())
            );
            std::process::exit(2);
        }
    };
    #[cfg(unix)]
    if cli.outlives_its_pipes() {
        // SAFETY: no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    }
    if cli.threads == Some(0) {
        errln!("error: --threads 0: expected at least one compute thread");
        std::process::exit(1);
    }
    if let Some(n) = cli
        .threads
        .filter(|n| *n > arborist::runtime::max_threads())
    {
        errln!(
            "error: --threads {n}: this process may use {} core(s); more than {} compute threads (4 per core) only queue for them",
            arborist::runtime::cores(),
            arborist::runtime::max_threads()
        );
        std::process::exit(1);
    }
    if !cli.interactive() {
        arborist::cli::stderr_log::init();
    }
    let n = cli.compute_threads();
    if let Err(e) = arborist::runtime::set_compute_threads(n) {
        match cli.threads {
            Some(_) => {
                errln!("error: --threads {n}: cannot start that many compute threads: {e}")
            }
            None => {
                errln!("error: cannot start {n} compute threads (pass fewer with --threads): {e}")
            }
        }
        std::process::exit(1);
    }
    if let Err(e) = arborist::cli::run(cli) {
        errln!("{}", arborist::cli::error_line::error_line(&e));
        std::process::exit(1);
    }
}
