//! One WebSocket per agent. The session parses the agent's messages and hands them to the
//! dispatcher; it sends whatever the dispatcher queues for the agent. A session that hears
//! nothing for three heartbeats ends, and the dispatcher treats the node as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use cobalt_proto::{AGENT_PATH, AgentMessage, ServerMessage, TOKEN_HEADER};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::Nodes;
use crate::dispatcher::Input;

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// The agent endpoint.
pub fn router(nodes: Arc<Nodes>) -> axum::Router {
    axum::Router::new()
        .route(AGENT_PATH, get(upgrade))
        .with_state(nodes)
}

async fn upgrade(
    State(nodes): State<Arc<Nodes>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = headers
        .get(TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    ws.on_upgrade(move |socket| run(nodes, socket, token))
}

async fn run(nodes: Arc<Nodes>, socket: WebSocket, token: String) {
    let conn = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let silence = nodes.heartbeat * 3;
    // The first message must be Hello.
    let hello = match tokio::time::timeout(silence, stream.next()).await {
        Ok(Some(Ok(Message::Text(text)))) => match serde_json::from_str::<AgentMessage>(&text) {
            Ok(AgentMessage::Hello(h)) => h,
            _ => return,
        },
        _ => return,
    };
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ServerMessage>();
    if nodes
        .inputs
        .send(Input::Hello {
            conn,
            hello,
            token,
            out: out_tx,
        })
        .is_err()
    {
        return;
    }
    let mut ping = tokio::time::interval(nodes.heartbeat);
    let mut last_heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            incoming = stream.next() => {
                let Some(Ok(message)) = incoming else { break };
                last_heard = tokio::time::Instant::now();
                match message {
                    Message::Text(text) => match serde_json::from_str::<AgentMessage>(&text) {
                        Ok(m) => {
                            if nodes.inputs.send(Input::Message { conn, message: m }).is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(conn, error = %e, "unreadable agent message"),
                    },
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            outgoing = out_rx.recv() => {
                let Some(message) = outgoing else { break };
                let leave = matches!(message, ServerMessage::Leave { .. });
                let Ok(text) = serde_json::to_string(&message) else { continue };
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
                if leave {
                    let _ = sink.flush().await;
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > silence {
                    tracing::warn!(conn, "agent silent for {silence:?}; dropping it");
                    break;
                }
                if sink.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = nodes.inputs.send(Input::Closed { conn });
}
