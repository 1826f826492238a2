//! Reading Hugging Face dataset parquet files through parquet's record API (no arrow):
//! a projected row reader shared by the evaluators, and wikitext's `text` column.

use crate::runtime::catch_quietly;
use anyhow::{anyhow, bail, Context, Result};
use parquet::basic::Compression;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// Calls `f(row, fields)` for every row, rows counted from 1, with the `columns` fields
/// in the order asked. A missing column is an error naming the file and its columns.
pub fn for_each_row(
    path: &Path,
    columns: &[&str],
    mut f: impl FnMut(usize, &[&Field]) -> Result<()>,
) -> Result<()> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    // The parquet crate asserts on some corruptions (a page that claims more values than it
    // holds) instead of returning an error.
    let malformed = |row: Option<usize>, p: String| {
        let at = row.map_or(String::new(), |r| format!(": row {r}"));
        anyhow!(
            "{}{at}: the parquet file is malformed ({p})",
            path.display()
        )
    };
    let reader = catch_quietly(|| SerializedFileReader::new(file))
        .map_err(|p| malformed(None, p))?
        .map_err(|e| anyhow!("{} is not a readable parquet file: {e}", path.display()))?;
    let root = reader.metadata().file_metadata().schema().clone();
    let have: Vec<&str> = root.get_fields().iter().map(|t| t.name()).collect();
    for c in columns {
        if !have.contains(c) {
            bail!(
                "{} has no column `{c}` (columns: {})",
                path.display(),
                have.join(", ")
            );
        }
    }
    check_codecs(&reader, path, columns)?;
    // Project onto the wanted columns, in file order as the projection requires.
    let fields: Vec<Arc<Type>> = root
        .get_fields()
        .iter()
        .filter(|t| columns.contains(&t.name()))
        .cloned()
        .collect();
    let proj = Type::group_type_builder(root.name())
        .with_fields(fields)
        .build()?;
    let mut rows = catch_quietly(|| reader.get_row_iter(Some(proj)))
        .map_err(|p| malformed(None, p))?
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    for i in 0.. {
        let Some(row) = catch_quietly(|| rows.next()).map_err(|p| malformed(Some(i + 1), p))?
        else {
            break;
        };
        let row = row.map_err(|e| anyhow!("{}: row {}: {}", path.display(), i + 1, brief(&e)))?;
        let cols = row.into_columns();
        let picked: Vec<&Field> = columns
            .iter()
            .map(|c| &cols.iter().find(|(n, _)| n == c).expect("projected").1)
            .collect();
        f(i + 1, &picked)?;
    }
    Ok(())
}

/// parquet's error for a string that is not UTF-8 quotes every byte of it (a whole
/// article of wikitext on one line): said in words instead, and anything else kept short.
fn brief(e: &parquet::errors::ParquetError) -> String {
    let text = e.to_string();
    if text.contains("Utf8Error") {
        return "a text value is not valid UTF-8".to_string();
    }
    match text.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// The codecs this build reads (Cargo.toml's parquet features).
const CODECS: &str = "uncompressed, snappy, gzip or zstd";

/// Refuses a wanted column in a codec we do not read, in one line, before any row:
/// parquet's own message ("Disabled feature at compile time") names no alternative.
fn check_codecs(
    reader: &SerializedFileReader<std::fs::File>,
    path: &Path,
    columns: &[&str],
) -> Result<()> {
    for rg in reader.metadata().row_groups() {
        for c in rg.columns() {
            let Some(name) = c.column_path().parts().first() else {
                continue;
            };
            if columns.contains(&name.as_str()) {
                codec_supported(c.compression())
                    .map_err(|e| anyhow!("{}: column `{name}`: {e}", path.display()))?;
            }
        }
    }
    Ok(())
}

fn codec_supported(c: Compression) -> Result<()> {
    let name = match c {
        Compression::UNCOMPRESSED
        | Compression::SNAPPY
        | Compression::GZIP(_)
        | Compression::ZSTD(_) => return Ok(()),
        Compression::LZO => "LZO",
        Compression::BROTLI(_) => "brotli",
        Compression::LZ4 | Compression::LZ4_RAW => "LZ4",
    };
    bail!("compressed with {name}; arborist reads {CODECS} parquet (rewrite it, e.g. pyarrow's compression='zstd')")
}

/// A string field: UTF8-annotated, or plain bytes that are valid UTF-8. None for null.
pub fn field_str(f: &Field) -> Option<&str> {
    match f {
        Field::Str(s) => Some(s),
        Field::Bytes(b) => std::str::from_utf8(b.data()).ok(),
        _ => None,
    }
}

/// The `text` column with rows joined by "\n\n", as Wanda and SparseGPT join the rows of
/// wikitext-2-raw-v1's test split before tokenizing. Null rows count as empty.
pub fn read_parquet_text(path: &Path) -> Result<String> {
    let mut rows: Vec<String> = Vec::new();
    for_each_row(path, &["text"], |row, f| {
        match f[0] {
            Field::Null => rows.push(String::new()),
            other => match field_str(other) {
                Some(s) => rows.push(s.to_string()),
                None => bail!(
                    "{}: row {row}: column `text` is not a string",
                    path.display()
                ),
            },
        }
        Ok(())
    })?;
    if rows.is_empty() {
        bail!("{} has no rows", path.display());
    }
    Ok(rows.join("\n\n"))
}

/// Perplexity text: a `.parquet` file's `text` column as above, else UTF-8 text.
pub fn read_ppl_text(path: &Path) -> Result<String> {
    if is_parquet(path) {
        read_parquet_text(path)
    } else {
        super::read_text(path)
    }
}

/// Is this path a parquet file (by its extension, or its first bytes `PAR1`)?
pub fn is_parquet(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
        || super::text::starts_with(path, super::text::PARQUET_MAGIC).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::basic::BrotliLevel;

    #[test]
    fn an_unread_codec_is_named_with_the_ones_read() {
        assert!(codec_supported(Compression::SNAPPY).is_ok());
        let e = codec_supported(Compression::BROTLI(BrotliLevel::default())).unwrap_err();
        assert!(e.to_string().contains("brotli"), "{e}");
        assert!(e.to_string().contains("snappy, gzip or zstd"), "{e}");
    }
}
