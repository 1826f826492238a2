//! Read timeouts for hub requests, as huggingface_hub has them: hf-hub sets none, so a
//! server that stops sending held a download (and the session waiting on it) forever.
//! A request gives up after `HF_HUB_ETAG_TIMEOUT` seconds without an answer, a download
//! after `HF_HUB_DOWNLOAD_TIMEOUT` seconds without a byte (10 each by default); the caller
//! retries either as a transient failure.

use hf_hub::api::tokio::{ApiError, ApiRepo, Progress};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long to wait for an answer and for the next byte of a download.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub answer: Duration,
    pub bytes: Duration,
}

const ANSWER_VAR: &str = "HF_HUB_ETAG_TIMEOUT";
const BYTES_VAR: &str = "HF_HUB_DOWNLOAD_TIMEOUT";

impl Timeouts {
    /// From the environment; a value that is not a positive number of seconds is an error
    /// naming the variable.
    pub fn from_env() -> anyhow::Result<Timeouts> {
        Ok(Timeouts {
            answer: seconds(ANSWER_VAR)?,
            bytes: seconds(BYTES_VAR)?,
        })
    }
}

fn seconds(var: &str) -> anyhow::Result<Duration> {
    let Ok(text) = std::env::var(var) else {
        return Ok(Duration::from_secs(10));
    };
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s > 0.0 => Ok(Duration::from_secs_f64(s)),
        _ => anyhow::bail!("{var}={text:?} is not a positive number of seconds"),
    }
}

/// The error of a request that timed out: an I/O error of kind `TimedOut`, which names
/// the variable that sets the limit.
fn timed_out(what: &str, limit: Duration, var: &str) -> ApiError {
    ApiError::IoError(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "the hub {what} for {} s ({var} sets how long to wait)",
            limit.as_secs_f64()
        ),
    ))
}

/// Whether `e` is one of ours (worth asking again).
pub fn is_timeout(e: &ApiError) -> bool {
    match e {
        ApiError::IoError(io) => io.kind() == std::io::ErrorKind::TimedOut,
        ApiError::TooManyRetries(inner) => is_timeout(inner),
        _ => false,
    }
}

/// `fut`, given up after `limits.answer` without a result.
pub async fn answered<T>(
    limits: Timeouts,
    fut: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limits.answer, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out("did not answer", limits.answer, ANSWER_VAR)))
}

/// A download's progress, passed on, with the time its last bytes came (shared by the
/// clones hf-hub gives each chunk's task).
#[derive(Clone)]
pub struct Watched<P> {
    inner: P,
    last: Arc<Mutex<Instant>>,
}

impl<P> Watched<P> {
    pub fn new(inner: P) -> Self {
        Watched {
            inner,
            last: Arc::new(Mutex::new(Instant::now())),
        }
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn idle(&self) -> Duration {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }

    /// `download` (which reports to a clone of this), given up once no bytes have come
    /// for `limits.bytes`. The chunk tasks it spawned end with the caller's runtime.
    pub async fn watch<T>(
        &self,
        limits: Timeouts,
        download: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.touch();
        tokio::pin!(download);
        loop {
            let idle = self.idle();
            if idle >= limits.bytes {
                return Err(timed_out("sent nothing", limits.bytes, BYTES_VAR));
            }
            tokio::select! {
                r = &mut download => return r,
                _ = tokio::time::sleep(limits.bytes - idle) => {}
            }
        }
    }
}

/// `file` of `repo`, its progress passed to `progress`, given up once no bytes have come
/// for `limits.bytes`.
pub async fn download<P>(
    repo: &ApiRepo,
    file: &str,
    limits: Timeouts,
    progress: P,
) -> Result<PathBuf, ApiError>
where
    P: Progress + Clone + Send + Sync + 'static,
{
    let w = Watched::new(progress);
    w.watch(limits, repo.download_with_progress(file, w.clone()))
        .await
}

impl<P: Progress + Send> Progress for Watched<P> {
    async fn init(&mut self, size: usize, filename: &str) {
        self.touch();
        self.inner.init(size, filename).await;
    }

    async fn update(&mut self, size: usize) {
        self.touch();
        self.inner.update(size).await;
    }

    async fn finish(&mut self) {
        self.inner.finish().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ms: u64) -> Timeouts {
        Timeouts {
            answer: Duration::from_millis(ms),
            bytes: Duration::from_millis(ms),
        }
    }

    fn run<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_download_that_keeps_sending_is_not_cut_however_long_it_takes() {
        let w = Watched::new(());
        let mut p = w.clone();
        let r = run(w.watch(limits(100), async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                p.update(1).await;
            }
            Ok::<_, ApiError>(7)
        }));
        assert_eq!(r.unwrap(), 7);
    }

    #[test]
    fn a_download_that_stops_sending_times_out_naming_the_variable() {
        let w = Watched::new(());
        let mut p = w.clone();
        let e = run(w.watch(limits(100), async move {
            p.update(1).await;
            std::future::pending::<()>().await;
            Ok::<_, ApiError>(())
        }))
        .unwrap_err();
        assert!(is_timeout(&e));
        assert!(e.to_string().contains("HF_HUB_DOWNLOAD_TIMEOUT"), "{e}");
    }

    #[test]
    fn an_unanswered_request_times_out_and_an_answered_one_does_not() {
        let e = run(answered(
            limits(50),
            std::future::pending::<Result<(), _>>(),
        ))
        .unwrap_err();
        assert!(is_timeout(&e) && e.to_string().contains("HF_HUB_ETAG_TIMEOUT"));
        assert_eq!(run(answered(limits(50), async { Ok(3) })).unwrap(), 3);
    }
}
