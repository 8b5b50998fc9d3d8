//! Can this sandbox reach a host through its egress proxy? A bounded check before a turn:
//! a TCP connection to `HTTPS_PROXY`, a `CONNECT host:443` (refused with 403 when the host
//! is off the proxy's allowlist), and a TLS handshake inside the tunnel verified against
//! the CA bundle in `SSL_CERT_FILE` (the proxy's CA in a sandbox). No HTTP request is sent
//! through the tunnel, so no credential reaches the upstream API.
//!
//! Without `HTTPS_PROXY` (a local `echo` sandbox) there is nothing to check.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long the whole check may take.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a CA bundle is looked for when `SSL_CERT_FILE` is not set.
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Largest CONNECT response head read.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// The egress proxy settings of this sandbox, read from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressProxy {
    /// The proxy URL as configured (`http://iron-proxy:8080`), for messages.
    pub url: String,
    host: String,
    port: u16,
    /// The CA bundle TLS is verified against.
    pub ca_file: PathBuf,
    no_proxy: Vec<String>,
}

/// Why a host is not reachable through the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// No TCP connection to the proxy.
    #[error("the egress proxy is not reachable ({0})")]
    ProxyDown(String),
    /// The proxy answered the CONNECT with a non-2xx status (403: off its allowlist).
    #[error("the egress proxy refused the connection ({0})")]
    Refused(String),
    /// The proxy closed the connection or answered something that is not HTTP.
    #[error("the egress proxy broke off the CONNECT ({0})")]
    BadProxyAnswer(String),
    /// The certificate inside the tunnel does not verify against the CA bundle.
    #[error("TLS: the proxy's certificate is not trusted (SSL_CERT_FILE={}): {detail}", ca_file.display())]
    Untrusted { ca_file: PathBuf, detail: String },
    /// The TLS handshake failed for another reason.
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    /// The CA bundle could not be read.
    #[error("cannot use the CA bundle {}: {detail}", ca_file.display())]
    CaBundle { ca_file: PathBuf, detail: String },
    /// A stage did not finish within the check's time.
    #[error("no answer within {:.1} s while {stage}", limit.as_secs_f64())]
    Timeout {
        stage: &'static str,
        limit: Duration,
    },
}

impl EgressProxy {
    /// The proxy configured by `lookup` (an environment): `HTTPS_PROXY`/`https_proxy`,
    /// `NO_PROXY`/`no_proxy` and `SSL_CERT_FILE`. `None` without a proxy, or with one that
    /// is not a plain `http://` proxy (then there is nothing this check can do).
    pub fn from_env(lookup: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let url = non_empty("HTTPS_PROXY").or_else(|| non_empty("https_proxy"))?;
        let (host, port) = match parse_http_proxy(&url) {
            Some(parsed) => parsed,
            None => {
                tracing::warn!(%url, "HTTPS_PROXY is not an http:// proxy; skipping the reachability check");
                return None;
            }
        };
        let no_proxy = non_empty("NO_PROXY")
            .or_else(|| non_empty("no_proxy"))
            .unwrap_or_default()
            .split(',')
            .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
            .filter(|entry| !entry.is_empty())
            .collect();
        let ca_file = non_empty("SSL_CERT_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_FILE));
        Some(Self {
            url,
            host,
            port,
            ca_file,
            no_proxy,
        })
    }

    /// True when `host` is reached directly (`NO_PROXY`), not through the proxy.
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.no_proxy
            .iter()
            .any(|entry| entry == "*" || host == *entry || host.ends_with(&format!(".{entry}")))
    }

    /// Checks within [`CHECK_TIMEOUT`] that `host:443` is reachable through the proxy with
    /// a certificate the CA bundle trusts.
    pub async fn check(&self, host: &str) -> Result<(), ReachError> {
        self.check_within(host, CHECK_TIMEOUT).await
    }

