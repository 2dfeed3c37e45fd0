//! Request coalescing: calls with the same key arriving within a short window are executed as one
//! AWS call (CreateFleet for identical launches, DescribeInstances and TerminateInstances for many
//! instance ids), and each caller gets its own share of the result.
//!
//! The window closes when no new call has joined for `idle`, when `max_wait` has passed since the
//! first call, or when `max_items` calls have joined. The batch runs in a spawned task, so a caller
//! that gives up (its future is dropped) never strands the others.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

/// The batching window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoalesceWindow {
    /// Close the batch when nobody joined for this long.
    pub idle: Duration,
    /// Close the batch this long after its first call at the latest.
    pub max_wait: Duration,
    /// Close the batch once this many calls joined.
    pub max_items: usize,
}

impl CoalesceWindow {
    /// No batching: every call runs alone, at once.
    pub const NONE: CoalesceWindow = CoalesceWindow {
        idle: Duration::ZERO,
        max_wait: Duration::ZERO,
        max_items: 1,
    };
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Exec<K, I, O> = Arc<dyn Fn(K, Vec<I>) -> BoxFuture<Vec<O>> + Send + Sync>;

struct Bucket<I, O> {
    id: u64,
    items: Vec<(I, oneshot::Sender<O>)>,
    first: Instant,
    last: Instant,
}

struct Inner<K, I, O> {
    window: CoalesceWindow,
    buckets: Mutex<HashMap<K, Bucket<I, O>>>,
    next_id: std::sync::atomic::AtomicU64,
    exec: Exec<K, I, O>,
}

/// Coalesces calls by key. `exec(key, inputs)` must return one output per input, in order.
pub struct Coalescer<K, I, O> {
    inner: Arc<Inner<K, I, O>>,
}

impl<K, I, O> std::fmt::Debug for Coalescer<K, I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("window", &self.inner.window)
            .finish()
    }
}

/// The batch a call joined ended without an answer for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("batched call ended without a result")]
pub struct CoalescedCallDropped;

