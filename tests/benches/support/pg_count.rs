//! A counting wrapper around Postgres: a TCP proxy between a process and the server that
//! reads the frontend half of the wire protocol and counts what the process asks for.
//!
//! - **statements**: `Execute` messages (extended protocol) and simple `Query` messages,
//!   `BEGIN`/`COMMIT`/`ROLLBACK` included (each is a statement the server runs);
//! - **round trips**: `Sync` and simple `Query` messages (each makes the client wait for
//!   `ReadyForQuery`; a connection test on checkout is a bare `Sync`);
//! - **commits**: transactions that wrote — a `COMMIT` after at least one `INSERT`,
//!   `UPDATE` or `DELETE` in its transaction, or such a statement outside a transaction
//!   (autocommit). Read-only transactions are not counted (they write no WAL record).
//!
//! The statements' texts are kept with their counts, so a figure can be explained.
//! Connect through it with `sslmode=disable` (an encrypted stream cannot be read).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What went through the proxy since it started (or since [`PgCounter::reset`]).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub statements: u64,
    pub transaction_control: u64,
    pub round_trips: u64,
    pub commits: u64,
    /// Statement text (whitespace collapsed) → how many times it ran.
    pub texts: BTreeMap<String, u64>,
}

impl Counts {
    /// The counts accumulated since `earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        let mut texts = self.texts.clone();
        for (text, n) in &earlier.texts {
            if let Some(count) = texts.get_mut(text) {
                *count -= n;
            }
        }
        texts.retain(|_, n| *n > 0);
        Counts {
            statements: self.statements - earlier.statements,
            transaction_control: self.transaction_control - earlier.transaction_control,
            round_trips: self.round_trips - earlier.round_trips,
            commits: self.commits - earlier.commits,
            texts,
        }
    }
}

/// A running counting proxy.
pub struct PgCounter {
    /// `127.0.0.1:<port>`.
    pub address: String,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl PgCounter {
    /// Listens on a free port and forwards every connection to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let counts = Arc::new(Mutex::new(Counts::default()));
        let upstream = upstream.to_owned();
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counts) = (upstream.clone(), shared.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        let _ = client.set_nodelay(true);
                        let _ = server.set_nodelay(true);
                        forward(client, server, counts).await;
                    }
                });
            }
        });
        Ok(Self {
            address,
            counts,
            task,
        })
    }

    /// `database_url` with its host and port replaced by the proxy's (and no TLS).
    pub fn url_for(&self, database_url: &str) -> String {
        let (scheme, rest) = database_url.split_once("://").unwrap_or(("postgres", ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let user = authority.rsplit_once('@').map(|(user, _)| user);
        let authority = match user {
            Some(user) => format!("{user}@{}", self.address),
            None => self.address.clone(),
        };
        let separator = if path.contains('?') { '&' } else { '?' };
        format!("{scheme}://{authority}/{path}{separator}sslmode=disable")
    }

    /// The counts so far.
    pub fn snapshot(&self) -> Counts {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

impl Drop for PgCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, counts: Arc<Mutex<Counts>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let downstream = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    });
    let mut session = Session::default();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match client_read.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if server_write.write_all(&chunk[..read]).await.is_err() {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let consumed = session.parse(&buffer, &counts);
        buffer.drain(..consumed);
    }
    let _ = server_write.shutdown().await;
    let _ = downstream.await;
}

/// One connection's protocol state.
#[derive(Default)]
struct Session {
    started: bool,
    /// Prepared statement name → text.
    statements: HashMap<String, String>,
    /// Portal name → text of the statement bound to it.
    portals: HashMap<String, String>,
    in_transaction: bool,
    transaction_wrote: bool,
}

fn cstring(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    (text, bytes.get(end + 1..).unwrap_or(&[]))
}

fn is_write(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    ["insert into", "update ", "delete from"]
        .iter()
        .any(|verb| lower.contains(verb))
}

