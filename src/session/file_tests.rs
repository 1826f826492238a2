use super::*;

/// A session written before end markers, `grad_average` and the per-layer back-off.
const EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sessions/legacy-abs-of-mean.yaml"
);

/// The example session rewritten by this build's writer (documents with end markers).
fn rewritten(dir: &Path) -> (PathBuf, SessionLog) {
    let old = read(Path::new(EXAMPLE)).unwrap();
    let path = dir.join("s.yaml");
    let mut w = SessionWriter::create(&path, &old.header).unwrap();
    for e in &old.entries {
        w.append(&e.event).unwrap();
    }
    (path, old)
}

fn cut(path: &Path, len: usize) -> PathBuf {
    let text = std::fs::read(path).unwrap();
    let out = path.with_extension(format!("cut{len}.yaml"));
    std::fs::write(&out, &text[..len]).unwrap();
    out
}

/// Keys added after a header was written read as what Arborist then ran with; any
/// other missing key is still a cut or edited header.
#[test]
fn old_headers_read_with_the_options_they_ran_with() {
    use crate::eval::mmlu_prompt::MmluPrompt;
    use crate::profile::grad_average::GradAverage;
    let old = read(Path::new(EXAMPLE)).unwrap();
    assert_eq!(old.header.options.grad_average, GradAverage::AbsOfMean);
    let dir = tempfile::tempdir().unwrap();
    let mut header = old.header.clone();
    header.options = RunOptions {
        probe: Some(super::super::options::ProbeSpec {
            kind: "mmlu".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let path = dir.path().join("new.yaml");
    SessionWriter::create(&path, &header).unwrap();
    let new = read(&path).unwrap().header.options;
    assert_eq!(new.grad_average, GradAverage::MeanOfAbs);
    assert_eq!(new.probe.unwrap().mmlu_prompt, MmluPrompt::Hendrycks);
    let text = std::fs::read_to_string(&path).unwrap();
    let without = |keys: &[&str]| {
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| !keys.iter().any(|k| l.trim_start().starts_with(k)))
            .collect();
        let p = dir.path().join(format!("without-{}.yaml", keys.join("-")));
        std::fs::write(&p, kept.join("\n") + "\n").unwrap();
        read(&p)
    };
    let o = without(&["grad_average:", "mmlu_prompt:", "stream_layers:"])
        .unwrap()
        .header
        .options;
    assert_eq!(o.grad_average, GradAverage::AbsOfMean);
    assert_eq!(o.probe.unwrap().mmlu_prompt, MmluPrompt::LmEval);
    let e = without(&["grad_windows:"]).err().unwrap().to_string();
    assert!(e.contains("`options.grad_windows` is missing"), "{e}");
}

#[test]
fn files_without_end_markers_still_read() {
    let log = read(Path::new(EXAMPLE)).unwrap();
    assert!(!log.torn_tail);
    assert!(log.entries.len() > 50, "{}", log.entries.len());
    assert_eq!(
        log.valid_len,
        std::fs::metadata(EXAMPLE).unwrap().len(),
        "every document of the example is complete"
    );
}

#[test]
fn a_rewritten_session_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("\n...\n"));
    let log = read(&path).unwrap();
    assert!(!log.torn_tail);
    assert_eq!(log.header, old.header);
    assert_eq!(log.entries.len(), old.entries.len());
    for (a, b) in log.entries.iter().zip(&old.entries) {
        assert_eq!(a.event, b.event);
    }
    assert_eq!(log.valid_len, text.len() as u64);
}

// A write that fails before the first event promises no resume; after one, it says the
// file holds every event before it.
#[test]
fn a_failed_write_says_what_the_file_holds() {
    let full = || std::io::Error::from_raw_os_error(28);
    let p = Path::new("s.yaml");
    let before = failed_write(p, &full(), 0, Ok(()));
    assert_eq!(
        before,
        "cannot write session s.yaml: No space left on device (os error 28); it holds its header and no event"
    );
    let after = failed_write(p, &full(), 3, Ok(()));
    assert!(
        after.ends_with("it holds every event before this one (--resume continues it)"),
        "{after}"
    );
}

