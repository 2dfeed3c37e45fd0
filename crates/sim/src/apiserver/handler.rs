//! HTTP routing for the API server: Kubernetes REST paths to store operations, discovery
//! documents, `Table` output for kubectl, and the streaming watch body.

use crate::json::JsonPointer as _;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::{Body, Frame, SizeHint};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Sleep;

use super::Shared;
use super::patch::PatchKind;
use super::selector::{FieldSelector, LabelSelector};
use super::status::{ApiError, ApiResult, success};
use super::store::{DeleteOpts, Filter, KindId, Sub, WatchMsg};

/// The response body: a complete document, or a watch stream.
pub enum ApiBody {
    Full(Option<Bytes>),
    Watch(Box<WatchBody>),
    List(Box<ListBody>),
}

impl std::fmt::Debug for ApiBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiBody::Full(b) => write!(f, "Full({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            ApiBody::Watch(_) => write!(f, "Watch"),
            ApiBody::List(_) => write!(f, "List"),
        }
    }
}

/// A list response written as it is sent: the items (shared snapshots of the stored objects) are
/// serialized a chunk at a time, so a large list neither builds its whole body up front nor keeps
/// a worker busy long enough to stall other requests.
pub struct ListBody {
    head: Option<String>,
    items: std::vec::IntoIter<Arc<Value>>,
    first: bool,
    done: bool,
}

/// About this many bytes per frame of a list response.
const LIST_CHUNK_BYTES: usize = 64 * 1024;

impl ListBody {
    fn new(head: String, items: Vec<Arc<Value>>) -> Self {
        Self {
            head: Some(head),
            items: items.into_iter(),
            first: true,
            done: false,
        }
    }

    fn next_chunk(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        let mut out = self.head.take().unwrap_or_default().into_bytes();
        while out.len() < LIST_CHUNK_BYTES {
            let Some(item) = self.items.next() else {
                out.extend_from_slice(b"]}");
                self.done = true;
                break;
            };
            if !self.first {
                out.push(b',');
            }
            self.first = false;
            // Straight into the chunk (not into a string of its own, then copied).
            let start = out.len();
            if serde_json::to_writer(&mut out, &*item).is_err() {
                out.truncate(start);
            }
        }
        Some(Bytes::from(out))
    }
}

impl Body for ApiBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ApiBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ApiBody::Watch(w) => w.poll_next(cx).map(|o| o.map(|b| Ok(Frame::data(b)))),
            ApiBody::List(l) => Poll::Ready(l.next_chunk().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ApiBody::Full(b) => b.is_none(),
            ApiBody::List(l) => l.done,
            ApiBody::Watch(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ApiBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ApiBody::Full(None) => SizeHint::with_exact(0),
            ApiBody::Watch(_) | ApiBody::List(_) => SizeHint::default(),
        }
    }
}

/// A watch stream: newline-delimited watch events, bookmarks every minute when asked for, and
/// the end of the stream after `timeoutSeconds`.
pub struct WatchBody {
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    shared: Arc<Shared>,
    kind: KindId,
    watcher: u64,
    bookmarks: bool,
    bookmark_timer: Pin<Box<Sleep>>,
    deadline: Option<Pin<Box<Sleep>>>,
    done: bool,
}

const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