    /// [`check`](Self::check) with another time limit.
    pub async fn check_within(&self, host: &str, limit: Duration) -> Result<(), ReachError> {
        let deadline = Instant::now() + limit;
        let connector = tls_connector(&self.ca_file)?;
        let mut stream = match tokio::time::timeout_at(
            deadline,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(ReachError::ProxyDown(err.to_string())),
            Err(_) => {
                return Err(ReachError::Timeout {
                    stage: "connecting to the proxy",
                    limit,
                })
            }
        };
        let request = format!(
            "CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\nUser-Agent: centaur-sandbox\r\n\r\n"
        );
        let head = tokio::time::timeout_at(deadline, async {
            stream.write_all(request.as_bytes()).await?;
            read_response_head(&mut stream).await
        })
        .await
        .map_err(|_| ReachError::Timeout {
            stage: "waiting for the proxy to answer the CONNECT",
            limit,
        })?
        .map_err(|err| ReachError::BadProxyAnswer(err.to_string()))?;
        let status_line = head.lines().next().unwrap_or_default().trim().to_owned();
        match status_code(&status_line) {
            Some(code) if (200..300).contains(&code) => {}
            Some(_) => return Err(ReachError::Refused(status_line)),
            None => return Err(ReachError::BadProxyAnswer(status_line)),
        }
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|err| ReachError::Tls(format!("{host} is not a valid server name: {err}")))?;
        match tokio::time::timeout_at(deadline, connector.connect(server_name, stream)).await {
            Ok(Ok(mut tls)) => {
                let _ = tls.shutdown().await;
                Ok(())
            }
            Ok(Err(err)) => Err(self.tls_error(err)),
            Err(_) => Err(ReachError::Timeout {
                stage: "the TLS handshake through the proxy",
                limit,
            }),
        }
    }

    fn tls_error(&self, err: std::io::Error) -> ReachError {
        let rustls_error = err
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
        match rustls_error {
            Some(rustls::Error::InvalidCertificate(cause)) => ReachError::Untrusted {
                ca_file: self.ca_file.clone(),
                detail: format!("{cause:?}"),
            },
            Some(other) => ReachError::Tls(other.to_string()),
            None => ReachError::Tls(err.to_string()),
        }
    }
}

/// `http://host:port[/]` → `(host, port)`; other schemes are not handled.
fn parse_http_proxy(url: &str) -> Option<(String, u16)> {
    let rest = url.trim().strip_prefix("http://")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(80), |p| p.parse().ok())?;
        (host.to_owned(), port)
    } else {
        match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (host_port.to_owned(), 80),
        }
    };
    (!host.is_empty()).then_some((host, port))
}

fn status_code(status_line: &str) -> Option<u16> {
    let mut parts = status_line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

async fn read_response_head(stream: &mut TcpStream) -> std::io::Result<String> {
    // Byte by byte: nothing after the head may be consumed (the TLS handshake follows).
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await? == 0 {
            let detail = if head.is_empty() {
                "the proxy closed the connection without an answer".to_owned()
            } else {
                format!(
                    "the proxy closed the connection after {:?}",
                    String::from_utf8_lossy(&head)
                )
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                detail,
            ));
        }
        head.push(byte[0]);
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the proxy's answer has no end of headers",
            ));
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn tls_connector(ca_file: &Path) -> Result<tokio_rustls::TlsConnector, ReachError> {
    let bundle_error = |detail: String| ReachError::CaBundle {
        ca_file: ca_file.to_owned(),
        detail,
    };
    let certificates = CertificateDer::pem_file_iter(ca_file)
        .map_err(|err| bundle_error(err.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| bundle_error(err.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(bundle_error("it holds no usable certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ReachError::Tls(err.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn the_proxy_comes_from_https_proxy_with_no_proxy_and_the_ca_bundle() {
        let proxy = EgressProxy::from_env(env(&[
            ("HTTPS_PROXY", "http://iron-proxy.centaur.svc:8080"),
            ("NO_PROXY", "localhost,127.0.0.1,.svc"),
            ("SSL_CERT_FILE", "/firewall-certs/ca.crt"),
        ]))
        .expect("a proxy");
        assert_eq!(proxy.host, "iron-proxy.centaur.svc");
        assert_eq!(proxy.port, 8080);
        assert_eq!(proxy.ca_file, PathBuf::from("/firewall-certs/ca.crt"));
        assert!(proxy.bypasses("localhost"));
        assert!(proxy.bypasses("api.centaur.svc"));
        assert!(!proxy.bypasses("api.openai.com"));
    }

    #[test]
    fn without_an_http_proxy_there_is_nothing_to_check() {
        assert!(EgressProxy::from_env(env(&[])).is_none());
        assert!(EgressProxy::from_env(env(&[("HTTPS_PROXY", "")])).is_none());
        assert!(EgressProxy::from_env(env(&[("https_proxy", "socks5://x:1")])).is_none());
        let lower = EgressProxy::from_env(env(&[("https_proxy", "http://127.0.0.1:3128/")]))
            .expect("lowercase works");
        assert_eq!((lower.host.as_str(), lower.port), ("127.0.0.1", 3128));
    }

    #[test]
    fn proxy_urls_parse_with_default_port_credentials_and_ipv6() {
        assert_eq!(parse_http_proxy("http://p"), Some(("p".into(), 80)));
        assert_eq!(parse_http_proxy("http://u:pw@p:81"), Some(("p".into(), 81)));
        assert_eq!(
            parse_http_proxy("http://[::1]:82"),
            Some(("::1".into(), 82))
        );
        assert_eq!(parse_http_proxy("https://p:443"), None);
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(
            status_code("HTTP/1.1 200 Connection established"),
            Some(200)
        );
        assert_eq!(status_code("HTTP/1.0 403 Forbidden"), Some(403));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
    }
}
