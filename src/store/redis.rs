//! A backing store on a Valkey or Redis server (feature `redis`): each written-back
//! page's record is one string value, `SET` and `GET` by key, so the pages of many
//! stores, on many machines, can live in the memory of an engine most deployments
//! already run, replicated as it replicates.
//!
//! Invariants:
//! - Keys are `zpage:{NAMESPACE}:SLOT`: one namespace per store (given, or made unique
//!   from the host, the process and the time), so stores sharing a server never see each
//!   other's records. The braces are a hash tag: on a Redis Cluster every key of a store
//!   would live on one node, so a batch is one node's pipeline; this first version
//!   connects to one node (replicas follow it), and the README says why.
//! - A batch of records is one `MSET` (one round trip, one reply, so the timeout bounds
//!   the batch; a pipeline would wait a timeout per reply); dropped slots are one
//!   `UNLINK`. Every reply is checked: an error, a timeout, a lost connection or an
//!   `OOM` reply fails the whole call with an `io::Error` whose kind says which
//!   (`TimedOut`, `ConnectionReset`/`ConnectionRefused`, `OutOfMemory`, `Other`), and the
//!   store keeps the batch's pages in memory. A call takes at most about twice the
//!   timeout (connecting, then the reply).
//! - A record that is missing (the server restarted empty, or evicted it) is a
//!   `NotFound` error; a shorter one `UnexpectedEof`; the store's CRC catches any other
//!   damage. A read never returns bytes that were not the record.
//! - At open, a server whose `maxmemory-policy` may evict keys without a TTL
//!   (`allkeys-*`) is refused, and so is one that will not say (CONFIG refused): zpage's
//!   records must not vanish to make room.
//! - Connections are pooled (one per concurrent caller at most); one that failed is
//!   dropped, and the next call connects again, so a server back from a restart is
//!   used again. Every connect, read and write is bounded by the timeout.
//! - Dropping the backing store deletes its namespace's keys (the store's pages die with
//!   it).

use super::backing::Backing;
use crate::sync::Mutex;
use redis::{Client, Connection, RedisError};
use std::io;
use std::time::Duration;

/// How a [`RedisBacking`] is set up.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    namespace: String,
    slots: u64,
    timeout: Duration,
}

impl RedisOptions {
    /// Room for `slots` records, under a namespace of its own, with a 2-second timeout.
    pub fn new(slots: u64) -> RedisOptions {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        RedisOptions {
            namespace: format!("{}-{}-{nanos:x}", host.trim(), std::process::id()),
            slots,
            timeout: Duration::from_secs(2),
        }
    }

    /// The namespace the store's keys go under (no braces or colons: it is the hash tag).
    pub fn namespace(mut self, namespace: &str) -> RedisOptions {
        self.namespace = namespace.replace(['{', '}', ':'], "_");
        self
    }

    /// The bound on connecting and on each request's reply.
    pub fn timeout(mut self, timeout: Duration) -> RedisOptions {
        self.timeout = timeout;
        self
    }
}

/// Why a [`RedisBacking`] could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisOpenError {
    /// The URL is not a Redis URL (`redis://HOST:PORT[/DB]`).
    #[error("{url}: not a Redis URL (redis://HOST:PORT[/DB]): {reason}")]
    Url {
        /// As given.
        url: String,
        /// The client's reason.
        reason: String,
    },
    /// The server could not be reached or answered with an error (the source names the
    /// URL).
    #[error("{source}")]
    Server {
        /// As given.
        url: String,
        /// The error.
        source: io::Error,
    },
    /// The server may evict zpage's records to make room.
    #[error(
        "{url}: maxmemory-policy is {policy}, which may evict zpage's records; set noeviction (or a volatile-* policy) on the server"
    )]
    EvictionPolicy {
        /// As given.
        url: String,
        /// The server's policy.
        policy: String,
    },
}

/// A backing store on a Valkey or Redis server (see the module's documentation).
pub struct RedisBacking {
    client: Client,
    pool: Mutex<Vec<Connection>>,
    prefix: String,
    slots: u64,
    timeout: Duration,
    url: String,
    /// Set once open: a backing store that never opened has no keys to delete.
    opened: bool,
}

impl std::fmt::Debug for RedisBacking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBacking")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("slots", &self.slots)
            .finish()
    }
}