// A header cut anywhere is refused (resuming it would run with default options and
// glue the next document onto the cut line), in both file generations.
#[test]
fn a_cut_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let header_end = text[4..].find("\n---\n").unwrap() + 5;
    let legacy = std::fs::read_to_string(EXAMPLE).unwrap();
    let legacy_end = legacy[4..].find("\n---\n").unwrap() + 5;
    let at = |t: &str, key: &str| t.find(key).unwrap() + key.len();
    let cases = [
        // New file: mid-line, inside the end marker, and at a line end (which reads
        // as an older file, whose fields are then checked).
        (cut(&path, at(&text, "calib_windows: ")), "cut off"),
        (cut(&path, header_end - 2), "cut off"),
        (
            cut(&path, at(&text, "calib_windows: 8\n")),
            "`options.eval_windows` is missing",
        ),
    ];
    for (p, want) in &cases {
        let err = format!("{:#}", read(p).err().expect("a cut header must be refused"));
        assert!(err.contains("header document is incomplete"), "{err}");
        assert!(err.contains(want), "{err}");
    }
    // An older file cut at a line end: the missing field is named.
    let old = dir.path().join("old.yaml");
    std::fs::write(&old, &legacy[..at(&legacy, "calib_windows: 8\n")]).unwrap();
    let err = format!("{:#}", read(&old).err().unwrap());
    assert!(err.contains("`options.eval_windows` is missing"), "{err}");
    // An older file cut mid-line.
    std::fs::write(&old, &legacy[..legacy_end - 3]).unwrap();
    let err = format!("{:#}", read(&old).err().unwrap());
    assert!(err.contains("cut off"), "{err}");
    // Cut at a line end in its data hashes, which follow the options: a build that writes
    // `options.agent.max_tokens` writes them and the marker (chaos audit: read as an older
    // file, and resumed unchecked against the texts).
    let mut header = read(Path::new(EXAMPLE)).unwrap().header;
    header.data = [("calib", "fnv1a64:1"), ("eval", "fnv1a64:2")]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
    let hashed = dir.path().join("hashed.yaml");
    drop(SessionWriter::create(&hashed, &header).unwrap());
    let with_data = std::fs::read_to_string(&hashed).unwrap();
    assert!(read(&hashed).is_ok());
    let data = with_data.find("\ndata:\n").unwrap();
    for key in ["\ndata:\n", "\n  eval: "] {
        let at = data + with_data[data..].find(key).unwrap() + 1;
        let err = format!("{:#}", read(&cut(&hashed, at)).err().expect("refused"));
        assert!(
            err.contains("the header document is incomplete: `data` is missing, and the end marker the build that wrote it writes: it is cut off"),
            "{key}: {err}"
        );
    }
    // A whole header that lost only its end marker reads as an older file.
    let unmarked = cut(&hashed, with_data.len() - 4);
    assert!(read(&unmarked).unwrap().entries.is_empty());
    assert!(!std::fs::read_to_string(&unmarked).unwrap().contains("..."));
    // A header whose options were cut away to an empty `options:` (a null, which the
    // defaults would fill in), in either generation.
    for (t, end) in [(&text, "\n...\n"), (&legacy, "")] {
        let cut_at = t.find("\noptions:").unwrap() + "\noptions:\n".len();
        std::fs::write(&old, format!("{}{end}", &t[..cut_at])).unwrap();
        let err = format!("{:#}", read(&old).err().expect("empty options are refused"));
        assert!(err.contains("`options` is missing"), "{err}");
    }
    // A complete older header alone is a session that has not started.
    std::fs::write(&old, &legacy[..legacy_end]).unwrap();
    assert!(read(&old).unwrap().entries.is_empty());
}

