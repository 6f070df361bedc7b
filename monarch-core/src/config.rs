//! Every setting of the runtime, in one place.
//!
//! A [`Config`] is built from code with [`Config::builder`]; environment
//! variables only supply the defaults, and are read here and nowhere else.
//! A process's transport starts with the config of the first
//! [`Host`](crate::Host) that needs it; workers get their host's config if it
//! was given one ([`Host::with_config`](crate::Host::with_config)), and read
//! their own environment otherwise.
//!
//! | setting | default | environment variable |
//! | --- | --- | --- |
//! | [`heartbeat_timeout`](Config::heartbeat_timeout) | 3 s | `MONARCH_HEARTBEAT_TIMEOUT_MS` |
//! | [`heartbeat_interval`](Config::heartbeat_interval) | a sixth of the timeout, at least 10 ms | `MONARCH_HEARTBEAT_INTERVAL_MS` |
//! | [`max_frame_bytes`](Config::max_frame_bytes) | 1 GiB | `MONARCH_MAX_FRAME_BYTES` |
//! | [`bind`](Config::bind) | `127.0.0.1:0` | `MONARCH_BIND` |
//! | [`transport`](Config::transport) | same-host socket where possible | `MONARCH_TRANSPORT` (`quic` or `auto`) |
//! | [`shared_memory`](Config::shared_memory) | on | `MONARCH_SHM` (`off` or `on`) |
//! | [`shared_memory_from`](Config::shared_memory_from) | 1 MiB | `MONARCH_SHM_FROM_BYTES` |
//! | [`cast_tree`](Config::cast_tree) | fanout 8, from 32 procs | `MONARCH_CAST_FANOUT`, `MONARCH_CAST_TREE_MIN` |
//! | [`worker_threads`](Config::worker_threads) | one per core | `MONARCH_WORKER_THREADS` (0: a current-thread runtime) |
//! | [`startup_timeout`](Config::startup_timeout) | 30 s | `MONARCH_STARTUP_TIMEOUT_MS` |
//! | [`stop_timeout`](Config::stop_timeout) | 10 s | `MONARCH_STOP_TIMEOUT_MS` |
//! | [`spawn_timeout`](Config::spawn_timeout) | 60 s | `MONARCH_SPAWN_TIMEOUT_MS` |
//! | [`bulk_streams`](Config::bulk_streams) | 4 | `MONARCH_BULK_STREAMS` |
//!
//! ```
//! use std::time::Duration;
//! use monarch_core::{Config, Transport};
//!
//! let config = Config::builder()
//!     .heartbeat_timeout(Duration::from_millis(600))
//!     .transport(Transport::Quic)
//!     .build();
//! assert_eq!(config.heartbeat_interval(), Duration::from_millis(100));
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::wire::CastTree;

/// How a process reaches other processes on its own host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    /// A Unix socket guarded by the job credential where the peer is on
    /// this host, QUIC otherwise.
    Auto,
    /// QUIC everywhere.
    Quic,
}

/// The runtime's settings; see the [module documentation](self) for the
/// table of defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    heartbeat_timeout: Duration,
    heartbeat_interval: Option<Duration>,
    max_frame_bytes: usize,
    bind: SocketAddr,
    transport: Transport,
    shared_memory: bool,
    shared_memory_from: usize,
    cast_tree: CastTree,
    worker_threads: Option<usize>,
    startup_timeout: Duration,
    stop_timeout: Duration,
    spawn_timeout: Duration,
    bulk_streams: usize,
}

impl Default for Config {
    /// The built-in defaults, ignoring the environment.
    fn default() -> Self {
        Config {
            heartbeat_timeout: Duration::from_secs(3),
            heartbeat_interval: None,
            max_frame_bytes: 1 << 30,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            transport: Transport::Auto,
            shared_memory: true,
            shared_memory_from: 1 << 20,
            cast_tree: CastTree::default(),
            worker_threads: None,
            startup_timeout: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(10),
            spawn_timeout: Duration::from_secs(60),
            bulk_streams: 4,
        }
    }
}

impl Config {
    /// The same settings, listening on `addr`.
    pub(crate) fn with_bind(&self, addr: SocketAddr) -> Config {
        Config {
            bind: addr,
            ..self.clone()
        }
    }