impl RedisBacking {
    /// Connects to `url` (`redis://HOST:PORT[/DB]`) and checks the server's eviction
    /// policy.
    ///
    /// # Errors
    /// [`RedisOpenError`]: a bad URL, an unreachable or failing server (within the
    /// timeout), or an eviction policy that may drop records.
    pub fn open(url: &str, options: RedisOptions) -> Result<RedisBacking, RedisOpenError> {
        let client = Client::open(url).map_err(|e| RedisOpenError::Url {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        let mut backing = RedisBacking {
            client,
            pool: Mutex::new(Vec::new()),
            prefix: format!("zpage:{{{}}}:", options.namespace),
            slots: options.slots,
            timeout: options.timeout,
            url: url.to_string(),
            opened: false,
        };
        let server = |source| RedisOpenError::Server {
            url: url.to_string(),
            source,
        };
        let policy: Vec<String> = backing
            .call(|conn| {
                redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory-policy")
                    .query(conn)
            })
            .map_err(server)?;
        let policy = policy.get(1).cloned().unwrap_or_default();
        if policy.starts_with("allkeys-") {
            return Err(RedisOpenError::EvictionPolicy {
                url: url.to_string(),
                policy,
            });
        }
        backing.opened = true;
        Ok(backing)
    }

    fn key(&self, slot: u64) -> String {
        format!("{}{slot}", self.prefix)
    }

    /// Runs `f` on a pooled connection (a new one if none is free). A pooled connection
    /// the server dropped (it restarted, say) is replaced once by a new one; a
    /// connection that failed is never pooled again.
    fn call<T>(&self, f: impl Fn(&mut Connection) -> redis::RedisResult<T>) -> io::Result<T> {
        let pooled = self.pool.lock().pop();
        let result = match pooled {
            Some(mut conn) => match f(&mut conn) {
                Err(e) if e.is_connection_dropped() || (e.is_io_error() && !e.is_timeout()) => self
                    .connect()
                    .and_then(|mut conn| f(&mut conn).map(|v| (v, conn))),
                other => other.map(|v| (v, conn)),
            },
            None => self
                .connect()
                .and_then(|mut conn| f(&mut conn).map(|v| (v, conn))),
        };
        match result {
            Ok((value, conn)) => {
                self.pool.lock().push(conn);
                Ok(value)
            }
            Err(e) => Err(self.io(e)),
        }
    }

    fn connect(&self) -> redis::RedisResult<Connection> {
        let conn = self.client.get_connection_with_timeout(self.timeout)?;
        conn.set_read_timeout(Some(self.timeout))?;
        conn.set_write_timeout(Some(self.timeout))?;
        Ok(conn)
    }

    /// A client error as an `io::Error` whose kind says what failed, in one line (a
    /// pipeline's failures are many: the first is shown).
    fn io(&self, e: RedisError) -> io::Error {
        let text = e.to_string();
        let kind = if e.is_timeout() {
            io::ErrorKind::TimedOut
        } else if e.code() == Some("OOM") || text.contains("\"OOM\"") || text.starts_with("OOM") {
            io::ErrorKind::OutOfMemory
        } else if e.is_connection_refusal() {
            io::ErrorKind::ConnectionRefused
        } else if e.is_io_error() || e.is_connection_dropped() {
            io::ErrorKind::ConnectionReset
        } else {
            io::ErrorKind::Other
        };
        let line = if kind == io::ErrorKind::TimedOut {
            format!("no reply within {:?} (timed out)", self.timeout)
        } else {
            let mut line: String = text.chars().take(200).collect();
            if line.len() < text.len() {
                line.push_str("...");
            }
            line
        };
        io::Error::new(kind, format!("{}: {line}", self.url))
    }
}

impl Backing for RedisBacking {
    fn slots(&self) -> u64 {
        self.slots
    }

    fn write(&self, records: &[(u64, &[u8])]) -> io::Result<()> {
        // One MSET: one reply to wait for, so the timeout bounds the whole batch (a
        // pipeline waits for each reply in turn, a timeout each).
        let mut cmd = redis::cmd("MSET");
        for &(slot, record) in records {
            cmd.arg(self.key(slot)).arg(record);
        }
        self.call(|conn| cmd.query::<()>(conn))
    }

    fn read(&self, slot: u64, out: &mut [u8]) -> io::Result<()> {
        let key = self.key(slot);
        let record: Option<Vec<u8>> = self.call(|conn| redis::cmd("GET").arg(&key).query(conn))?;
        let Some(record) = record else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{}: record {key} is gone (the server restarted empty, or evicted it)",
                    self.url
                ),
            ));
        };
        if record.len() < out.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{}: record {key} came back {} bytes short",
                    self.url,
                    out.len() - record.len()
                ),
            ));
        }
        out.copy_from_slice(&record[..out.len()]);
        Ok(())
    }

    fn discard(&self, slots: &[u64]) -> io::Result<()> {
        let mut cmd = redis::cmd("UNLINK");
        for &slot in slots {
            cmd.arg(self.key(slot));
        }
        self.call(|conn| cmd.query::<()>(conn))
    }
}

impl Drop for RedisBacking {
    /// Deletes the namespace's keys, best effort (an unreachable server keeps them).
    fn drop(&mut self) {
        if !self.opened {
            return;
        }
        let pattern = format!("{}*", self.prefix);
        let _ = self.call(|conn| {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query(conn)?;
                if !keys.is_empty() {
                    redis::cmd("UNLINK").arg(&keys).query::<()>(conn)?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        });
    }
}