impl WatchBody {
    fn line(&self, msg: WatchMsg) -> Option<Bytes> {
        match msg {
            WatchMsg::Event {
                etype,
                object,
                cache,
            } => Some(cache.line(etype, &object)),
            WatchMsg::Bookmark {
                rv,
                initial_events_end,
            } => {
                if !self.bookmarks && !initial_events_end {
                    return None;
                }
                let info = self.shared.store.kind(self.kind);
                let mut metadata = json!({ "resourceVersion": rv.to_string() });
                if initial_events_end {
                    metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
                }
                let ev = json!({ "type": "BOOKMARK", "object": { "kind": info.kind, "apiVersion": info.api_version(), "metadata": metadata } });
                Some(Bytes::from(format!("{ev}\n")))
            }
            WatchMsg::Error(status) => Some(Bytes::from(format!(
                "{}\n",
                json!({ "type": "ERROR", "object": status })
            ))),
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let t0 = std::time::Instant::now();
        let r = self.poll_inner(cx);
        let n = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .busy_nanos
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        r
    }

    fn poll_inner(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if self.done {
            return Poll::Ready(None);
        }
        loop {
            let mut buf: Vec<u8> = Vec::new();
            let mut closed = false;
            for _ in 0..256 {
                match self.rx.poll_recv(cx) {
                    Poll::Ready(Some(msg)) => {
                        if matches!(msg, WatchMsg::Error(_)) {
                            self.done = true;
                        }
                        if let Some(b) = self.line(msg) {
                            buf.extend_from_slice(&b);
                        }
                        if self.done {
                            break;
                        }
                    }
                    Poll::Ready(None) => {
                        closed = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if !buf.is_empty() {
                if closed {
                    self.done = true;
                }
                return Poll::Ready(Some(Bytes::from(buf)));
            }
            if closed || self.done {
                self.done = true;
                return Poll::Ready(None);
            }
            if let Some(d) = self.deadline.as_mut()
                && d.as_mut().poll(cx).is_ready()
            {
                self.done = true;
                return Poll::Ready(None);
            }
            if self.bookmark_timer.as_mut().poll(cx).is_ready() {
                let next = tokio::time::Instant::now() + BOOKMARK_EVERY;
                self.bookmark_timer.as_mut().reset(next);
                if self.bookmarks {
                    self.shared.store.bookmark(self.kind, self.watcher);
                    continue;
                }
            }
            return Poll::Pending;
        }
    }
}

impl Drop for WatchBody {
    fn drop(&mut self) {
        self.shared.store.unwatch(self.kind, self.watcher);
    }
}

fn json_response(code: u16, body: &Value) -> Response<ApiBody> {
    bytes_response(
        code,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

fn bytes_response(code: u16, body: Bytes) -> Response<ApiBody> {
    let mut r = Response::new(ApiBody::Full(Some(body)));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<ApiBody> {
    json_response(e.code, &e.to_status())
}

fn obj_response(code: u16, obj: &Value) -> Response<ApiBody> {
    json_response(code, obj)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parsed query parameters.
#[derive(Debug, Default)]
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            q.unwrap_or_default()
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(p), String::new()),
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
}

/// One request against a kind.
struct Target {
    kind: KindId,
    namespace: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

impl Shared {
    /// Handles one request with its complete body.
    pub(crate) fn handle(self: &Arc<Self>, req: Request<Bytes>) -> Response<ApiBody> {
        let t0 = std::time::Instant::now();
        let r = self.handle_inner(req);
        self.account(t0);
        r
    }

    fn account(&self, t0: std::time::Instant) {
        use std::sync::atomic::Ordering;
        self.requests.fetch_add(1, Ordering::Relaxed);
        let n = u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.busy_nanos.fetch_add(n, Ordering::Relaxed);
    }

    fn handle_inner(self: &Arc<Self>, req: Request<Bytes>) -> Response<ApiBody> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().trim_end_matches('/').to_string();
        let query = Query::parse(parts.uri.query());
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if content_type.starts_with("application/vnd.kubernetes.protobuf") {
            let e = ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {content_type})"
            ));
            return error_response(&e);
        }
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let writes_body = parts.method == http::Method::POST || parts.method == http::Method::PUT;
        if writes_body
            && !body.is_empty()
            && !matches!(
                media,
                "" | "application/json" | "application/yaml" | "application/x-yaml" | "*/*"
            )
        {
            let e = ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml (got {media})"
            ));
            return error_response(&e);
        }
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let result = match segs.as_slice() {
            ["version"] => Ok(json_response(200, &super::discovery::version())),
            ["api"] => Ok(json_response(200, &super::discovery::api_versions())),
            ["apis"] => Ok(json_response(
                200,
                &super::discovery::group_list(self.store.kinds()),
            )),
            ["api", "v1"] => Ok(json_response(
                200,
                &super::discovery::resource_list(self.store.kinds(), "", "v1"),
            )),
            ["apis", g] => super::discovery::group(self.store.kinds(), g)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::path_not_found),
            ["apis", g, v]
                if self
                    .store
                    .kinds()
                    .iter()
                    .any(|k| k.group == *g && k.version == *v) =>
            {
                Ok(json_response(
                    200,
                    &super::discovery::resource_list(self.store.kinds(), g, v),
                ))
            }
            ["api", "v1", rest @ ..] => self.route(
                "",
                "v1",
                rest,
                &parts.method,
                &query,
                &accept,
                &content_type,
                body,
            ),
            ["apis", g, v, rest @ ..] => self.route(
                g,
                v,
                rest,
                &parts.method,
                &query,
                &accept,
                &content_type,
                body,
            ),
            _ => Err(ApiError::path_not_found()),
        };
        result.unwrap_or_else(|e| error_response(&e))
    }

