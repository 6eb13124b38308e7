//! The agent's life: connect, `Hello`/`Welcome`, serve the server's messages, batch events,
//! heartbeat, and reconnect with backoff when the connection drops, with runs going on and
//! unsent events kept.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cobalt_proto::{AgentMessage, Event, FileReply, Hello, ServerMessage, Welcome};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::connection::{self, Endpoint, Socket};
use crate::exec::Identity;
use crate::node::{self, NodeDirs};
use crate::outbox::Outbox;
use crate::run::{RunContext, Runs};
use crate::{AgentError, files};

/// Most events in one `Events` message; a full batch is sent at once.
pub const BATCH_MAX: usize = 256;
/// The first reconnect delay; it doubles after each failed attempt, up to [`BACKOFF_MAX`].
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long the server has to answer `Hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long runs killed on leaving get to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent needs to join a pool.
#[derive(Clone)]
pub struct AgentConfig {
    /// The Batch server's URL (`http://host:port`), or the agent endpoint (`ws://…`).
    pub server: String,
    /// The Batch account.
    pub account: String,
    /// The pool to join.
    pub pool_id: String,
    /// The node root (`AZ_BATCH_NODE_ROOT_DIR`); created if missing.
    pub node_root: PathBuf,
    /// The agent token ([`cobalt_proto::agent_token`]).
    pub token: String,
    /// The node id the server assigned when it started this agent, if any.
    pub node_id: Option<String>,
    /// Variables every task on this node gets (`--node-env`): after the server's, so a
    /// machine's own setting wins; never `AZ_BATCH_*`.
    pub node_env: Vec<(String, String)>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("server", &self.server)
            .field("account", &self.account)
            .field("pool_id", &self.pool_id)
            .field("node_root", &self.node_root)
            .field("token", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("node_env", &self.node_env)
            .finish()
    }
}

/// Why [`run`] returned normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The server said `Leave`.
    Left,
    /// The shutdown future completed (SIGINT/SIGTERM): every run was killed.
    Shutdown,
}

/// Runs the agent until the server says `Leave`, `shutdown` completes, or the server refuses
/// the token. Processes are killed in every case (runs survive only reconnects).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<Exit, AgentError> {
    let mut agent = Agent::new(config)?;
    let result = tokio::select! {
        result = agent.serve() => result,
        () = shutdown => Ok(Exit::Shutdown),
    };
    if !matches!(result, Ok(Exit::Left)) {
        agent.runs.kill_all();
        agent.runs.wait_idle(REAP_TIMEOUT).await;
    }
    result
}

struct Agent {
    config: AgentConfig,
    endpoint: Endpoint,
    dirs: Arc<NodeDirs>,
    http: reqwest::Client,
    identity: Identity,
    hostname: String,
    runs: Runs,
    events_tx: mpsc::UnboundedSender<Event>,
    events_rx: mpsc::UnboundedReceiver<Event>,
    /// Events received from runs and not yet sent.
    outbox: Outbox,
    node_id: Option<String>,
    /// A `Welcome` has been received at least once.
    welcomed: bool,
}

/// How a session ended without an error worth stopping for.
enum SessionEnd {
    /// The server said `Leave`; everything is done.
    Left,
    /// The connection dropped after `Welcome`.
    Dropped,
}

/// The mutable state of one connection.
struct Link {
    ws: Socket,
    ctx: Arc<RunContext>,
    /// Half the server's heartbeat: send something at least this often.
    heartbeat: Duration,
    last_sent: Instant,
    /// Three heartbeats: hearing nothing (not even a pong) for this long means the connection
    /// is dead even if TCP has not noticed.
    silence: Duration,
    last_heard: Instant,
    /// When the outbox must be sent next.
    flush_at: Option<Instant>,
    replies_tx: mpsc::UnboundedSender<FileReply>,
    replies_rx: mpsc::UnboundedReceiver<FileReply>,
}

impl Link {
    async fn send(&mut self, message: &AgentMessage) -> Result<(), AgentError> {
        self.ws.send(Message::text(to_json(message)?)).await?;
        self.last_sent = Instant::now();
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), AgentError> {
        self.ws.send(Message::Ping(Default::default())).await?;
        self.last_sent = Instant::now();
        Ok(())
    }
}

