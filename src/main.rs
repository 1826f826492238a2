use clap::Parser;

fn main() {
    let cli = arborist::cli::Cli::parse();
    arborist::runtime::set_compute_threads(cli.threads);
    if let Err(e) = arborist::cli::run(cli) {
        // One line: the context chain joined with ": ", newlines folded.
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}
