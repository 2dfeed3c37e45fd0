//! The Kubernetes clients of `stowage run`: kube's default stack (base URI, retries of the
//! API server's 429/503/504, authentication, extra headers, a debug span per request and an
//! error log per failed one, connect/read/write timeouts, rustls), built here only to bound its
//! connection pool. Left out: the expiry of an exec plugin's client certificate (kube keeps it
//! private; its token-based auth refreshes as before).
//!
//! Key decision: kube's own builder keeps every idle connection it ever opened (hyper's pool
//! has no bound, and without a timer no idle timeout): a burst of concurrent requests (drift
//! checks, NodeClaim reconciles, creations) left the controller with 415 TCP connections to
//! the API server at `seed-full` scale, each with its buffers. Here at most
//! [`MAX_IDLE_CONNECTIONS`] wait idle, each for at most [`IDLE_TIMEOUT`]; requests beyond them
//! still open connections of their own, closed when done. A configuration with a proxy gets
//! kube's builder unchanged.
//!
//! At most [`MAX_IN_FLIGHT`] requests wait for their answer at once (per client); the others
//! wait their turn, in order, before a connection is taken or opened. When hundreds of nodes
//! register or go at once, the lifecycle controller reconciles their claims together, each
//! with requests in flight: against a busy API server each held a connection with its buffers
//! and its decoded answer, ~20 MB at `seed-full` scale, the controller's peak. A watch counts
//! only until its answer's head arrives (its stream is not a request in flight), so watches
//! never hold the others up.

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{Body, ClientBuilder, ConfigExt, DynBody};
use tower::retry::RetryLayer;
use tower::util::BoxService;
use tower::{BoxError, ServiceBuilder, ServiceExt};
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::TraceLayer;

/// Idle connections kept to the API server (per client); more are closed once done.
pub const MAX_IDLE_CONNECTIONS: usize = 32;
/// How long an idle connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Requests waiting for their answer at once (per client). At the client's default 200
/// requests per second and an API server answering within 300 ms this never holds a request
/// back; it bounds the connections a burst opens against a slow one.
pub const MAX_IN_FLIGHT: usize = 64;

/// What [`builder`] gives: kube's boxed service type (its builder's too).
pub type Service = BoxService<http::Request<Body>, http::Response<Box<DynBody>>, BoxError>;

/// A client builder for `config` with a bounded pool (see the module docs).
pub fn builder(config: kube::Config) -> kube::Result<ClientBuilder<Service>> {
    if config.proxy_url.is_some() {
        return ClientBuilder::try_from(config);
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = config.rustls_https_connector_with_connector(http)?;
    let mut connector = hyper_timeout::TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let pool: hyper_util::client::legacy::Client<_, Body> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS)
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .build(connector);
    let in_flight = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let pool = tower::service_fn(move |req: http::Request<Body>| {
        let (pool, in_flight) = (pool.clone(), in_flight.clone());
        async move {
            // Held until the answer's head arrives; the semaphore is never closed.
            let _turn = in_flight.acquire_owned().await.map_err(BoxError::from)?;
            pool.request(req).await.map_err(BoxError::from)
        }
    });
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(
            config
                .default_retry
                .then(|| RetryLayer::new(RetryPolicy::server_retry())),
        )
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &http::Request<Body>| {
                    tracing::debug_span!("HTTP", http.method = %req.method(), http.url = %req.uri())
                })
                .on_failure(|failure: ServerErrorsFailureClass, _: Duration, _: &tracing::Span| {
                    match failure {
                        ServerErrorsFailureClass::StatusCode(status) => {
                            tracing::error!("failed with status {status}")
                        }
                        ServerErrorsFailureClass::Error(err) => {
                            tracing::error!("failed with error {err}")
                        }
                    }
                }),
        )
        .map_err(BoxError::from)
        .service(pool)
        .map_response(|res| {
            res.map(|body| {
                Box::new(http_body_util::BodyExt::map_err(body, BoxError::from)) as Box<DynBody>
            })
        })
        .boxed();
    Ok(ClientBuilder::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hyper_util::rt::TokioIo;

    use super::*;

    /// Connections a test server has open now and at most.
    #[derive(Default)]
    struct Open {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    /// An HTTP/1 server answering every request after 100 ms, counting its open connections.
    async fn server() -> (String, Arc<Open>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(Open::default());
        let counted = open.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let n = counted.now.fetch_add(1, Ordering::SeqCst) + 1;
                counted.peak.fetch_max(n, Ordering::SeqCst);
                let counted = counted.clone();
                tokio::spawn(async move {
                    let answer = hyper::service::service_fn(|_req| async {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(b"{}"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), answer)
                        .await;
                    counted.now.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (url, open)
    }

    /// `n` GETs of `/version` at once; their answers.
    async fn burst(client: &kube::Client, n: usize) -> Vec<String> {
        let requests = (0..n).map(|_| {
            let client = client.clone();
            async move {
                client
                    .request_text(http::Request::get("/version").body(Vec::new()).unwrap())
                    .await
                    .unwrap()
            }
        });
        futures::future::join_all(requests).await
    }

    #[tokio::test]
    async fn a_burst_leaves_at_most_the_bound_of_idle_connections_open() {
        let (url, open) = server().await;
        let client = builder(kube::Config::new(url.parse().unwrap()))
            .unwrap()
            .build();
        burst(&client, 100).await;
        assert!(
            open.peak.load(Ordering::SeqCst) > MAX_IDLE_CONNECTIONS,
            "the burst opened a connection per request in flight"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(open.now.load(Ordering::SeqCst) <= MAX_IDLE_CONNECTIONS);
        // The idle ones are reused, not reopened.
        client
            .request_text(http::Request::get("/version").body(Vec::new()).unwrap())
            .await
            .unwrap();
        assert!(open.now.load(Ordering::SeqCst) <= MAX_IDLE_CONNECTIONS);
    }

    #[tokio::test]
    async fn a_burst_holds_at_most_the_bound_of_requests_in_flight() {
        let (url, open) = server().await;
        let client = builder(kube::Config::new(url.parse().unwrap()))
            .unwrap()
            .build();
        let answers = burst(&client, 4 * MAX_IN_FLIGHT).await;
        assert_eq!(answers.len(), 4 * MAX_IN_FLIGHT, "every request answered");
        // Without the bound, one connection per request (256); with it, those in flight and a
        // few whose answer's body is still being read when the next request starts.
        let peak = open.peak.load(Ordering::SeqCst);
        assert!(peak <= 2 * MAX_IN_FLIGHT, "{peak} connections open at once");
    }
}