impl Agent {
    fn new(config: AgentConfig) -> Result<Self, AgentError> {
        let endpoint = Endpoint::parse(&config.server)?;
        let dirs = Arc::new(NodeDirs::prepare(&config.node_root)?);
        let mut identity = Identity::detect();
        if identity.is_root && !node::reachable_by_others(&dirs.root) {
            // `nobody` could not even enter its working directory: rather than failing every
            // non-elevated task, run them as root, loudly.
            tracing::warn!(
                root = %dirs.root.display(),
                "the node root is not reachable by other users (a parent directory lacks o+x): \
                 non-elevated tasks will run as root"
            );
            identity = identity.without_switching();
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .build()?;
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        Ok(Self {
            node_id: config.node_id.clone(),
            config,
            endpoint,
            dirs,
            http,
            identity,
            hostname: hostname(),
            runs: Runs::default(),
            events_tx,
            events_rx,
            outbox: Outbox::default(),
            welcomed: false,
        })
    }

    /// Connects, serves, reconnects; returns on `Leave` or a fatal error.
    async fn serve(&mut self) -> Result<Exit, AgentError> {
        let mut backoff = BACKOFF_START;
        loop {
            match self.session().await {
                Ok(SessionEnd::Left) => return Ok(Exit::Left),
                Ok(SessionEnd::Dropped) => backoff = BACKOFF_START,
                Err(e) if e.is_fatal() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot reach the server")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// One connection: handshake, then messages until it drops or the server says `Leave`.
    async fn session(&mut self) -> Result<SessionEnd, AgentError> {
        let (mut ws, ip) = connection::connect(&self.endpoint, &self.config.token).await?;
        let running = self.unfinished_runs();
        let hello = AgentMessage::Hello(Hello {
            account: self.config.account.clone(),
            pool_id: self.config.pool_id.clone(),
            node_id: self.node_id.clone(),
            hostname: self.hostname.clone(),
            ip_address: ip.to_string(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            is_root: self.identity.is_root,
            running,
        });
        ws.send(Message::text(to_json(&hello)?)).await?;
        let answer = tokio::time::timeout(WELCOME_TIMEOUT, read_welcome(&mut ws))
            .await
            .map_err(|_| AgentError::WelcomeTimeout(WELCOME_TIMEOUT))??;
        let (welcome, kills) = match answer {
            Answer::Welcome(welcome, kills) => (welcome, kills),
            // Never welcomed: the server refuses this agent (token, account or pool).
            Answer::Leave { .. } if !self.welcomed => return Err(AgentError::Refused),
            // Welcomed before: the node was removed while the connection was down.
            Answer::Leave { wipe } => {
                self.leave(wipe).await;
                let _ = ws.close(None).await;
                return Ok(SessionEnd::Left);
            }
        };
        self.welcomed = true;
        tracing::info!(node = %welcome.node_id, pool = %self.config.pool_id, "joined the pool");
        self.node_id = Some(welcome.node_id.clone());
        self.runs.set_slots(welcome.task_slots);
        for run in kills {
            self.runs.kill(run);
        }
        let (replies_tx, replies_rx) = mpsc::unbounded_channel();
        let mut link = Link {
            ws,
            ctx: Arc::new(RunContext {
                dirs: self.dirs.clone(),
                http: self.http.clone(),
                identity: self.identity,
                base_env: std::env::vars_os()
                    .filter(|(name, _)| name.to_str().is_some_and(cobalt_proto::inherited_by_tasks))
                    .chain(
                        welcome
                            .environment
                            .into_iter()
                            .chain(self.config.node_env.iter().cloned())
                            .map(|(k, v)| (k.into(), v.into())),
                    )
                    .collect(),
                node_env: self
                    .dirs
                    .node_variables()
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
                events: self.events_tx.clone(),
            }),
            heartbeat: Duration::from_millis(welcome.heartbeat_seconds.max(1) * 500),
            last_sent: Instant::now(),
            silence: Duration::from_secs(welcome.heartbeat_seconds.max(1) * 3),
            last_heard: Instant::now(),
            flush_at: None,
            replies_tx,
            replies_rx,
        };
        match self.serve_link(&mut link).await {
            Ok(end) => Ok(end),
            Err(e) => {
                tracing::warn!(error = %e, "lost the connection to the server");
                Ok(SessionEnd::Dropped)
            }
        }
    }

    /// What `Hello::running` lists: the runs still going, and the runs that ended but whose
    /// `Ended` has not been sent yet (it follows right after `Welcome`). The server must not
    /// take either for lost.
    fn unfinished_runs(&mut self) -> Vec<u64> {
        let mut runs: BTreeSet<u64> = self.runs.ids().into_iter().collect();
        while let Ok(event) = self.events_rx.try_recv() {
            self.outbox.add(event, Instant::now());
        }
        runs.extend(self.outbox.ready().iter().filter_map(|e| match e {
            Event::Ended(end) => Some(end.run),
            Event::Began { .. } | Event::Started { .. } | Event::Withdrawn { .. } => None,
        }));
        runs.into_iter().collect()
    }

    /// The message loop of one connection.
    async fn serve_link(&mut self, link: &mut Link) -> Result<SessionEnd, AgentError> {
        // Events kept from a previous connection go first.
        self.flush(link).await?;
        loop {
            let ping_at = link.last_sent + link.heartbeat;
            let dead_at = link.last_heard + link.silence;
            let flush_at = link.flush_at;
            tokio::select! {
                message = link.ws.next() => {
                    link.last_heard = Instant::now();
                    if let Some(end) = self.incoming(message, link).await? {
                        return Ok(end);
                    }
                }
                () = tokio::time::sleep_until(dead_at) => {
                    return Err(AgentError::ServerSilent(link.silence));
                }
                Some(event) = self.events_rx.recv() => self.queue(event, link).await?,
                () = sleep_until(flush_at), if flush_at.is_some() => self.flush(link).await?,
                Some(reply) = link.replies_rx.recv() => {
                    link.send(&AgentMessage::FileReply(reply)).await?;
                }
                () = tokio::time::sleep_until(ping_at) => link.ping().await?,
            }
        }
    }

    /// One frame from the server. `Some` ends the session.
    async fn incoming(
        &mut self,
        frame: Option<Result<Message, WsError>>,
        link: &mut Link,
    ) -> Result<Option<SessionEnd>, AgentError> {
        match frame {
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerMessage>(&text) {
                Ok(ServerMessage::Leave { wipe }) => {
                    return Ok(Some(self.leave_link(link, wipe).await));
                }
                Ok(message) => self.handle(message, link),
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a message the agent does not understand")
                }
            },
            Some(Ok(Message::Close(_))) | None => return Ok(Some(SessionEnd::Dropped)),
            // Pings are answered by the WebSocket layer on the next read or write.
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
        Ok(None)
    }

    /// Adds an event (and whatever else is waiting) to the outbox; sends a full batch at once,
    /// else makes sure the outbox is sent when it is due.
    async fn queue(&mut self, event: Event, link: &mut Link) -> Result<(), AgentError> {
        let now = Instant::now();
        self.outbox.add(event, now);
        while self.outbox.ready_len() < BATCH_MAX {
            let Ok(event) = self.events_rx.try_recv() else {
                break;
            };
            self.outbox.add(event, now);
        }
        if self.outbox.ready_len() >= BATCH_MAX {
            self.flush(link).await?;
        } else {
            link.flush_at = self.outbox.due(now);
        }
        Ok(())
    }

    /// Everything but `Leave`.
    fn handle(&mut self, message: ServerMessage, link: &Link) {
        match message {
            ServerMessage::Run { runs } => {
                for assignment in runs {
                    self.runs.start(link.ctx.clone(), assignment);
                }
            }
            ServerMessage::Withdraw { runs } => {
                for run in runs {
                    if self.runs.withdraw(run) {
                        let _ = link.ctx.events.send(Event::Withdrawn { run });
                    }
                }
            }
            ServerMessage::Kill { run } => {
                if !self.runs.kill(run) {
                    tracing::debug!(run, "kill for a run that is not going");
                }
            }
            ServerMessage::Clean { dir } => {
                let dirs = self.dirs.clone();
                tokio::task::spawn_blocking(move || clean(&dirs, &dir));
            }
            ServerMessage::File(request) => {
                let (dirs, replies) = (self.dirs.clone(), link.replies_tx.clone());
                tokio::spawn(async move {
                    let _ = replies.send(files::serve(dirs, request).await);
                });
            }
            ServerMessage::Welcome(_) => tracing::debug!("ignoring a second Welcome"),
            ServerMessage::Leave { .. } => {}
        }
    }

    /// Sends the events that are due, [`BATCH_MAX`] per message (every held one too when
    /// `all`). Events whose message could not be sent stay for the next connection.
    async fn flush_events(&mut self, link: &mut Link, all: bool) -> Result<(), AgentError> {
        let now = Instant::now();
        self.outbox.release(if all { None } else { Some(now) });
        while self.outbox.ready_len() > 0 {
            let message = AgentMessage::Events {
                events: self.outbox.take(BATCH_MAX),
            };
            if let Err(e) = link.send(&message).await {
                if let AgentMessage::Events { events } = message {
                    self.outbox.put_back(events);
                }
                return Err(e);
            }
        }
        link.flush_at = self.outbox.due(now);
        Ok(())
    }

    /// Sends the events that are due.
    async fn flush(&mut self, link: &mut Link) -> Result<(), AgentError> {
        self.flush_events(link, false).await
    }

    /// `Leave`: kill every run, optionally wipe the node root, say goodbye.
    async fn leave_link(&mut self, link: &mut Link, wipe: bool) -> SessionEnd {
        self.leave(wipe).await;
        let _ = self.flush_events(link, true).await;
        let _ = link.ws.close(None).await;
        SessionEnd::Left
    }

    /// Kills every run and waits for them; wipes the node root's contents if asked.
    async fn leave(&mut self, wipe: bool) {
        tracing::info!(wipe, "leaving the pool");
        self.runs.kill_all();
        self.runs.wait_idle(REAP_TIMEOUT).await;
        if wipe {
            let root = self.dirs.root.clone();
            let _ = tokio::task::spawn_blocking(move || wipe_contents(&root)).await;
        }
    }
}

/// Resolves when the process that started this agent (pid `parent`) has exited, i.e. when
/// this process was re-parented: a local agent must not outlive the server that started it.
/// Pass it (or'd with the signals) as [`run`]'s shutdown future.
pub async fn parent_exited(parent: u32) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        if std::os::unix::process::parent_id() != parent {
            return;
        }
    }
}

/// The server's answer to `Hello`: `Welcome` (with the runs it asked to kill before it: earlier
/// Cobalt servers sent `Kill` for the runs of `Hello::running` they did not know before their
/// `Welcome`), or `Leave` (refused, or the node was removed).
enum Answer {
    Welcome(Welcome, Vec<u64>),
    Leave { wipe: bool },
}

/// Reads until `Welcome` or `Leave`, keeping `Kill`s; anything else first is a protocol error.
async fn read_welcome(ws: &mut Socket) -> Result<Answer, AgentError> {
    let mut kills = Vec::new();
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                return match serde_json::from_str::<ServerMessage>(&text) {
                    Ok(ServerMessage::Welcome(welcome)) => Ok(Answer::Welcome(welcome, kills)),
                    Ok(ServerMessage::Leave { wipe }) => Ok(Answer::Leave { wipe }),
                    Ok(ServerMessage::Kill { run }) => {
                        kills.push(run);
                        continue;
                    }
                    Ok(_) => Err(AgentError::Protocol("expected Welcome first".into())),
                    Err(e) => Err(AgentError::Protocol(format!("bad Welcome: {e}"))),
                };
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(AgentError::Protocol("closed before Welcome".into()));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(e.into()),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn to_json(message: &AgentMessage) -> Result<String, AgentError> {
    serde_json::to_string(message).map_err(|e| AgentError::Protocol(e.to_string()))
}

/// `Clean`: removes a task (or job) directory under the root.
fn clean(dirs: &NodeDirs, dir: &str) {
    let Some(path) = dirs
        .resolve(dir)
        .filter(|_| !dir.trim_matches('/').is_empty())
    else {
        tracing::warn!(dir, "refusing to clean a path outside the node root");
        return;
    };
    match std::fs::remove_dir_all(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir, error = %e, "cannot clean a task directory"),
    }
}

/// Removes everything under the node root (the root itself stays).
fn wipe_contents(root: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
        if let Err(e) = removed {
            tracing::warn!(path = %path.display(), error = %e, "cannot wipe");
        }
    }
}

/// The machine's host name.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}
