//! Client-side rate limiting of the controllers' Kubernetes API requests: a token bucket (`qps`
//! tokens per second, at most `burst` saved up) in front of the client's transport, as client-go's
//! QPS/burst settings are. Every request waits for a token before it is sent (a watch takes one
//! when it starts, none while it streams), so a burst of writes after a large batch is spread out
//! instead of landing on the API server at once.
//!
//! NodeClaim creations are a batch's critical path (pods wait for them; everything else can
//! wait a few seconds), so they go through their own client whose layer shares the bucket but
//! goes ahead of the queue ([`RateLimitLayer::ahead`]): a creation is sent at once while the
//! bucket is at most `--kube-client-create-burst` tokens in debt, and every other request then
//! waits until that debt is paid back at the shared rate. Over any window of `t` seconds the
//! controllers send at most `burst + create_burst + qps * t` requests, and in the long run no
//! more than `qps` per second, creations included.
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
/// Default of `--kube-client-create-burst`: how far into debt NodeClaim creations may take the
/// bucket before they wait like any other request. 500 on top of the burst of 300 lets the
/// ~750 claims of a 5,000-pod batch (16-vCPU claims of ~7 pods) go without waiting.
pub const DEFAULT_CREATE_BURST: u32 = 500;

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

    /// Takes a token now, or says how long until one is due (the token is then reserved). The
    /// bucket may go down to `floor` tokens (0, or below for requests sent ahead) before a
    /// request waits; it then waits until the bucket is back at `floor`.
    fn reserve(&self, now: Instant, floor: f64) -> Duration {
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
        if *tokens >= floor {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((floor - *tokens) / self.qps)
        }
    }

    /// Waits until a token is available and takes it.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now(), 0.0);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The layer: wraps a transport in [`RateLimit`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<TokenBucket>,
    /// How low this layer's requests may take the bucket before they wait (0, or negative for
    /// requests sent ahead).
    floor: f64,
}

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(TokenBucket::new(qps, burst)),
            floor: 0.0,
        }
    }

    /// A layer on the same bucket whose requests go ahead: they are sent at once while the
    /// bucket is at most `ahead` tokens in debt, and the debt delays this layer's other users
    /// (`ahead` 0: they wait as any other request). Put it on a client of its own: a client
    /// sends its requests in order, so one sharing the client with waiting requests would
    /// queue behind them.
    pub fn ahead(&self, ahead: u32) -> Self {
        Self {
            bucket: self.bucket.clone(),
            floor: -f64::from(ahead),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;
    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            bucket: self.bucket.clone(),
            floor: self.floor,
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
    floor: f64,
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
                    let wait = self.bucket.reserve(Instant::now(), self.floor);
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

    /// Creations go ahead of a queue of other requests, up to the extra burst; the debt they
    /// leave delays the others, so the long-run rate stays the shared one.
    #[tokio::test(start_paused = true)]
    async fn requests_sent_ahead_overtake_the_queue_and_the_others_pay_the_debt() {
        use tower::{Layer, Service, ServiceExt};
        let svc = tower::service_fn(|x: u32| async move { Ok::<_, std::convert::Infallible>(x) });
        let shared = RateLimitLayer::new(10.0, 5);
        let mut others = shared.layer(svc);
        let mut creations = shared.ahead(20).layer(svc);
        let start = Instant::now();
        // The burst, then 10 more others reserved: the queue reaches 1 s out.
        for i in 0..15 {
            others.ready().await.unwrap().call(i).await.unwrap();
        }
        assert!((start.elapsed().as_secs_f64() - 1.0).abs() < 0.01);
        // 20 creations go at once, although the bucket is empty.
        let t = Instant::now();
        for i in 0..20 {
            creations.ready().await.unwrap().call(i).await.unwrap();
        }
        assert_eq!(t.elapsed(), Duration::ZERO, "creations do not wait");
        // The 21st has used up the extra burst: it waits one token.
        creations.ready().await.unwrap().call(20).await.unwrap();
        assert!((t.elapsed().as_secs_f64() - 0.1).abs() < 0.01);
        // The next other request waits for the whole debt (20 tokens at 10/s) and its own.
        let t = Instant::now();
        others.ready().await.unwrap().call(99).await.unwrap();
        assert!(
            (t.elapsed().as_secs_f64() - 2.1).abs() < 0.01,
            "{:?}",
            t.elapsed()
        );
        // In all: 5 + 20 ahead + 10 per second, never more.
        let sent = 15 + 21 + 1;
        let bound = 5.0 + 20.0 + 10.0 * start.elapsed().as_secs_f64();
        assert!(f64::from(sent) <= bound + 0.01, "{sent} > {bound}");
    }

    #[tokio::test(start_paused = true)]
    async fn ahead_zero_waits_as_any_other_request() {
        let shared = RateLimitLayer::new(10.0, 1);
        let creations = shared.ahead(0);
        let start = Instant::now();
        assert_eq!(
            creations.bucket.reserve(start, creations.floor),
            Duration::ZERO
        );
        let wait = creations.bucket.reserve(start, creations.floor);
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
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