impl Session {
    /// Parses whole messages at the start of `bytes`; returns how many bytes it consumed.
    fn parse(&mut self, bytes: &[u8], counts: &Mutex<Counts>) -> usize {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            if !self.started {
                // Startup, SSLRequest or GSSENCRequest: length, then a code; no type byte.
                if rest.len() < 8 {
                    return at;
                }
                let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                if rest.len() < length {
                    return at;
                }
                let code = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                if code != 80_877_103 && code != 80_877_104 {
                    self.started = true;
                }
                at += length;
                continue;
            }
            if rest.len() < 5 {
                return at;
            }
            let kind = rest[0];
            let length = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
            if rest.len() < 1 + length {
                return at;
            }
            let body = &rest[5..1 + length];
            self.message(kind, body, counts);
            at += 1 + length;
        }
    }

    fn message(&mut self, kind: u8, body: &[u8], counts: &Mutex<Counts>) {
        match kind {
            b'Q' => {
                let (sql, _) = cstring(body);
                self.statement(&sql, counts);
                if let Ok(mut counts) = counts.lock() {
                    counts.round_trips += 1;
                }
            }
            b'P' => {
                let (name, rest) = cstring(body);
                let (sql, _) = cstring(rest);
                self.statements.insert(name, sql);
            }
            b'B' => {
                let (portal, rest) = cstring(body);
                let (statement, _) = cstring(rest);
                let sql = self.statements.get(&statement).cloned().unwrap_or_default();
                self.portals.insert(portal, sql);
            }
            b'E' => {
                let (portal, _) = cstring(body);
                let sql = self.portals.get(&portal).cloned().unwrap_or_default();
                self.statement(&sql, counts);
            }
            b'S' => {
                if let Ok(mut counts) = counts.lock() {
                    counts.round_trips += 1;
                }
            }
            _ => {}
        }
    }

    fn statement(&mut self, sql: &str, counts: &Mutex<Counts>) {
        let text = sql.split_whitespace().collect::<Vec<_>>().join(" ");
        let upper = text.to_ascii_uppercase();
        let Ok(mut counts) = counts.lock() else {
            return;
        };
        counts.statements += 1;
        *counts.texts.entry(text.clone()).or_default() += 1;
        if upper.starts_with("BEGIN") || upper.starts_with("START TRANSACTION") {
            counts.transaction_control += 1;
            self.in_transaction = true;
            self.transaction_wrote = false;
        } else if upper.starts_with("COMMIT") || upper.starts_with("END") {
            counts.transaction_control += 1;
            if self.in_transaction && self.transaction_wrote {
                counts.commits += 1;
            }
            self.in_transaction = false;
        } else if upper.starts_with("ROLLBACK") {
            counts.transaction_control += 1;
            self.in_transaction = false;
        } else if is_write(&text) {
            if self.in_transaction {
                self.transaction_wrote = true;
            } else {
                counts.commits += 1;
            }
        }
    }
}

/// Prints `counts` per `unit` (`per` of them), with the statements that make them up.
pub fn print_per(label: &str, counts: &Counts, per: usize, unit: &str) {
    let per = per.max(1) as f64;
    println!(
        "{label:<58} {:>6.1} statements ({:.1} BEGIN/COMMIT)  {:>6.1} round trips  {:>5.2} commits  per {unit}",
        counts.statements as f64 / per,
        counts.transaction_control as f64 / per,
        counts.round_trips as f64 / per,
        counts.commits as f64 / per,
    );
    let mut texts: Vec<(&String, &u64)> = counts.texts.iter().collect();
    texts.sort_by(|a, b| b.1.cmp(a.1));
    for (text, n) in texts.into_iter().take(24) {
        let each = *n as f64 / per;
        if each < 0.05 {
            continue;
        }
        let short: String = text.chars().take(110).collect();
        println!("    {each:>6.2} × {short}");
    }
}
