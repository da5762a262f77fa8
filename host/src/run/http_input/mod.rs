//! The `http` input: an ingest endpoint. A client `POST`s a body of frames,
//! one per line, to `/v1/ingest` (or `/`); each line goes to the input's
//! decoder and through the stage chains like a file line.
//!
//! Invariant: **2xx means committed.** The answer is sent only after the
//! pipeline thread has replied for the request's frames, i.e. after its
//! events are committed to the buffer (or rejected, dead-lettered, dropped
//! by a policy; the counts say which). A client that got 2xx may forget
//! what it sent. Any other answer means none of the request's events were
//! accepted, so the client may send it again:
//!
//! | answer | when |
//! |---|---|
//! | 200 `{"accepted","rejected","decode_errors","dropped"}` | committed |
//! | 400 | the body is not valid gzip |
//! | 401 + `WWW-Authenticate: Bearer` | no valid token (checked before the body is read) |
//! | 404, 405 | not `POST /v1/ingest` or `POST /` |
//! | 408 | the body did not arrive whole within `body_timeout_ms` |
//! | 413 | the body, or its decompressed form, exceeds the cap (16 MiB) |
//! | 413, `"too_many_lines"` | per-line results asked for more than 10,000 lines |
//! | 415 | a `Content-Encoding` other than gzip or identity |
//! | 431 | the request's head exceeds 64 KiB |
//! | 503 + `Retry-After: 1`, `"busy"` | `max_in_flight` requests are already in progress |
//! | 503 + `Retry-After: 1`, `"too_many_connections"` | a new connection beyond `max_connections` (then closed) |
//! | 503 + `Retry-After: 1`, `"buffer_full"` | the buffer is full and refuses the batch (`when_full = "block"`) |
//! | 503 | the host is shutting down |
//! | 500 | any other pipeline failure, with the message |
//! | no answer, connection closed | headers not complete within `header_timeout_ms`, or idle past `idle_timeout_ms` |
//!
//! With `?results=lines` the 200 answer also lists each line's result
//! (accepted with its id, rejected, dropped, sampled out, decode error;
//! see [`results`]), still after the commit.
//!
//! The same ingest can be served on a Unix domain socket (`socket = {…}`,
//! see [`unix`]), besides or instead of TCP: same handler, limits and
//! deadlines; `max_connections` and `max_in_flight` are shared.
//!
//! Lines are split on `\n`; a trailing `\r` is stripped and blank lines are
//! skipped. Frames from this input carry no stable key: each event gets a
//! fresh id, so a request re-sent after a lost 2xx is stored twice.
//!
//! What one client can hold, so that a hostile network cannot take the
//! input down (each bound is a config key of the input):
//! - a connection slot (`max_connections`): beyond it a new connection is
//!   accepted, told 503 and closed at once, so the host keeps serving the
//!   connections it has; `accept` failing (e.g. out of file descriptors)
//!   backs off briefly instead of spinning, and the input keeps going;
//! - the slot for at most `header_timeout_ms` before its headers are in,
//!   and `idle_timeout_ms` between requests ([`conn`]);
//! - a request slot (`max_in_flight`) and up to the body cap of memory, for
//!   at most `body_timeout_ms` while the body arrives, then until the
//!   pipeline thread answers;
//! - nothing at all without a valid token ([`auth`]).
//!
//! Shutdown: when the stop signal turns true the input stops accepting
//! connections, closes idle ones and lets requests in flight finish (for
//! at most [`SHUTDOWN_GRACE`]); the pipeline thread still answers them, so
//! a request that was handed over is still answered after its commit.

mod auth;
mod body;
mod conn;
mod handler;
mod results;
mod tally;
mod unix;

use std::net::SocketAddr;
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::worker::Work;
use crate::config::{IngestSocket, InputConfig};
use auth::Auth;
use tally::{Event, Tally};