// The last event cut at a line end, where it may still parse (a list cut short, an
// optional field lost), is a torn write: dropped, and the file resumes before it.
#[test]
fn a_last_event_cut_at_a_line_end_is_torn() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let starts: Vec<usize> = text.match_indices("\n---\n").map(|(i, _)| i + 1).collect();
    let mut parsing_cuts = 0;
    for (k, w) in starts.windows(2).enumerate().take(12) {
        let (a, b) = (w[0], w[1]);
        for (i, _) in text[a..b - 5].match_indices('\n').skip(1) {
            let end = a + i + 1;
            if serde_yaml::from_str::<Entry>(&text[a + 4..end]).is_err() {
                continue;
            }
            parsing_cuts += 1;
            let log = read(&cut(&path, end)).unwrap();
            assert!(log.torn_tail, "event {} cut at byte {end}", k + 1);
            assert_eq!(log.entries.len(), k, "event {} cut at byte {end}", k + 1);
            assert_eq!(log.valid_len, a as u64);
        }
    }
    assert!(parsing_cuts > 0, "no cut parses: the test checks nothing");
}

// A crash can also leave the next document's first dashes, a tail of zeros, or a cut
// inside a character: the complete events before it all stay.
#[test]
fn dashes_zeros_and_a_cut_character_after_a_whole_event_keep_it() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = rewritten(dir.path());
    let whole = std::fs::read(&path).unwrap();
    let n = old.entries.len();
    let with = |tail: &[u8]| {
        let out = dir.path().join("t.yaml");
        std::fs::write(&out, [&whole[..], tail].concat()).unwrap();
        read(&out).unwrap()
    };
    for tail in [&b"-"[..], b"--", b"---", &[0u8; 4096], b"---\nseq: 9\0\0"] {
        let log = with(tail);
        assert!(log.torn_tail, "{tail:?}");
        let note = log.left_out_note(&dir.path().join("t.yaml")).unwrap();
        assert!(
            note.contains(&format!(
                "its last document is incomplete ({} bytes: cut off by a crash",
                tail.len()
            )),
            "{note}"
        );
        assert_eq!(log.entries.len(), n, "{tail:?}");
        assert_eq!(log.valid_len, whole.len() as u64, "{tail:?}");
    }
    // Text after the last end marker was added, not cut off: the event stays, the text is
    // left out and said to be appended (it used to drop the whole last event as torn).
    assert!(!with(b"").appended);
    assert_eq!(with(b"").left_out_note(&dir.path().join("t.yaml")), None);
    let blank = with(b"\n  \n");
    assert!(!blank.appended && !blank.torn_tail && blank.entries.len() == n);
    for junk in [&b"garbage here\n"[..], b"garbage", b"x: 1\n"] {
        let log = with(junk);
        assert!(log.torn_tail && log.appended, "{junk:?}");
        // Every reader says it in these words (the TUI's replay called it a crash's).
        let out = dir.path().join("t.yaml");
        assert_eq!(
            log.left_out_note(&out).unwrap(),
            format!(
                "{}: {} byte(s) after its last document's end marker are not a document (added by hand?) and are left out",
                out.display(),
                junk.len()
            )
        );
        assert_eq!(log.entries.len(), n, "{junk:?}");
        assert_eq!(log.valid_len, whole.len() as u64, "{junk:?}");
    }
    for cut_char in [
        &b"---\nseq: 99\nnote: caf\xc3"[..],
        b"---\nseq: 99\nnote: caf\xc3\0\0\0",
    ] {
        let log = with(cut_char);
        assert!(log.torn_tail && log.entries.len() == n, "{cut_char:?}");
    }
    // The header alone, then the first dashes of the first event.
    let header_end = whole.windows(5).position(|w| w == b"\n---\n").unwrap() + 1;
    let out = dir.path().join("h.yaml");
    std::fs::write(&out, [&whole[..header_end], b"--"].concat()).unwrap();
    let log = read(&out).unwrap();
    assert!(log.torn_tail && log.entries.is_empty());
    std::fs::write(&out, [&whole[..header_end], b"junk\n"].concat()).unwrap();
    let log = read(&out).unwrap();
    assert!(log.appended && log.entries.is_empty());
    assert_eq!(log.valid_len, header_end as u64);
    // Bad bytes inside the file are damage, named by position; an empty file says so.
    let mut bad = whole.clone();
    bad[header_end + 10] = 0xff;
    std::fs::write(&out, &bad).unwrap();
    let e = read(&out).err().unwrap().to_string();
    assert!(
        e.contains(&format!("byte {} is not UTF-8", header_end + 10)),
        "{e}"
    );
    std::fs::write(&out, b"").unwrap();
    let e = read(&out).err().unwrap().to_string();
    assert!(e.contains("empty") && e.contains("delete it"), "{e}");
}

