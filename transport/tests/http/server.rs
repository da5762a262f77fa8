//! A scripted HTTP receiver on 127.0.0.1:0 that records every request.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::Notify;

/// What the server does with request number `n` (0-based).
pub enum Reply {
    /// Answer with this status, extra headers and body.
    Status(u16, Vec<(&'static str, String)>, String),
    /// Never answer.
    Hang,
}

impl Reply {
    pub fn status(code: u16) -> Self {
        Reply::Status(code, Vec::new(), String::new())
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

struct Shared {
    script: Box<Script>,
    seen: Mutex<Vec<Recorded>>,
    arrived: Notify,
}

pub struct TestServer {
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared {
            script: Box::new(script),
            seen: Mutex::new(Vec::new()),
            arrived: Notify::new(),
        });
        let app = Router::new()
            .route("/ingest", axum::routing::post(handle))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            url: format!("http://{addr}/ingest"),
            shared,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.shared.seen.lock().expect("lock").len()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// Waits (at most 10 s) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            loop {
                let arrived = self.shared.arrived.notified();
                if self.count() >= n {
                    return;
                }
                arrived.await;
            }
        })
        .await
        .expect("requests did not arrive in time");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let n = {
        let mut seen = shared.seen.lock().expect("lock");
        seen.push(Recorded {
            headers,
            body: body.to_vec(),
        });
        seen.len() - 1
    };
    let reply = (shared.script)(n);
    shared.arrived.notify_waiters();
    match reply {
        Reply::Hang => std::future::pending().await,
        Reply::Status(code, extra, body) => {
            let mut response = (StatusCode::from_u16(code).expect("status"), body).into_response();
            for (name, value) in extra {
                response.headers_mut().insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            response
        }
    }
}