    fn resolve(&self, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
        let plural = |p: &str| self.store.kind_by_plural(group, version, p);
        let t = |kind, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| Target {
            kind,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            sub: sub.map(str::to_string),
        };
        let target = match rest {
            ["namespaces", ns, p, tail @ ..] if group.is_empty() || plural(p).is_some() => {
                match (plural(p), tail) {
                    (Some(k), []) => t(k, Some(ns), None, None),
                    (Some(k), [name]) => t(k, Some(ns), Some(name), None),
                    (Some(k), [name, sub]) => t(k, Some(ns), Some(name), Some(sub)),
                    (None, []) if group.is_empty() => {
                        // `namespaces/<name>/<subresource>` of the Namespace itself.
                        let k = plural("namespaces").ok_or_else(ApiError::path_not_found)?;
                        t(k, None, Some(ns), Some(p))
                    }
                    _ => return Err(ApiError::path_not_found()),
                }
            }
            [p] => t(
                plural(p).ok_or_else(ApiError::path_not_found)?,
                None,
                None,
                None,
            ),
            [p, name] => t(
                plural(p).ok_or_else(ApiError::path_not_found)?,
                None,
                Some(name),
                None,
            ),
            [p, name, sub] => t(
                plural(p).ok_or_else(ApiError::path_not_found)?,
                None,
                Some(name),
                Some(sub),
            ),
            _ => return Err(ApiError::path_not_found()),
        };
        let info = self.store.kind(target.kind);
        if target.namespace.is_some() && !info.namespaced {
            return Err(ApiError::path_not_found());
        }
        if target.name.is_some() && info.namespaced && target.namespace.is_none() {
            return Err(ApiError::path_not_found());
        }
        if let Some(sub) = &target.sub
            && !info.has_subresource(sub)
        {
            return Err(ApiError::path_not_found());
        }
        Ok(target)
    }