// The file appears with its whole header (linked into place, locked from the start);
// an existing one is never replaced.
#[test]
fn a_new_session_file_appears_whole_and_locked() {
    let dir = tempfile::tempdir().unwrap();
    let old = read(Path::new(EXAMPLE)).unwrap();
    let path = dir.path().join("s.yaml");
    // What a creation killed before its link left is removed.
    std::fs::write(dir.path().join(".s.yaml.new-4294967294"), "---\n").unwrap();
    let w = SessionWriter::create(&path, &old.header).unwrap();
    let log = read(&path).unwrap();
    assert!(log.entries.is_empty() && !log.torn_tail);
    assert_eq!(log.header, old.header);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(names, ["s.yaml"], "no temporary left");
    assert!(lock(&path).is_err(), "the writer holds the lock");
    let e = SessionWriter::create(&path, &old.header).err().unwrap();
    assert!(e.to_string().contains("pass --resume"), "{e}");
    drop(w);
    lock(&path).unwrap();
}

// A failed write (here /dev/full: no space) ends the writing: the next event is
// refused rather than written after the one that is missing.
#[cfg(target_os = "linux")]
#[test]
fn after_a_failed_write_nothing_more_is_written() {
    let mut w = SessionWriter::on_full_device().expect("/dev/full opens on Linux");
    w.seq = 3;
    let ev = Event::StopRequested { by: "test".into() };
    let e = format!("{:#}", w.append(&ev).unwrap_err());
    assert!(
        e.starts_with("cannot write session /dev/full: No space left"),
        "{e}"
    );
    assert!(
        e.contains("--resume continues it") && w.failed() && w.seq == 3,
        "{e}"
    );
    // /dev/full cannot be cut either, but took nothing: no torn event is claimed.
    assert!(
        e.ends_with("; it holds every event before this one (--resume continues it)"),
        "{e}"
    );
    let e = format!("{:#}", w.append(&ev).unwrap_err());
    assert!(e.contains("no longer written after a failed write"), "{e}");
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = rewritten(dir.path());
    let first = lock(&path).unwrap();
    let err = format!("{:#}", lock(&path).expect_err("a second lock must fail"));
    assert!(err.contains("open in another arborist process"), "{err}");
    drop(first);
    drop(lock(&path).expect("free again once the first is closed"));
    // A session being created is held by its writer as well.
    let fresh = dir.path().join("fresh.yaml");
    let w = SessionWriter::create(&fresh, &old.header).unwrap();
    assert!(lock(&fresh).is_err());
    drop(w);
    drop(lock(&fresh).unwrap());
}