    /// A builder that starts from [`Config::from_env`].
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Config::from_env())
    }

    /// The defaults, with each setting whose environment variable is set (and
    /// parses) taken from there. A variable that does not parse is ignored
    /// with a warning.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Self {
        fn parsed<T: std::str::FromStr>(
            var: &impl Fn(&str) -> Option<String>,
            name: &str,
        ) -> Option<T> {
            let text = var(name)?;
            match text.trim().parse() {
                Ok(value) => Some(value),
                Err(_) => {
                    tracing::warn!(variable = name, value = %text, "ignoring a setting that does not parse");
                    None
                }
            }
        }
        let millis = |name: &str| parsed::<u64>(&var, name).map(Duration::from_millis);
        let defaults = Config::default();
        Config {
            heartbeat_timeout: millis("MONARCH_HEARTBEAT_TIMEOUT_MS")
                .unwrap_or(defaults.heartbeat_timeout),
            heartbeat_interval: millis("MONARCH_HEARTBEAT_INTERVAL_MS"),
            max_frame_bytes: parsed(&var, "MONARCH_MAX_FRAME_BYTES")
                .unwrap_or(defaults.max_frame_bytes),
            bind: parsed(&var, "MONARCH_BIND").unwrap_or(defaults.bind),
            transport: match var("MONARCH_TRANSPORT").as_deref().map(str::trim) {
                Some("quic") => Transport::Quic,
                _ => Transport::Auto,
            },
            shared_memory: !matches!(var("MONARCH_SHM").as_deref().map(str::trim), Some("off")),
            shared_memory_from: parsed(&var, "MONARCH_SHM_FROM_BYTES")
                .unwrap_or(defaults.shared_memory_from),
            cast_tree: CastTree {
                fanout: parsed(&var, "MONARCH_CAST_FANOUT").unwrap_or(defaults.cast_tree.fanout),
                min_procs: parsed(&var, "MONARCH_CAST_TREE_MIN")
                    .unwrap_or(defaults.cast_tree.min_procs),
            },
            worker_threads: parsed(&var, "MONARCH_WORKER_THREADS"),
            startup_timeout: millis("MONARCH_STARTUP_TIMEOUT_MS")
                .unwrap_or(defaults.startup_timeout),
            stop_timeout: millis("MONARCH_STOP_TIMEOUT_MS").unwrap_or(defaults.stop_timeout),
            spawn_timeout: millis("MONARCH_SPAWN_TIMEOUT_MS").unwrap_or(defaults.spawn_timeout),
            bulk_streams: parsed::<usize>(&var, "MONARCH_BULK_STREAMS")
                .unwrap_or(defaults.bulk_streams)
                .max(1),
        }
    }

    /// How long a silent peer process is tolerated before it is declared
    /// lost: its calls fail and its actors become supervision events.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }

    /// How often an idle link pings its peer.
    pub fn heartbeat_interval(&self) -> Duration {
        self.heartbeat_interval
            .unwrap_or_else(|| (self.heartbeat_timeout / 6).max(Duration::from_millis(10)))
    }

    /// The largest frame sent or accepted. A larger message fails at the
    /// sender ([`crate::CallError::TooLarge`]); a peer that sends one anyway
    /// has its connection closed.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// The address the process listens on for QUIC.
    pub fn bind(&self) -> SocketAddr {
        self.bind
    }

    /// How the process reaches processes on its own host.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Whether large `Bytes` arguments to processes on this host go through
    /// shared memory (one copy) rather than the socket.
    pub fn shared_memory(&self) -> bool {
        self.shared_memory
    }

    /// The smallest `Bytes` argument that goes through shared memory.
    pub fn shared_memory_from(&self) -> usize {
        self.shared_memory_from
    }

    /// How casts to meshes without a setting of their own fan out.
    pub fn cast_tree(&self) -> CastTree {
        self.cast_tree
    }

    /// The worker runtime's threads: `None` for one per core, `Some(0)` for a
    /// current-thread runtime. Fewer threads cut cross-process latency, but
    /// an actor that blocks its thread then stalls heartbeats too.
    pub fn worker_threads(&self) -> Option<usize> {
        self.worker_threads
    }

    /// How long a worker may take to start and connect back.
    pub fn startup_timeout(&self) -> Duration {
        self.startup_timeout
    }

    /// How long stopping a proc mesh waits for its actors to drain before
    /// the processes are killed.
    pub fn stop_timeout(&self) -> Duration {
        self.stop_timeout
    }

    /// How long spawning an actor mesh waits for each member's `init`:
    /// a member whose `init` has not returned by then fails the spawn.
    pub fn spawn_timeout(&self) -> Duration {
        self.spawn_timeout
    }

    /// How many streams a bulk transfer to another host uses in parallel.
    pub fn bulk_streams(&self) -> usize {
        self.bulk_streams
    }
}

