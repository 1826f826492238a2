//! Text corpora and token windows.

pub mod documents;
pub mod freebaseqa;
pub mod mmlu;
pub mod parquet_text;
pub mod text;
pub use documents::{read_documents, CalibSample};
pub use parquet_text::read_ppl_text;
pub use text::{default_seqlen, ids_tensor, read_text, Windows};

/// An error reading the file a flag names, led by the flag ("--mmlu: cannot read x: ...")
/// unless the message already leads with one: the file alone did not say which flag to fix.
pub fn for_flag<T>(r: anyhow::Result<T>, flag: &str) -> anyhow::Result<T> {
    r.map_err(|e| {
        if e.to_string().starts_with("--") {
            e
        } else {
            e.context(flag.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_read_error_is_led_by_its_flag_once() {
        let e =
            super::for_flag::<()>(Err(anyhow::anyhow!("cannot read x.txt")), "--ppl").unwrap_err();
        assert_eq!(format!("{e:#}"), "--ppl: cannot read x.txt");
        let e = super::for_flag::<()>(Err(anyhow::anyhow!("--seqlen 1: too short")), "--ppl")
            .unwrap_err();
        assert_eq!(format!("{e:#}"), "--seqlen 1: too short");
    }
}
