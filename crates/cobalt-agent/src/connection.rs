//! The transport: the server URL → the agent endpoint (`ws://…/cobalt/agent/v1`), the TCP
//! (and, for `https`/`wss`, TLS) connection, and the WebSocket upgrade carrying the token.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use cobalt_proto::{AGENT_PATH, TOKEN_HEADER};
use reqwest::Url;
use reqwest::header::HeaderValue;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::AgentError;

/// How long connecting, TLS and the upgrade may take together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A byte stream the WebSocket runs over: plain TCP or TLS.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// The agent's WebSocket.
pub(crate) type Socket = WebSocketStream<Box<dyn Transport>>;

/// Where the agent endpoint is.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    /// `ws://host:port/…/cobalt/agent/v1` (or `wss://`).
    pub url: String,
    host: String,
    port: u16,
    tls: bool,
}

impl Endpoint {
    /// From the server's URL: `http://host:port` (the Batch port) → `ws://host:port` +
    /// [`AGENT_PATH`], `https` → `wss`; `ws`/`wss` are taken as they are. A path in the URL
    /// (a reverse proxy's prefix) is kept before [`AGENT_PATH`].
    pub fn parse(server: &str) -> Result<Self, AgentError> {
        let invalid = |reason| AgentError::InvalidServerUrl {
            url: server.to_owned(),
            reason,
        };
        let mut url = Url::parse(server).map_err(|_| invalid("not a URL"))?;
        let tls = match url.scheme() {
            "http" | "ws" => false,
            "https" | "wss" => true,
            _ => return Err(invalid("the scheme must be http, https, ws or wss")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("the URL has no host"))?;
        // An IPv6 literal is written in brackets in a URL, not in a socket address.
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("the URL has no port"))?;
        url.set_scheme(if tls { "wss" } else { "ws" })
            .map_err(|()| invalid("the scheme cannot be changed to ws"))?;
        let path = format!("{}{AGENT_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self {
            url: url.to_string(),
            host,
            port,
            tls,
        })
    }
}

/// Connects and upgrades; returns the socket and the local address of the connection (the
/// address the server sees the node at). 401/403 → [`AgentError::Unauthorized`].
pub(crate) async fn connect(
    endpoint: &Endpoint,
    token: &str,
) -> Result<(Socket, IpAddr), AgentError> {
    let mut request = endpoint.url.as_str().into_client_request()?;
    let token = HeaderValue::from_str(token).map_err(|_| AgentError::InvalidToken)?;
    request.headers_mut().insert(TOKEN_HEADER, token);
    let address = format!("{}:{}", endpoint.host, endpoint.port);
    let attempt = async {
        let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|source| AgentError::Connect {
                address: address.clone(),
                source,
            })?;
        tcp.set_nodelay(true)
            .map_err(|source| AgentError::Connect {
                address: address.clone(),
                source,
            })?;
        let local = tcp
            .local_addr()
            .map_err(|source| AgentError::Connect {
                address: address.clone(),
                source,
            })?
            .ip();
        let stream: Box<dyn Transport> = if endpoint.tls {
            Box::new(
                tls(tcp, &endpoint.host)
                    .await
                    .map_err(|source| AgentError::Connect {
                        address: address.clone(),
                        source,
                    })?,
            )
        } else {
            Box::new(tcp)
        };
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((socket, _)) => Ok((socket, local)),
            Err(WsError::Http(response)) if matches!(response.status().as_u16(), 401 | 403) => {
                Err(AgentError::Unauthorized {
                    status: response.status().as_u16(),
                })
            }
            Err(e) => Err(e.into()),
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .map_err(|_| AgentError::Connect {
            address,
            source: std::io::ErrorKind::TimedOut.into(),
        })?
}

/// A TLS client connection checked against the web PKI roots.
async fn tls(
    tcp: TcpStream,
    host: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = ClientConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).map_err(std::io::Error::other)?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_become_agent_endpoints() {
        let check = |server: &str, expected: &str, tls: bool| {
            let e = Endpoint::parse(server).unwrap();
            assert_eq!((e.url.as_str(), e.tls), (expected, tls), "{server}");
        };
        check(
            "http://127.0.0.1:10100",
            "ws://127.0.0.1:10100/cobalt/agent/v1",
            false,
        );
        check("http://h:1/", "ws://h:1/cobalt/agent/v1", false);
        check(
            "https://batch.example",
            "wss://batch.example/cobalt/agent/v1",
            true,
        );
        check(
            "http://h/prefix/?x=1",
            "ws://h/prefix/cobalt/agent/v1",
            false,
        );
        check("ws://[::1]:9", "ws://[::1]:9/cobalt/agent/v1", false);
        assert_eq!(Endpoint::parse("ws://[::1]:9").unwrap().host, "::1");
        assert_eq!(Endpoint::parse("https://h").unwrap().port, 443);
        for bad in ["ftp://h", "h:10100", "", "http://"] {
            assert!(
                matches!(
                    Endpoint::parse(bad),
                    Err(AgentError::InvalidServerUrl { .. })
                ),
                "{bad}"
            );
        }
    }
}