/// The default cap on a request body, before and after decompression.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// How long requests in flight may take to finish once the input is asked
/// to stop; connections still open after that are dropped unanswered.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long the accept loop pauses after `accept` fails for a reason that
/// is not the connection's own (out of file descriptors or memory): long
/// enough not to spin a core on a listener that stays readable, short
/// enough to pick up again soon after descriptors free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What a connection beyond `max_connections` is told before it is closed;
/// written without waiting (a fresh socket's send buffer has room).
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 101\r\n\
\r\n\
{\"error\":\"too_many_connections\",\"message\":\"the input serves its maximum of connections; retry later\"}";

/// How an http input treats its clients: who may post and how much of the
/// host one client may hold. From the input's config.
#[derive(Clone)]
pub struct HttpOptions {
    /// Who may post.
    auth: Auth,
    /// The bounds on one client.
    limits: Limits,
}

/// The bounds on what one client can hold (see the module header).
#[derive(Debug, Clone, Copy)]
struct Limits {
    header_timeout: Duration,
    body_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    max_in_flight: usize,
    max_body_bytes: usize,
}

impl HttpOptions {
    /// The options of an http input's config; `None` for other inputs.
    pub fn from_config(input: &InputConfig) -> Option<HttpOptions> {
        let InputConfig::Http {
            auth,
            header_timeout_ms,
            body_timeout_ms,
            idle_timeout_ms,
            max_connections,
            max_in_flight,
            ..
        } = input
        else {
            return None;
        };
        Some(HttpOptions {
            auth: Auth::from_config(auth.as_ref()),
            limits: Limits {
                header_timeout: Duration::from_millis(*header_timeout_ms),
                body_timeout: Duration::from_millis(*body_timeout_ms),
                idle_timeout: Duration::from_millis(*idle_timeout_ms),
                max_connections: (*max_connections).max(1),
                max_in_flight: (*max_in_flight).max(1),
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            },
        })
    }
}

/// An http input whose sockets are bound but which does not serve yet:
/// split from [`HttpInput::run`] so that a port in use (or a socket file
/// another process serves) fails `halyard run` at start, before anything
/// else runs.
pub struct HttpInput {
    name: String,
    listener: Option<TcpListener>,
    local_addr: Option<SocketAddr>,
    unix: Option<unix::UnixBound>,
    options: HttpOptions,
}

impl HttpInput {
    /// An input `name` with no listener yet (see [`HttpInput::listen_tcp`]
    /// and [`HttpInput::listen_unix`]).
    pub fn new(name: &str, options: HttpOptions) -> HttpInput {
        warn_if_few_descriptors(name, options.limits.max_connections);
        HttpInput {
            name: name.to_string(),
            listener: None,
            local_addr: None,
            unix: None,
            options,
        }
    }

    /// Binds `listen` for the input `name` (TCP only).
    pub async fn bind(
        name: &str,
        listen: SocketAddr,
        options: HttpOptions,
    ) -> std::io::Result<HttpInput> {
        let mut input = HttpInput::new(name, options);
        input.listen_tcp(listen).await?;
        Ok(input)
    }

    /// Binds the TCP address `listen`.
    pub async fn listen_tcp(&mut self, listen: SocketAddr) -> std::io::Result<()> {
        let listener = TcpListener::bind(listen).await?;
        self.local_addr = Some(listener.local_addr()?);
        self.listener = Some(listener);
        Ok(())
    }

    /// Makes and binds the Unix socket `socket` (see [`unix`]).
    pub fn listen_unix(&mut self, socket: &IngestSocket) -> std::io::Result<()> {
        self.unix = Some(unix::UnixBound::bind(socket)?);
        Ok(())
    }

    /// The input's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TCP address actually bound (the real port when the config said
    /// 0); `None` when the input serves only a Unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Serves until `stop` turns true, then stops accepting, lets requests
    /// in flight finish (at most [`SHUTDOWN_GRACE`]) and drops its sender,
    /// so the pipeline thread can stop once it has answered them. The TCP
    /// listener and the Unix socket share one `max_connections` and one
    /// `max_in_flight`; the socket file is removed once the input stops.
    pub async fn run(self, work: Sender<Work>, stop: watch::Receiver<bool>) {
        let limits = self.options.limits;
        let shared = Arc::new(Shared {
            name: self.name.clone(),
            origin: format!("http:{}", self.name),
            work: Mutex::new(Some(work)),
            auth: self.options.auth,
            limits,
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight)),
            tally: Tally::new(&self.name),
        });
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let abort = CancellationToken::new();
        tracing::info!(
            input = %self.name,
            listen = %self.local_addr.map(|a| a.to_string()).unwrap_or_default(),
            socket = %self.unix.as_ref().map(|u| u.path().display().to_string()).unwrap_or_default(),
            authenticated = !matches!(shared.auth, Auth::Open),
            max_connections = limits.max_connections,
            max_in_flight = limits.max_in_flight,
            "http input serving"
        );
        let loops = Loops {
            shared: &shared,
            slots: &slots,
            stop: &stop,
            abort: &abort,
        };
        let tcp = async {
            if let Some(listener) = self.listener {
                loops.accept(Listener::Tcp(listener)).await;
            }
        };
        let unix = async {
            if let Some(bound) = self.unix {
                loops.accept(Listener::Unix(bound)).await;
            }
        };
        tokio::join!(tcp, unix);
        // Every connection holds a slot until it ends: all slots back means
        // all connections are done.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
        if drained.is_err() {
            tracing::warn!(
                input = %self.name,
                "http input: requests still open after the shutdown grace; dropping them"
            );
            abort.cancel();
        }
        // Connections dropped above may still be winding down; they find no
        // sender and answer 503, and none keeps the pipeline alive.
        shared.take_sender();
        shared.tally.log_totals();
        tracing::info!(input = %self.name, "http input stopped");
    }
}

/// A bound listener of the input.
enum Listener {
    Tcp(TcpListener),
    Unix(unix::UnixBound),
}

/// Who is on the other end of a connection, for the logs.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    /// A TCP client's address.
    Tcp(SocketAddr),
    /// A process on the Unix socket, with its credentials when the kernel
    /// gives them.
    Unix {
        /// Its user id.
        uid: Option<u32>,
        /// Its process id.
        pid: Option<i32>,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(addr) => write!(f, "{addr}"),
            Peer::Unix { uid, pid } => {
                f.write_str("unix")?;
                if let Some(uid) = uid {
                    write!(f, " uid={uid}")?;
                }
                if let Some(pid) = pid {
                    write!(f, " pid={pid}")?;
                }
                Ok(())
            }
        }
    }
}

