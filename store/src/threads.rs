//! Where blocking work runs: the runtime's blocking pool, or, for background work that must
//! not compete with queries, a thread of its own at a lower priority.

use crate::error::{Error, Result};

/// The nice value background work (compactions) runs at: queries, ingest and flushes, at 0,
/// come first when the cores are busy.
const BACKGROUND_NICE: libc::c_int = 10;

/// Runs background work (a compaction) on a thread of its own at a lower CPU priority than
/// queries, ingest and flushes ([`BACKGROUND_NICE`]; the threads it starts inherit it), and waits for
/// it. A thread of its own, because an unprivileged process cannot raise a thread's priority
/// back: a pool thread lowered once would run later queries low too.
pub(crate) async fn background<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spyglass-background".into())
        .spawn(move || {
            lower_priority();
            let _ = done.send(job());
        })
        .map_err(Error::io("start a background thread", ""))?;
    result
        .await
        .map_err(|_| Error::Task("background work panicked".into()))?
}

/// Lowers the calling thread's CPU priority to [`BACKGROUND_NICE`] (on Linux, where the nice
/// value is per thread; elsewhere it stays).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers and only read their arguments.
        let failed = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE) != 0
        };
        if failed {
            tracing::debug!("could not lower the priority of background work");
        }
    }
}

/// Runs blocking work off the async threads and waits for it.
pub(crate) async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

#[cfg(test)]
mod tests {
    /// The calling thread's nice value.
    #[cfg(target_os = "linux")]
    fn nice() -> libc::c_int {
        // SAFETY: gettid and getpriority take no pointers.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::getpriority(libc::PRIO_PROCESS, tid)
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn background_work_runs_below_queries_and_leaves_them_as_they_were() {
        let before = nice();
        let (there, helper) = super::background(|| {
            // A thread the work starts (as a flush's writers are) inherits the priority.
            let helper = std::thread::spawn(nice).join().expect("helper thread");
            Ok((nice(), helper))
        })
        .await
        .unwrap();
        assert!(there >= super::BACKGROUND_NICE.max(before), "{there}");
        assert_eq!(helper, there);
        assert_eq!(nice(), before, "the caller's priority is unchanged");
        let panicked = super::background::<()>(|| panic!("boom")).await;
        assert!(panicked.is_err());
    }
}