/// Builds a [`Config`]; see [`Config::builder`].
#[derive(Clone, Debug)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Sets [`Config::heartbeat_timeout`].
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.0.heartbeat_timeout = timeout;
        self
    }

    /// Sets [`Config::heartbeat_interval`].
    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.0.heartbeat_interval = Some(interval);
        self
    }

    /// Sets [`Config::max_frame_bytes`].
    pub fn max_frame_bytes(mut self, bytes: usize) -> Self {
        self.0.max_frame_bytes = bytes;
        self
    }

    /// Sets [`Config::bind`].
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.0.bind = addr;
        self
    }

    /// Sets [`Config::transport`].
    pub fn transport(mut self, transport: Transport) -> Self {
        self.0.transport = transport;
        self
    }

    /// Sets [`Config::shared_memory`].
    pub fn shared_memory(mut self, on: bool) -> Self {
        self.0.shared_memory = on;
        self
    }

    /// Sets [`Config::shared_memory_from`].
    pub fn shared_memory_from(mut self, bytes: usize) -> Self {
        self.0.shared_memory_from = bytes;
        self
    }

    /// Sets [`Config::cast_tree`].
    pub fn cast_tree(mut self, tree: CastTree) -> Self {
        self.0.cast_tree = tree;
        self
    }

    /// Sets [`Config::worker_threads`].
    pub fn worker_threads(mut self, threads: Option<usize>) -> Self {
        self.0.worker_threads = threads;
        self
    }

    /// Sets [`Config::startup_timeout`].
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.0.startup_timeout = timeout;
        self
    }

    /// Sets [`Config::spawn_timeout`].
    pub fn spawn_timeout(mut self, timeout: Duration) -> Self {
        self.0.spawn_timeout = timeout;
        self
    }

    /// Sets [`Config::stop_timeout`].
    pub fn stop_timeout(mut self, timeout: Duration) -> Self {
        self.0.stop_timeout = timeout;
        self
    }

    /// Sets [`Config::bulk_streams`] (at least 1).
    pub fn bulk_streams(mut self, streams: usize) -> Self {
        self.0.bulk_streams = streams.max(1);
        self
    }

    /// The config.
    pub fn build(self) -> Config {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Config {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_supplies_defaults() {
        assert_eq!(from(&[]), Config::default());
        let config = from(&[
            ("MONARCH_HEARTBEAT_TIMEOUT_MS", "1500"),
            ("MONARCH_TRANSPORT", "quic"),
            ("MONARCH_SHM", "off"),
            ("MONARCH_CAST_FANOUT", "2"),
            ("MONARCH_WORKER_THREADS", "0"),
        ]);
        assert_eq!(config.heartbeat_timeout(), Duration::from_millis(1500));
        assert_eq!(config.heartbeat_interval(), Duration::from_millis(250));
        assert_eq!(config.transport(), Transport::Quic);
        assert!(!config.shared_memory());
        assert_eq!(config.cast_tree().fanout, 2);
        assert_eq!(config.cast_tree().min_procs, 32);
        assert_eq!(config.worker_threads(), Some(0));
    }

    #[test]
    fn settings_that_do_not_parse_keep_their_defaults() {
        let config = from(&[
            ("MONARCH_HEARTBEAT_TIMEOUT_MS", "soon"),
            ("MONARCH_BIND", "nowhere"),
        ]);
        assert_eq!(config, Config::default());
    }

    #[test]
    fn the_builder_overrides_and_the_config_travels() {
        let config = ConfigBuilder(Config::default())
            .heartbeat_timeout(Duration::from_millis(600))
            .heartbeat_interval(Duration::from_millis(50))
            .bulk_streams(0)
            .build();
        assert_eq!(config.heartbeat_interval(), Duration::from_millis(50));
        assert_eq!(config.bulk_streams(), 1);
        let bytes = postcard::to_allocvec(&config).unwrap();
        assert_eq!(postcard::from_bytes::<Config>(&bytes).unwrap(), config);
    }
}