/// What every accept loop of one input shares.
#[derive(Clone, Copy)]
struct Loops<'a> {
    shared: &'a Arc<Shared>,
    slots: &'a Arc<Semaphore>,
    stop: &'a watch::Receiver<bool>,
    abort: &'a CancellationToken,
}

impl Loops<'_> {
    /// Accepts on `listener` until `stop`: each connection gets a slot
    /// under `max_connections` or is told 503 and closed.
    async fn accept(self, listener: Listener) {
        let mut stopping = self.stop.clone();
        loop {
            let accepted = tokio::select! {
                () = stopped(&mut stopping) => break,
                accepted = accept_one(&listener) => accepted,
            };
            match accepted {
                Ok((stream, peer)) => match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => {
                        let (shared, stop, abort) =
                            (self.shared.clone(), self.stop.clone(), self.abort.clone());
                        match stream {
                            Stream::Tcp(s) => {
                                let _ = s.set_nodelay(true);
                                tokio::spawn(conn::serve(s, peer, slot, shared, stop, abort));
                            }
                            Stream::Unix(s) => {
                                tokio::spawn(conn::serve(s, peer, slot, shared, stop, abort));
                            }
                        }
                    }
                    Err(_) => {
                        self.shared.tally.note(Event::ConnectionRefused, &peer);
                        refuse(&stream);
                    }
                },
                Err(err) if is_connection_error(&err) => {}
                Err(err) => {
                    self.shared.tally.accept_error(&err);
                    tokio::select! {
                        () = stopped(&mut stopping) => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            }
        }
        // Dropping the listener closes it (and removes the socket file).
        drop(listener);
    }
}

/// An accepted connection.
enum Stream {
    Tcp(TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept_one(listener: &Listener) -> std::io::Result<(Stream, Peer)> {
    match listener {
        Listener::Tcp(l) => {
            let (stream, peer) = l.accept().await?;
            Ok((Stream::Tcp(stream), Peer::Tcp(peer)))
        }
        Listener::Unix(u) => {
            let stream = u.accept().await?;
            let cred = stream.peer_cred().ok();
            let peer = Peer::Unix {
                uid: cred.map(|c| c.uid()),
                pid: cred.and_then(|c| c.pid()),
            };
            Ok((Stream::Unix(stream), peer))
        }
    }
}

/// Descriptors the rest of the host may need besides the http input's
/// connections (buffer, plugins, transport, status server, inputs).
const DESCRIPTOR_RESERVE: u64 = 64;

/// Warns when `max_connections` connections could use up the process's
/// open-file limit: the input then keeps serving (accept errors back off),
/// but new clients wait until a connection ends, and other parts of the
/// host may fail to open files meanwhile.
fn warn_if_few_descriptors(name: &str, max_connections: usize) {
    use rustix::process::{Resource, getrlimit};
    let Some(limit) = getrlimit(Resource::Nofile).current else {
        return;
    };
    let wanted = (max_connections as u64).saturating_add(DESCRIPTOR_RESERVE);
    if wanted > limit {
        tracing::warn!(
            input = %name,
            max_connections,
            open_file_limit = limit,
            "http input: max_connections plus {DESCRIPTOR_RESERVE} for the rest of the host \
             exceeds the open-file limit; lower max_connections or raise the limit \
             (LimitNOFILE=, ulimit -n)"
        );
    }
}

/// Resolves once `stop` is true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Tells a connection beyond `max_connections` so and closes it (when
/// the caller drops it), without waiting on the client for anything.
fn refuse(stream: &Stream) {
    let _ = match stream {
        Stream::Tcp(s) => s.try_write(TOO_MANY_CONNECTIONS),
        Stream::Unix(s) => s.try_write(TOO_MANY_CONNECTIONS),
    };
}

/// Whether an `accept` error concerns only the connection being accepted
/// (it went away before it was accepted), so the next accept can follow at
/// once; anything else (out of descriptors or memory) calls for a pause.
fn is_connection_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted | WouldBlock
    )
}

/// What every connection and request needs.
struct Shared {
    name: String,
    origin: String,
    /// The way to the pipeline thread; `None` once the input stopped.
    work: Mutex<Option<Sender<Work>>>,
    /// Who may post.
    auth: Auth,
    /// The bounds on one client.
    limits: Limits,
    /// One permit per request being read or processed.
    in_flight: Arc<Semaphore>,
    /// What was refused or cut, for the logs.
    tally: Tally,
}

impl Shared {
    /// A sender for one request, if the input still runs. Clones are held
    /// only while sending, so taking this one releases the pipeline.
    fn sender(&self) -> Option<Sender<Work>> {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn take_sender(&self) {
        self.work
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_too_many_connections_answer_is_well_formed() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse().ok())
            .expect("content-length");
        assert_eq!(length, body.len());
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["error"], "too_many_connections");
    }
}