// A bad value inside an event: serde_yaml's own position is within the document, at its
// start (a tagged enum is read whole first); the error gives the document's line in the
// file, its event and the field instead.
#[test]
fn a_bad_value_inside_an_event_names_the_event_and_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let at = text.find("\n    ppl: ").unwrap() + "\n    ppl: ".len();
    let end = at + text[at..].find('\n').unwrap();
    std::fs::write(&path, format!("{}zz{}", &text[..at], &text[end..])).unwrap();
    let starts: Vec<usize> = text.match_indices("\n---\n").map(|(i, _)| i + 1).collect();
    // Event documents only (the header, document 0, is not preceded by a newline).
    let k = starts.iter().filter(|s| **s < at).count() - 1;
    let first = text[..starts[k]].matches('\n').count() + 1;
    let err = format!("{:#}", read(&path).err().expect("must be refused"));
    let kind = text[starts[k]..].split("\n  event: ").nth(1).unwrap();
    let kind = &kind[..kind.find('\n').unwrap()];
    assert!(
        err.contains(&format!(
            "event document {} (from line {first}, `{kind}`) is invalid: invalid type: string \"zz\", expected f64",
            k + 1
        )),
        "{err}"
    );
    assert!(err.ends_with("expected f64 at event.eval.ppl"), "{err}");
    // A mapping where the number belongs: serde's message quotes no value.
    std::fs::write(&path, format!("{}{{x: 1}}{}", &text[..at], &text[end..])).unwrap();
    let err = format!("{:#}", read(&path).err().expect("must be refused"));
    assert!(
        err.ends_with("is invalid: invalid type: map, expected f64 at event.eval.ppl"),
        "{err}"
    );
    // A missing field: the mapping that lacks it.
    let line_start = text[..at].rfind('\n').unwrap();
    std::fs::write(&path, format!("{}{}", &text[..line_start], &text[end..])).unwrap();
    let err = format!("{:#}", read(&path).err().expect("must be refused"));
    assert!(
        err.ends_with("is invalid: missing field `ppl` in event.eval"),
        "{err}"
    );
    // A syntax error keeps serde_yaml's positions, as lines of the file.
    let broken = format!("{}[1, 2{}", &text[..at], &text[end..]);
    std::fs::write(&path, broken).unwrap();
    let err = format!("{:#}", read(&path).err().expect("must be refused"));
    let line = text[..at].matches('\n').count() + 1;
    assert!(err.contains(&format!("at line {line} column")), "{err}");
}

// A whole last document (end marker and all) that does not parse is reported, not
// dropped as if a crash had cut it; without its marker it is a torn write.
#[test]
fn a_whole_bad_last_document_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let bad = "---\nseq: 999\nunix_ms: 1\nevent:\n  event: bogus_kind\n";
    std::fs::write(&path, format!("{text}{bad}...\n")).unwrap();
    let err = format!("{:#}", read(&path).err().expect("must be refused"));
    assert!(
        err.contains("is invalid") && err.contains("bogus_kind"),
        "{err}"
    );
    std::fs::write(&path, format!("{text}{bad}")).unwrap();
    let log = read(&path).unwrap();
    assert!(log.torn_tail);
    assert_eq!(log.entries.len(), old.entries.len());
}

// A repeated or skipped seq (a hand edit, two writers) is named, not replayed.
#[test]
fn events_out_of_sequence_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.rfind("\n---\n").unwrap() + 1;
    std::fs::write(&path, format!("{text}{}", &text[last..])).unwrap();
    let err = format!("{:#}", read(&path).err().expect("a repeated seq must fail"));
    assert!(err.contains("expected"), "{err}");
    assert!(err.contains("has seq"), "{err}");
}

