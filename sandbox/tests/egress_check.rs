//! The reachability check against stand-in proxies on localhost: a proxy that is down, one
//! that refuses the CONNECT (allowlist 403), and one that opens the tunnel and terminates
//! TLS with a certificate signed by a CA the sandbox does or does not trust. Each answer
//! comes well within the check's time limit.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sandbox::egress::{EgressProxy, ReachError};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST: &str = "api.openai.com";

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!(
            "centaur-egress-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).expect("temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let status = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

/// A CA (`<name>-ca.pem`) and a certificate for [`HOST`] it signed (`<name>-host.pem`,
/// key `<name>-host.key`).
fn make_ca(dir: &Path, name: &str) {
    let ca_key = format!("{name}-ca.key");
    let ca = format!("{name}-ca.pem");
    let key = format!("{name}-host.key");
    let csr = format!("{name}-host.csr");
    let cert = format!("{name}-host.pem");
    let ext = format!("{name}-ext.cnf");
    std::fs::write(
        dir.join(&ext),
        format!("subjectAltName=DNS:{HOST}\nbasicConstraints=CA:FALSE\n"),
    )
    .expect("ext file");
    let subject = format!("/CN={name} test CA");
    openssl(
        dir,
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &ca_key, "-out", &ca,
            "-days", "1", "-subj", &subject,
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={HOST}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "1",
            "-extfile",
            &ext,
        ],
    );
}

/// What the stand-in proxy does with a CONNECT.
#[derive(Clone)]
enum Answer {
    Status(&'static str),
    /// `200`, then TLS with this certificate and key.
    Tunnel {
        cert: PathBuf,
        key: PathBuf,
    },
}

async fn stand_in_proxy(answer: Answer) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                assert!(String::from_utf8_lossy(&head).starts_with(&format!("CONNECT {HOST}:443")));
                match answer {
                    Answer::Status(line) => {
                        let _ = stream
                            .write_all(format!("{line}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                            .await;
                    }
                    Answer::Tunnel { cert, key } => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                            .await;
                        let certs = CertificateDer::pem_file_iter(&cert)
                            .expect("cert")
                            .collect::<Result<Vec<_>, _>>()
                            .expect("certs");
                        let key = PrivateKeyDer::from_pem_file(&key).expect("key");
                        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
                            rustls::crypto::ring::default_provider(),
                        ))
                        .with_safe_default_protocol_versions()
                        .expect("versions")
                        .with_no_client_auth()
                        .with_single_cert(certs, key)
                        .expect("server config");
                        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
                        if let Ok(mut tls) = acceptor.accept(stream).await {
                            let _ = tls.shutdown().await;
                        }
                    }
                }
            });
        }
    });
    format!("http://{address}")
}

fn proxy(url: &str, ca_file: &Path) -> EgressProxy {
    let env = [
        ("HTTPS_PROXY".to_owned(), url.to_owned()),
        ("NO_PROXY".to_owned(), "localhost,127.0.0.1".to_owned()),
        ("SSL_CERT_FILE".to_owned(), ca_file.display().to_string()),
    ];
    EgressProxy::from_env(|name| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    })
    .expect("a proxy")
}

async fn check(proxy: &EgressProxy) -> (Result<(), ReachError>, Duration) {
    let started = Instant::now();
    let result = proxy.check(HOST).await;
    (result, started.elapsed())
}

#[tokio::test]
async fn a_host_behind_a_proxy_with_a_trusted_ca_is_reachable_and_an_untrusted_ca_is_named() {
    let dir = TempDir::new("tls");
    make_ca(&dir.0, "proxy");
    make_ca(&dir.0, "other");
    let url = stand_in_proxy(Answer::Tunnel {
        cert: dir.0.join("proxy-host.pem"),
        key: dir.0.join("proxy-host.key"),
    })
    .await;

    let (trusted, _) = check(&proxy(&url, &dir.0.join("proxy-ca.pem"))).await;
    trusted.expect("the proxy's CA is trusted");

    let wrong_ca = dir.0.join("other-ca.pem");
    let (untrusted, took) = check(&proxy(&url, &wrong_ca)).await;
    let message = untrusted.expect_err("another CA").to_string();
    assert!(
        message.starts_with("TLS: the proxy's certificate is not trusted")
            && message.contains(&wrong_ca.display().to_string()),
        "{message}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn an_allowlist_refusal_is_named_as_such() {
    let dir = TempDir::new("refused");
    make_ca(&dir.0, "proxy");
    let url = stand_in_proxy(Answer::Status("HTTP/1.1 403 Forbidden")).await;
    let (result, took) = check(&proxy(&url, &dir.0.join("proxy-ca.pem"))).await;
    let message = result.expect_err("refused").to_string();
    assert_eq!(
        message,
        "the egress proxy refused the connection (HTTP/1.1 403 Forbidden)"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_proxy_that_is_down_fails_at_once() {
    let dir = TempDir::new("down");
    make_ca(&dir.0, "proxy");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address").port()
    };
    let (result, took) = check(&proxy(
        &format!("http://127.0.0.1:{port}"),
        &dir.0.join("proxy-ca.pem"),
    ))
    .await;
    let message = result.expect_err("down").to_string();
    assert!(
        message.starts_with("the egress proxy is not reachable"),
        "{message}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[tokio::test]
async fn a_missing_ca_bundle_is_named() {
    let url = stand_in_proxy(Answer::Status("HTTP/1.1 200 OK")).await;
    let missing = PathBuf::from("/nonexistent/firewall-certs/ca.crt");
    let message = check(&proxy(&url, &missing))
        .await
        .0
        .expect_err("no bundle")
        .to_string();
    assert!(
        message.contains("/nonexistent/firewall-certs/ca.crt"),
        "{message}"
    );
}

#[tokio::test]
async fn a_proxy_that_never_answers_times_out_within_the_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let dir = TempDir::new("silent");
    make_ca(&dir.0, "proxy");
    let started = Instant::now();
    let result = proxy(&url, &dir.0.join("proxy-ca.pem"))
        .check_within(HOST, Duration::from_millis(300))
        .await;
    assert!(
        matches!(result, Err(ReachError::Timeout { .. })),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}
