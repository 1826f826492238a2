//! clap's usage errors as one line, like every other error of the tool.
//!
//! clap prints an error, then its items, a tip, the usage and a pointer to --help, over up to
//! ten lines; a script's log or a CI summary keeps only the first. This keeps the error, its
//! items and tips on one line and points at the subcommand's help.

/// One line from clap's rendered error: the error's paragraph with its indented items joined
/// by ", ", then each of clap's `tip:`s (or `tip`, ours, in their place), then where the
/// help is. `sub` is the subcommand typed, if any.
pub fn one_line(rendered: &str, sub: Option<&str>, tip: Option<&str>) -> String {
    let mut paragraphs = rendered
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty());
    let mut line = String::new();
    if let Some(first) = paragraphs.next() {
        let mut parts = first.lines().map(str::trim).filter(|l| !l.is_empty());
        line.push_str(parts.next().unwrap_or(""));
        for (i, item) in parts.enumerate() {
            line.push_str(if i == 0 && line.ends_with(':') {
                " "
            } else {
                ", "
            });
            line.push_str(item);
        }
    }
    if let Some(tip) = tip {
        line.push_str("; ");
        line.push_str(tip);
    } else {
        for tip in paragraphs.filter(|p| p.starts_with("tip:")) {
            line.push_str("; ");
            line.push_str(&tip.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    let help = match sub {
        Some(s) => format!("arborist {s} --help"),
        None => "arborist --help".to_string(),
    };
    format!("{line} (see `{help}`)")
}

/// Our tip for a usage error clap's own tip gets wrong, if there is one. `unexpected` is the
/// argument clap refused.
/// - `run --resume S.yaml` is what people type, but `--resume` is a switch: clap said only
///   that the file was unexpected.
/// - `replay --session S.yaml` (or `export`): the session is their first argument, and clap
///   suggested `-- --session`, which reads "--session" as the file.
pub fn tip(args: &[String], sub: Option<&str>, unexpected: &str) -> Option<String> {
    if unexpected == "--session" {
        let sub = sub.filter(|s| ["replay", "export"].contains(s))?;
        return Some(format!(
            "tip: {sub} takes the session file as its first argument: `arborist {sub} FILE`"
        ));
    }
    let at = args.iter().position(|a| a == "--resume")?;
    let next = args.get(at + 1)?;
    (next == unexpected && !next.starts_with('-')).then(|| {
        format!(
            "tip: --resume continues the session file named by --session: `arborist run --session {next} --resume`"
        )
    })
}

/// The first argument that names one of `cli`'s subcommands.
pub fn typed_subcommand(cli: &clap::Command, args: &[String]) -> Option<String> {
    let names: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
    args.iter()
        .skip(1)
        .find(|a| names.contains(&a.as_str()))
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_tips_and_help_share_one_line() {
        let missing = "error: the following required arguments were not provided:\n  \
             --method <METHOD>\n  --out <OUT>\n\nUsage: arborist prune --model <MODEL> \
             --method <METHOD> --out <OUT>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(missing, Some("prune"), None),
            "error: the following required arguments were not provided: --method <METHOD>, \
             --out <OUT> (see `arborist prune --help`)"
        );
        let value = "error: invalid value 'wandaa' for '--method <METHOD>'\n  [possible values: \
             magnitude, wanda]\n\n  tip: a similar value exists: 'wanda'\n\nFor more \
             information, try '--help'.\n";
        assert_eq!(
            one_line(value, Some("prune"), None),
            "error: invalid value 'wandaa' for '--method <METHOD>', [possible values: \
             magnitude, wanda]; tip: a similar value exists: 'wanda' (see `arborist prune \
             --help`)"
        );
        let unknown = "error: unrecognized subcommand 'frob'\n\nUsage: arborist [OPTIONS] \
             [COMMAND]\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(unknown, None, None),
            "error: unrecognized subcommand 'frob' (see `arborist --help`)"
        );
    }

    #[test]
    fn a_file_after_resume_or_a_session_flag_gets_the_command_meant() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let typed = args(&["arborist", "run", "--resume", "s/a.yaml", "--headless"]);
        assert_eq!(
            tip(&typed, Some("run"), "s/a.yaml").as_deref(),
            Some(
                "tip: --resume continues the session file named by --session: \
                 `arborist run --session s/a.yaml --resume`"
            )
        );
        // Only for the argument refused, and never for a flag after --resume.
        assert_eq!(tip(&typed, Some("run"), "--headless"), None);
        let flag = args(&["arborist", "run", "--resume", "--headles"]);
        assert_eq!(tip(&flag, Some("run"), "--headles"), None);
        assert_eq!(
            tip(&args(&["arborist", "run", "x.yaml"]), Some("run"), "x.yaml"),
            None
        );
        let replay = args(&["arborist", "replay", "--session", "s.yaml"]);
        assert_eq!(
            tip(&replay, Some("replay"), "--session").as_deref(),
            Some(
                "tip: replay takes the session file as its first argument: `arborist replay FILE`"
            )
        );
        assert_eq!(tip(&replay, Some("eval"), "--session"), None);
    }

    #[test]
    fn our_tip_replaces_claps() {
        let rendered =
            "error: unexpected argument '--session' found\n\n  tip: to pass '--session' \
             as a value, use '-- --session'\n\nUsage: arborist replay <SESSION>\n";
        assert_eq!(
            one_line(rendered, Some("replay"), Some("tip: ours")),
            "error: unexpected argument '--session' found; tip: ours (see `arborist replay --help`)"
        );
    }

    #[test]
    fn the_subcommand_is_the_first_argument_naming_one() {
        let cmd = clap::Command::new("arborist")
            .arg(clap::Arg::new("threads").long("threads"))
            .subcommand(clap::Command::new("eval"))
            .subcommand(clap::Command::new("prune"));
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let sub = typed_subcommand(
            &cmd,
            &args(&["arborist", "--threads", "2", "prune", "eval"]),
        );
        assert_eq!(sub.as_deref(), Some("prune"));
        assert_eq!(typed_subcommand(&cmd, &args(&["arborist", "frob"])), None);
    }
}