    #[allow(clippy::too_many_arguments)]
    fn route(
        self: &Arc<Self>,
        group: &str,
        version: &str,
        rest: &[&str],
        method: &Method,
        query: &Query,
        accept: &str,
        content_type: &str,
        body: Bytes,
    ) -> ApiResult<Response<ApiBody>> {
        let target = self.resolve(group, version, rest)?;
        let store = &self.store;
        let kind = target.kind;
        let ns = target.namespace.clone().unwrap_or_default();
        if query.get("dryRun").is_some_and(|d| !d.is_empty()) {
            return Err(ApiError::bad_request(
                "dryRun is not supported by the simulated API server",
            ));
        }
        let table = accept.contains("as=Table");
        match (&target.name, target.sub.as_deref(), method) {
            (None, _, &Method::GET) => {
                let filter = Filter {
                    namespace: target.namespace.clone(),
                    labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
                    fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?,
                };
                if query.flag("watch") {
                    return self.watch(kind, filter, query);
                }
                let limit = query.get("limit").and_then(|l| l.parse::<usize>().ok());
                let page = store.list(kind, &filter, limit, query.get("continue"))?;
                if table {
                    return Ok(json_response(
                        200,
                        &super::discovery::table(store.kind(kind), &page.items, store.now()),
                    ));
                }
                let info = store.kind(kind);
                let mut metadata = json!({ "resourceVersion": page.resource_version.to_string() });
                if let Some(c) = &page.continue_token {
                    metadata["continue"] = json!(c);
                }
                let head = format!(
                    "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
                    info.kind,
                    info.api_version(),
                    metadata
                );
                let mut r = Response::new(ApiBody::List(Box::new(ListBody::new(head, page.items))));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Ok(r)
            }
            (None, _, &Method::POST) => {
                let obj = super::patch::parse_body(&body)?;
                let created = store.create(kind, &ns, obj)?;
                Ok(obj_response(201, &created))
            }
            (None, _, &Method::DELETE) => {
                let filter = Filter {
                    namespace: target.namespace.clone(),
                    labels: LabelSelector::parse(query.get("labelSelector").unwrap_or_default())?,
                    fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or_default())?,
                };
                let opts = delete_opts(query, &body)?;
                let page = store.list(kind, &filter, None, None)?;
                let mut items = Vec::new();
                for item in page.items {
                    let ns = item
                        .ptr("/metadata/namespace")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let name = item
                        .ptr("/metadata/name")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if let Ok(o) = store.delete(kind, ns, name, &opts) {
                        items.push((*o).clone());
                    }
                }
                let info = store.kind(kind);
                Ok(json_response(
                    200,
                    &json!({ "kind": format!("{}List", info.kind), "apiVersion": info.api_version(),
                             "metadata": { "resourceVersion": store.resource_version().to_string() }, "items": items }),
                ))
            }
            (Some(name), None | Some("status"), &Method::GET) => {
                let obj = store.get(kind, &ns, name)?;
                if table {
                    return Ok(json_response(
                        200,
                        &super::discovery::table(store.kind(kind), &[obj], store.now()),
                    ));
                }
                Ok(obj_response(200, &obj))
            }
            (Some(name), sub @ (None | Some("status")), &Method::PUT) => {
                let obj = super::patch::parse_body(&body)?;
                let sub = if sub.is_some() {
                    Sub::Status
                } else {
                    Sub::Main
                };
                Ok(obj_response(
                    200,
                    &*store.update(kind, &ns, name, obj, sub)?,
                ))
            }
            (Some(name), sub @ (None | Some("status")), &Method::PATCH) => {
                let pk = PatchKind::from_content_type(content_type).ok_or_else(|| {
                    ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
                    ))
                })?;
                if pk == PatchKind::Apply && query.get("fieldManager").is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request(
                        "PATCH, application/apply-patch+yaml requests require fieldManager to be set",
                    ));
                }
                let sub = if sub.is_some() {
                    Sub::Status
                } else {
                    Sub::Main
                };
                Ok(obj_response(
                    200,
                    &*store.patch(kind, &ns, name, &pk, &body, sub)?,
                ))
            }
            (Some(name), None, &Method::DELETE) => {
                let opts = delete_opts(query, &body)?;
                let obj = store.delete(kind, &ns, name, &opts)?;
                Ok(obj_response(200, &obj))
            }
            (Some(name), Some("binding"), &Method::POST) => {
                let b = super::patch::parse_body(&body)?;
                let node = b
                    .ptr("/target/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if node.is_empty() {
                    return Err(ApiError::invalid(
                        store.kind(kind),
                        name,
                        "target.name",
                        "Required value",
                    ));
                }
                store.bind(kind, &ns, name, node)?;
                Ok(json_response(201, &success(201, None)))
            }
            (Some(name), Some("eviction"), &Method::POST) => {
                let b = super::patch::parse_body(&body)?;
                let opts = match b.get("deleteOptions") {
                    Some(d) => delete_opts(
                        query,
                        &Bytes::from(serde_json::to_vec(d).unwrap_or_default()),
                    )?,
                    None => delete_opts(query, &Bytes::new())?,
                };
                store.evict(kind, self.pdb_kind, &ns, name, &opts)?;
                Ok(json_response(201, &success(201, None)))
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            ))),
        }
    }

    fn watch(
        self: &Arc<Self>,
        kind: KindId,
        filter: Filter,
        query: &Query,
    ) -> ApiResult<Response<ApiBody>> {
        let from =
            match query.get("resourceVersion") {
                None | Some("") | Some("0") => None,
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid resource version: {rv:?}"))
                })?),
            };
        let initial_end = query.flag("sendInitialEvents") && query.flag("allowWatchBookmarks");
        let (watcher, rx) = self.store.watch(kind, filter, from, initial_end);
        let deadline = query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .filter(|t| *t > 0)
            .map(|t| Box::pin(tokio::time::sleep(Duration::from_secs(t))));
        let body = WatchBody {
            rx,
            shared: self.clone(),
            kind,
            watcher,
            bookmarks: query.flag("allowWatchBookmarks"),
            bookmark_timer: Box::pin(tokio::time::sleep(BOOKMARK_EVERY)),
            deadline,
            done: false,
        };
        let mut r = Response::new(ApiBody::Watch(Box::new(body)));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        Ok(r)
    }
}

fn delete_opts(query: &Query, body: &Bytes) -> ApiResult<DeleteOpts> {
    let b: Value = if body.is_empty() {
        Value::Null
    } else {
        super::patch::parse_body(body)?
    };
    Ok(DeleteOpts {
        grace_period_seconds: b
            .get("gracePeriodSeconds")
            .and_then(Value::as_i64)
            .or_else(|| query.get("gracePeriodSeconds").and_then(|g| g.parse().ok())),
        propagation_policy: b
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| query.get("propagationPolicy").map(str::to_string)),
        precondition_uid: b
            .ptr("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_rv: b
            .ptr("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}
