//! Client-side rate limiting of the controllers' Kubernetes API requests: a token bucket (`qps`
//! tokens per second, at most `burst` saved up) in front of the client's transport, as client-go's
//! QPS/burst settings are. Every request waits for a token before it is sent (a watch takes one
//! when it starts, none while it streams), so a burst of writes after a large batch is spread out
//! instead of landing on the API server at once.
//!
//! Time is tokio's (paused in the simulator, so waits cost virtual time only).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

/// Default requests per second (the documented default of `--kube-client-qps`).
pub const DEFAULT_QPS: f64 = 200.0;
/// Default burst (`--kube-client-burst`).
pub const DEFAULT_BURST: u32 = 300;

/// A token bucket shared by every clone of a [`RateLimit`] service.
#[derive(Debug)]
pub struct TokenBucket {
    qps: f64,
    burst: f64,
    state: Mutex<(f64, Option<Instant>)>,
}

impl TokenBucket {
    /// `qps` tokens per second (a non-positive or non-finite value turns limiting off), at
    /// most `burst` (at least 1) saved up; it starts full.
    pub fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps,
            burst,
            state: Mutex::new((burst, None)),
        }
    }

    fn unlimited(&self) -> bool {
        !(self.qps.is_finite() && self.qps > 0.0)
    }

    /// Takes a token now, or says how long until one is due (the token is then reserved).
    fn reserve(&self, now: Instant) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tokens, last) = &mut *s;
        if let Some(last) = *last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.qps;
            *tokens = (*tokens + refill).min(self.burst);
        }
        *last = Some(now);
        *tokens -= 1.0;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.qps)
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The layer: wraps a transport in [`RateLimit`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
}

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(TokenBucket::new(qps, burst)),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            permit: Permit::None,
        }
    }
}

/// A transport whose requests each wait for a token first: `poll_ready` reserves a token and
/// sleeps until it is due, then asks the inner transport; `call` spends it.
#[derive(Debug)]
pub struct RateLimit<S> {
    inner: S,
    bucket: Arc<TokenBucket>,
    permit: Permit,
}

#[derive(Debug)]
enum Permit {
    None,
    Waiting(Pin<Box<tokio::time::Sleep>>),
    Ready,
}

impl<S, Req> tower::Service<Req> for RateLimit<S>
where
    S: tower::Service<Req>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        loop {
            match &mut self.permit {
                Permit::None => {
                    let wait = self.bucket.reserve(Instant::now());
                    self.permit = if wait.is_zero() {
                        Permit::Ready
                    } else {
                        Permit::Waiting(Box::pin(tokio::time::sleep(wait)))
                    };
                }
                Permit::Waiting(sleep) => {
                    if sleep.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.permit = Permit::Ready;
                }
                Permit::Ready => return self.inner.poll_ready(cx),
            }
        }
    }

    fn call(&mut self, req: Req) -> S::Future {
        self.permit = Permit::None;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_passes_then_requests_are_spaced_by_the_rate() {
        let bucket = TokenBucket::new(10.0, 5);
        let start = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "the burst is free");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        let waited = start.elapsed().as_secs_f64();
        assert!((waited - 1.0).abs() < 0.01, "10 more at 10/s: {waited}");
        // Idle time refills up to the burst, not beyond.
        tokio::time::sleep(Duration::from_secs(60)).await;
        let t = Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert_eq!(t.elapsed(), Duration::ZERO);
        bucket.acquire().await;
        assert!((t.elapsed().as_secs_f64() - 0.1).abs() < 0.01);
    }

    /// The layer fits the kube client's transport as `stowage run` builds it.
    #[tokio::test]
    async fn the_layer_wraps_the_kube_client_transport() {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = kube::client::ClientBuilder::try_from(config)
            .unwrap()
            .with_layer(&RateLimitLayer::new(DEFAULT_QPS, DEFAULT_BURST))
            .build();
        assert_eq!(client.default_namespace(), "default");
    }

    #[tokio::test(start_paused = true)]
    async fn zero_qps_is_unlimited() {
        let bucket = TokenBucket::new(0.0, 1);
        let start = Instant::now();
        for _ in 0..1000 {
            bucket.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_service_waits_for_its_token() {
        use tower::{Layer, Service, ServiceExt};
        let svc = tower::service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
        let mut limited = RateLimitLayer::new(2.0, 1).layer(svc);
        let start = Instant::now();
        for i in 0..3 {
            let got = limited.ready().await.unwrap().call(i).await.unwrap();
            assert_eq!(got, i);
        }
        assert!((start.elapsed().as_secs_f64() - 1.0).abs() < 0.01);
    }
}
