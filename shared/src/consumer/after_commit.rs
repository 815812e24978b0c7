//! Work a handler wants done only if its transaction commits (a metric, a log line that states
//! a fact): run after the commit, dropped on rollback, so that a retried message is counted once.

use std::cell::RefCell;

type Deferred = Vec<Box<dyn FnOnce() + Send>>;

tokio::task_local! {
    static AFTER_COMMIT: RefCell<Deferred>;
}

/// Runs `action` after the current message's transaction commits. Outside a consumer (an HTTP
/// handler, a test) it runs at once: the caller is then responsible for calling it after its
/// own commit.
pub fn after_commit(action: impl FnOnce() + Send + 'static) {
    let mut action: Option<Box<dyn FnOnce() + Send>> = Some(Box::new(action));
    let _ = AFTER_COMMIT.try_with(|queue| {
        if let Some(action) = action.take() {
            queue.borrow_mut().push(action);
        }
    });
    if let Some(action) = action {
        action();
    }
}

/// Runs `work` collecting deferred actions; returns its output and the actions.
pub(crate) async fn collect<F: std::future::Future>(work: F) -> (F::Output, Deferred) {
    AFTER_COMMIT
        .scope(RefCell::new(Vec::new()), async move {
            let output = work.await;
            let deferred = AFTER_COMMIT.with(|queue| std::mem::take(&mut *queue.borrow_mut()));
            (output, deferred)
        })
        .await
}
