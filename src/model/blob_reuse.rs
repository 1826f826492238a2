//! A file the hub cache already holds under another commit is linked, not downloaded again.
//!
//! hf-hub downloads a file whenever this commit's snapshot lacks it, even when its blob (named
//! by the file's etag, shared by all commits) is in the cache: a repository whose README
//! changed would download its weights again. huggingface_hub links the blob instead; so does
//! this, before hf-hub is asked.

use hf_hub::api::tokio::{Api, ApiError, ApiRepo};
use hf_hub::CacheRepo;
use std::path::PathBuf;

/// The snapshot path of `file` at the revision's commit, linked to a blob the cache holds
/// whole (its size is the hub's); `None` when there is no such blob. Costs one metadata
/// request, as hf-hub's own download does first.
pub async fn link_cached_blob(
    api: &Api,
    repo: &ApiRepo,
    cache: &CacheRepo,
    file: &str,
) -> Result<Option<PathBuf>, ApiError> {
    let meta = api.metadata(&repo.url(file)).await?;
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
    cache.create_ref(meta.commit_hash())?;
    Ok(Some(pointer))
}

#[cfg(unix)]
fn link(target: &str, _blob: &std::path::Path, pointer: &std::path::Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, pointer)
}

#[cfg(not(unix))]
fn link(_target: &str, blob: &std::path::Path, pointer: &std::path::Path) -> std::io::Result<()> {
    std::fs::copy(blob, pointer).map(|_| ())
}