impl<K, I, O> Coalescer<K, I, O>
where
    K: Hash + Eq + Clone + Send + 'static,
    I: Send + 'static,
    O: Send + 'static,
{
    pub fn new<F, Fut>(window: CoalesceWindow, exec: F) -> Self
    where
        F: Fn(K, Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<O>> + Send + 'static,
    {
        let exec: Exec<K, I, O> = Arc::new(move |k, items| Box::pin(exec(k, items)));
        Self {
            inner: Arc::new(Inner {
                window,
                buckets: Mutex::new(HashMap::new()),
                next_id: std::sync::atomic::AtomicU64::new(0),
                exec,
            }),
        }
    }

    fn buckets(inner: &Inner<K, I, O>) -> std::sync::MutexGuard<'_, HashMap<K, Bucket<I, O>>> {
        match inner.buckets.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Joins (or opens) the batch for `key` and waits for this input's output.
    pub async fn call(&self, key: K, input: I) -> Result<O, CoalescedCallDropped> {
        let (tx, rx) = oneshot::channel();
        let now = Instant::now();
        let max_items = self.inner.window.max_items.max(1);
        enum Next<I, O> {
            Wait,
            Open(u64),
            Full(Vec<(I, oneshot::Sender<O>)>),
        }
        let next = {
            let mut buckets = Self::buckets(&self.inner);
            let joined = match buckets.get_mut(&key) {
                Some(bucket) => {
                    bucket.items.push((input, tx));
                    bucket.last = now;
                    None
                }
                None => {
                    let id = self
                        .inner
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    buckets.insert(
                        key.clone(),
                        Bucket {
                            id,
                            items: vec![(input, tx)],
                            first: now,
                            last: now,
                        },
                    );
                    Some(id)
                }
            };
            let full = buckets
                .get(&key)
                .is_some_and(|b| b.items.len() >= max_items);
            match (full, joined) {
                (true, _) => buckets
                    .remove(&key)
                    .map_or(Next::Wait, |b| Next::Full(b.items)),
                (false, Some(id)) => Next::Open(id),
                (false, None) => Next::Wait,
            }
        };
        match next {
            Next::Wait => {}
            Next::Open(id) => {
                let inner = Arc::clone(&self.inner);
                tokio::spawn(async move { Self::run(inner, key, id).await });
            }
            Next::Full(items) => {
                let inner = Arc::clone(&self.inner);
                tokio::spawn(async move { Self::execute(inner, key, items).await });
            }
        }
        rx.await.map_err(|_| CoalescedCallDropped)
    }

    async fn run(inner: Arc<Inner<K, I, O>>, key: K, id: u64) {
        let window = inner.window;
        let items = loop {
            let deadline = {
                let mut buckets = Self::buckets(&inner);
                // Gone (closed full by a caller) or replaced by a newer batch with its own runner.
                let Some(bucket) = buckets.get(&key).filter(|b| b.id == id) else {
                    return;
                };
                let close_at = (bucket.last + window.idle).min(bucket.first + window.max_wait);
                if Instant::now() >= close_at {
                    match buckets.remove(&key) {
                        Some(b) => break b.items,
                        None => return,
                    }
                }
                close_at
            };
            tokio::time::sleep_until(deadline).await;
        };
        Self::execute(inner, key, items).await;
    }

    async fn execute(inner: Arc<Inner<K, I, O>>, key: K, items: Vec<(I, oneshot::Sender<O>)>) {
        let (inputs, senders): (Vec<I>, Vec<oneshot::Sender<O>>) = items.into_iter().unzip();
        let outputs = (inner.exec)(key, inputs).await;
        for (tx, out) in senders.into_iter().zip(outputs) {
            // The caller may have gone away; its share is simply dropped.
            let _ = tx.send(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn window() -> CoalesceWindow {
        CoalesceWindow {
            idle: Duration::from_millis(35),
            max_wait: Duration::from_secs(1),
            max_items: 3,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn calls_with_the_same_key_share_one_execution() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let batcher = Arc::new(Coalescer::new(
            window(),
            move |key: &'static str, items: Vec<u32>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    items
                        .iter()
                        .map(|i| format!("{key}:{i}:{}", items.len()))
                        .collect::<Vec<_>>()
                }
            },
        ));
        let a = tokio::spawn({
            let b = Arc::clone(&batcher);
            async move { b.call("k", 1).await }
        });
        let b = tokio::spawn({
            let b = Arc::clone(&batcher);
            async move { b.call("k", 2).await }
        });
        let c = tokio::spawn({
            let b = Arc::clone(&batcher);
            async move { b.call("other", 3).await }
        });
        assert_eq!(a.await.unwrap().unwrap(), "k:1:2");
        assert_eq!(b.await.unwrap().unwrap(), "k:2:2");
        assert_eq!(c.await.unwrap().unwrap(), "other:3:1");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_closes_early_and_a_late_call_opens_a_new_one() {
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&calls);
        let batcher = Arc::new(Coalescer::new(window(), move |_k: u8, items: Vec<u32>| {
            seen.fetch_add(1, Ordering::SeqCst);
            async move { items.iter().map(|_| items.len()).collect::<Vec<_>>() }
        }));
        let mut handles = Vec::new();
        for i in 0..4 {
            let b = Arc::clone(&batcher);
            handles.push(tokio::spawn(async move { b.call(0, i).await.unwrap() }));
            tokio::task::yield_now().await;
        }
        let sizes: Vec<usize> = futures::future::join_all(handles)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(sizes, vec![3, 3, 3, 1]);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_answer_drops_the_missing_callers() {
        let batcher = Arc::new(Coalescer::new(window(), |_k: u8, _items: Vec<u32>| async {
            Vec::<u32>::new()
        }));
        assert_eq!(batcher.call(0, 1).await, Err(CoalescedCallDropped));
    }
}