// A creation that fails once it has made the file's directories (here its name is one
// byte longer than the file system takes) removes them again, and its temporary.
#[test]
fn a_failed_creation_leaves_no_directory() {
    let dir = tempfile::tempdir().unwrap();
    let old = read(Path::new(EXAMPLE)).unwrap();
    let name = format!("{}.yaml", "s".repeat(251));
    let path = dir.path().join("a/b").join(&name);
    let e = SessionWriter::create(&path, &old.header).err().unwrap();
    assert!(e.to_string().contains("cannot create session"), "{e}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A key no event type has is read past, and named: a mistyped edit (`acceptd`) or a
/// field of a newer version is not lost without a word. The recorded sessions have none.
#[test]
fn unknown_event_fields_are_named() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("sessions/example.yaml");
    for file in [Path::new(EXAMPLE), &example] {
        let log = read(file).unwrap();
        assert_eq!(
            log.unknown_fields,
            Vec::<String>::new(),
            "{}",
            file.display()
        );
        assert_eq!(log.unknown_note(file), None);
    }
    let dir = tempfile::tempdir().unwrap();
    let (path, old) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    // The first guard's decision, mistyped; and a key inside the baseline's first layer.
    let guard = text.find("event: guard").unwrap();
    let edited = format!(
        "{}event: guard\n  acceptd: false{}",
        &text[..guard],
        &text[guard + 12..]
    );
    let row = edited.find("  - name: ").unwrap();
    let edited = format!(
        "{}  - colour: red\n    name: {}",
        &edited[..row],
        &edited[row + 10..]
    );
    std::fs::write(&path, &edited).unwrap();
    let log = read(&path).unwrap();
    assert_eq!(log.entries.len(), old.entries.len());
    let line = |at: usize| edited[..at].matches('\n').count() + 1;
    let doc_of = |at: usize| edited[..at].matches("\n---\n").count();
    let row_at = edited.find("  - colour").unwrap();
    let guard_at = edited.find("event: guard").unwrap();
    let start = |at: usize| line(edited[..at].rfind("\n---\n").unwrap() + 1);
    assert_eq!(
        log.unknown_fields,
        [
            format!(
                "`event.layers[0].colour` in event document {} (from line {}, `baseline`)",
                doc_of(row_at),
                start(row_at)
            ),
            format!(
                "`event.acceptd` in event document {} (from line {}, `guard`)",
                doc_of(guard_at),
                start(guard_at)
            ),
        ]
    );
    let note = log.unknown_note(&path).unwrap();
    assert!(
        note.starts_with(&format!("{}: 2 event document(s) ", path.display())),
        "{note}"
    );
    assert!(note.ends_with(&log.unknown_fields[0]), "{note}");
}

/// A quoted key may hold a line break or an escape sequence: the note that names it stays
/// one line, as every warning does (it spanned two lines on stderr and in the TUI).
#[test]
fn an_unknown_key_with_a_line_break_is_named_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = rewritten(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    // At the top of the guard's document.
    let doc = text[..text.find("event: guard").unwrap()]
        .rfind("\n---\n")
        .unwrap()
        + 5;
    let edited = format!(
        "{}\"extra\\nline\\e[31m\": 1\n{}",
        &text[..doc],
        &text[doc..]
    );
    std::fs::write(&path, &edited).unwrap();
    let log = read(&path).unwrap();
    let note = log.unknown_note(&path).unwrap();
    assert!(!note.contains('\n') && !note.contains('\u{1b}'), "{note}");
    assert!(
        note.contains("`extra\\nline\\u{1b}[31m` in event document"),
        "{note}"
    );
}

/// A creation killed before it linked its file left a hidden temporary and no file: the
/// resume's error names it and what to do (it said only "No such file or directory").
#[test]
fn a_missing_session_names_the_header_a_killed_creation_left() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("s.yaml");
    let e = format!("{:#}", read(&path).err().unwrap());
    assert!(
        e.starts_with(&format!("cannot open session {}: ", path.display())),
        "{e}"
    );
    let tmp = d.path().join(".s.yaml.new-4294967294");
    std::fs::write(&tmp, "---\n").unwrap();
    for e in [read(&path).err().unwrap(), lock(&path).err().unwrap()] {
        let e = format!("{e:#}");
        let want = format!(
            "cannot open session {} ({} is what a run killed while creating it left: a header and no event; start the session again without --resume, which removes it): No such file",
            path.display(),
            tmp.display()
        );
        assert!(e.starts_with(&want), "{e}");
    }
}
