//! Test harness: one fakeaws (moto + tests/fakeaws extensions) server per test binary, started on
//! a free port of 127.0.0.1 with `$STOWAGE_FAKEAWS_PYTHON` (or `~/.cache/stowage/venv/bin/python`),
//! and a fresh emulated AWS account per test (`x-moto-account-id`), so tests run in parallel
//! without seeing each other's subnets, launch templates, instances, faults or ICE entries.
//!
//! The server exits when this process's end of its stdin closes (the test binary finished or
//! died); `FakeAws` also kills it by PID when dropped.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use stowage_aws::sdk::{AwsConfig, Clients, StaticCredentials};

/// A running fakeaws server.
pub struct FakeAws {
    pub endpoint: String,
    child: Child,
}

impl Drop for FakeAws {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("STOWAGE_FAKEAWS_PYTHON").map(PathBuf::from)
        && p.exists()
    {
        return p;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let fallback = home.join(".cache/stowage/venv/bin/python");
    if fallback.exists() {
        return fallback;
    }
    panic!(
        "the AWS emulator's Python was not found (STOWAGE_FAKEAWS_PYTHON unset or missing, and no {}): run `make venv` first",
        fallback.display()
    );
}

/// `tests/fakeaws/fakeaws.py` of the workspace, found from whichever crate includes this module.
fn script() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .map(|dir| dir.join("tests/fakeaws/fakeaws.py"))
        .find(|path| path.exists())
        .expect("tests/fakeaws/fakeaws.py above the crate's manifest directory")
}

impl FakeAws {
    /// Starts a server and waits until it answers.
    pub fn start() -> FakeAws {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(python())
            .arg(script())
            .args([
                "--port",
                &port.to_string(),
                "--quiet",
                "--exit-on-stdin-eof",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start tests/fakeaws/fakeaws.py");
        let server = FakeAws {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
        };
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if server
                .control("GET", "/_fake/health", "000000000000", None)
                .0
                == 200
            {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("fakeaws did not answer on {} within 60 s", server.endpoint);
    }

    /// A control request (`/_fake/...`) for `account`; returns (status, body).
    pub fn control(
        &self,
        method: &str,
        path: &str,
        account: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, String) {
        let addr = self.endpoint.trim_start_matches("http://");
        let Ok(mut stream) = TcpStream::connect(addr) else {
            return (0, String::new());
        };
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nx-moto-account-id: {account}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        if stream.write_all(request.as_bytes()).is_err() {
            return (0, String::new());
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }
}

/// The server shared by every test of this binary.
pub fn server() -> &'static FakeAws {
    static SERVER: OnceLock<FakeAws> = OnceLock::new();
    SERVER.get_or_init(FakeAws::start)
}

/// A fresh emulated AWS account.
pub fn new_account() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!(
        "{:012}",
        300_000_000_000 + u64::from(std::process::id()) * 1000 + n
    )
}

/// One test's view of the emulator: its own account and SDK clients.
pub struct Account {
    pub id: String,
    pub clients: Clients,
}

impl Account {
    pub async fn new() -> Account {
        let id = new_account();
        let config = AwsConfig {
            region: "us-east-1".to_string(),
            endpoint_url: Some(server().endpoint.clone()),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            static_credentials: Some(StaticCredentials {
                access_key_id: "testing".to_string(),
                secret_access_key: "testing".to_string(),
            }),
            extra_headers: BTreeMap::from([("x-moto-account-id".to_string(), id.clone())]),
            ..AwsConfig::default()
        };
        let clients = Clients::new(&config).await;
        Account { id, clients }
    }

    /// POSTs a control payload (`/_fake/ice`, `/_fake/faults`, `/_fake/prices`) for this account.
    pub fn post(&self, path: &str, body: serde_json::Value) {
        let (status, text) = server().control("POST", path, &self.id, Some(&body));
        assert_eq!(status, 200, "POST {path}: {text}");
    }

    /// A raw SQS JSON-protocol call (`CreateQueue`, `SendMessage`) for this account, for setting up
    /// what the provider only reads.
    pub fn sqs(&self, action: &str, body: serde_json::Value) -> serde_json::Value {
        let addr = server().endpoint.trim_start_matches("http://").to_string();
        let body = body.to_string();
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nx-moto-account-id: {}\r\nX-Amz-Target: AmazonSQS.{action}\r\nContent-Type: application/x-amz-json-1.0\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.id,
            body.len()
        );
        let mut stream = TcpStream::connect(&addr).expect("connect to fakeaws");
        stream
            .write_all(request.as_bytes())
            .expect("send SQS request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read SQS response");
        let (head, payload) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "SQS {action} failed: {response}"
        );
        serde_json::from_str(payload).expect("SQS JSON response")
    }

    /// A raw IAM Query-protocol call (`CreateRole`) for this account, for setting up what the
    /// provider only uses; returns the XML response.
    pub fn iam(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("iam", "2010-05-08", action, params)
    }

    /// A raw EC2 Query-protocol call for this account; returns the XML response.
    pub fn ec2_query(&self, action: &str, params: &[(&str, &str)]) -> String {
        self.query("ec2", "2016-11-15", action, params)
    }

    /// A raw Query-protocol call to `service` for this account; returns the XML response.
    pub fn query(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: &[(&str, &str)],
    ) -> String {
        fn encode(s: &str) -> String {
            s.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect()
        }
        let addr = server().endpoint.trim_start_matches("http://").to_string();
        let mut body = format!("Action={action}&Version={version}");
        for (k, v) in params {
            body.push_str(&format!("&{}={}", encode(k), encode(v)));
        }
        let request = format!(
            "POST / HTTP/1.1\r\nHost: {addr}\r\nx-moto-account-id: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.id,
            body.len()
        );
        let mut stream = TcpStream::connect(&addr).expect("connect to fakeaws");
        stream
            .write_all(request.as_bytes())
            .expect("send query request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read query response");
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{service} {action} failed: {response}"
        );
        response
    }

    /// Creates an IAM role EC2 instances may assume.
    pub fn create_role(&self, name: &str) {
        let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
        self.iam(
            "CreateRole",
            &[("RoleName", name), ("AssumeRolePolicyDocument", trust)],
        );
    }

    /// How many times this account called each AWS action.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        let (status, text) = server().control("GET", "/_fake/state", &self.id, None);
        assert_eq!(status, 200, "GET /_fake/state: {text}");
        let state: serde_json::Value = serde_json::from_str(&text).expect("state JSON");
        serde_json::from_value(state["calls"].clone()).expect("calls map")
    }

    pub fn call_count(&self, action: &str) -> u64 {
        self.calls().get(action).copied().unwrap_or(0)
    }
}
