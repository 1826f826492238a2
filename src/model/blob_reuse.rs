//! What Arborist checks around hf-hub's downloads: the hub's names for a file, a blob the
//! cache already holds, and the bytes that arrived.
//!
//! hf-hub downloads a file whenever this commit's snapshot lacks it, even when its blob (named
//! by the file's etag, shared by all commits) is in the cache: a repository whose README
//! changed would download its weights again. huggingface_hub links the blob instead; so does
//! this, before hf-hub is asked. hf-hub also takes the etag as a path and keeps a short or
//! corrupted download as complete; both are checked here.

use hf_hub::api::tokio::{Api, ApiError, ApiRepo, Metadata};
use hf_hub::CacheRepo;
use std::io::Read;
use std::path::{Path, PathBuf};

fn refused(msg: String) -> ApiError {
    ApiError::IoError(std::io::Error::other(msg))
}

/// A name the cache can hold as one path component: a server's `../x` etag wrote outside
/// the cache.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The hub's metadata of `file` (one request, as hf-hub's own download makes first), its
/// etag and commit checked to be plain names.
pub async fn metadata(api: &Api, repo: &ApiRepo, file: &str) -> Result<Metadata, ApiError> {
    let meta = api.metadata(&repo.url(file)).await?;
    for (what, v) in [("etag", meta.etag()), ("commit", meta.commit_hash())] {
        if !plain_name(v) {
            return Err(refused(format!(
                "the hub named {what} {v:?} for {file}, which is not a plain name; refused, as it would name a path in the cache"
            )));
        }
    }
    Ok(meta)
}

/// The snapshot path of `file` at `meta`'s commit, linked to a blob the cache holds whole
/// (its size is the hub's); `None` when there is no such blob.
pub fn link_cached_blob(
    cache: &CacheRepo,
    meta: &Metadata,
    file: &str,
) -> Result<Option<PathBuf>, ApiError> {
    let blob = cache.blob_path(meta.etag());
    match std::fs::metadata(&blob) {
        Ok(m) if m.is_file() && m.len() == meta.size() as u64 => {}
        _ => return Ok(None),
    }
    let mut pointer = cache.pointer_path(meta.commit_hash());
    pointer.push(file);
    if let Some(dir) = pointer.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if std::fs::symlink_metadata(&pointer).is_err() {
        // snapshots/<commit>/<file> → blobs/<etag>, relative as the cache's other links are.
        let up = "../".repeat(2 + file.matches('/').count());
        let target = format!("{up}blobs/{}", meta.etag());
        link(&target, &blob, &pointer)?;
    }
    Ok(Some(pointer))
}

/// A 64-digit hex etag is the sha256 of a file stored in LFS (the weights).
fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit())
}

fn sha256_hex(path: &Path) -> std::io::Result<String> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("{:x}", h.finalize()))
}

/// A blob hf-hub just downloaded must have the hub's size and, in LFS, its sha256: a
/// body cut short was kept padded with zeros, and wrong bytes under the right name.
/// A damaged blob and its snapshot link are removed, so that the next run fetches it again.
pub fn check_download(
    cache: &CacheRepo,
    meta: &Metadata,
    file: &str,
    pointer: &Path,
) -> Result<(), ApiError> {
    let blob = cache.blob_path(meta.etag());
    let len = std::fs::metadata(&blob)?.len();
    let damage = if len != meta.size() as u64 {
        Some(format!("{len} bytes where the hub says {}", meta.size()))
    } else if is_sha256(meta.etag()) {
        let got = sha256_hex(&blob)?;
        (!got.eq_ignore_ascii_case(meta.etag()))
            .then(|| format!("sha256 {got} where the hub says {}", meta.etag()))
    } else {
        None
    };
    match damage {
        None => Ok(()),
        Some(d) => {
            let _ = std::fs::remove_file(&blob);
            let _ = std::fs::remove_file(pointer);
            Err(refused(format!(
                "the download of {file} is damaged ({d}); it was removed from the cache, so running again fetches it anew"
            )))
        }
    }
}

#[cfg(unix)]
fn link(target: &str, _blob: &std::path::Path, pointer: &std::path::Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, pointer)
}

#[cfg(not(unix))]
fn link(_target: &str, blob: &std::path::Path, pointer: &std::path::Path) -> std::io::Result<()> {
    std::fs::copy(blob, pointer).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_reach_the_cache() {
        for ok in [
            "0123456789abcdef0123456789abcdef01234567",
            "etag-model.safetensors",
            "a_b-c",
        ] {
            assert!(plain_name(ok), "{ok}");
        }
        for bad in ["", "..", "../../evil", "a/b", "a\\b", ".hidden", "x y", "é"] {
            assert!(!plain_name(bad), "{bad}");
        }
        assert!(is_sha256(&"ab".repeat(32)));
        assert!(!is_sha256(&"ab".repeat(20)));
    }

    #[test]
    fn sha256_of_a_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            sha256_hex(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
