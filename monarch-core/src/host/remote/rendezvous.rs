//! Where agents started by a scheduler say where they listen: a folder on
//! storage that every host and the controller see (the home or scratch
//! file system of a cluster), one small file per agent.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::net::routable_ip;
use crate::runtime::proc::local_hostname;

/// A rendezvous folder: each agent writes `RANK.agent` (its name and
/// address) once it listens; the launcher waits until every rank has.
///
/// ```
/// use monarch_core::Rendezvous;
///
/// let dir = std::env::temp_dir().join(format!("rendezvous-doc-{}", std::process::id()));
/// let rendezvous = Rendezvous::new(&dir);
/// rendezvous.announce(0, "node7", "10.0.0.7:26600".parse().unwrap()).unwrap();
/// let agents = rendezvous.announced().unwrap();
/// assert_eq!(agents[0].name, "node7");
/// assert_eq!(agents[0].addr.port(), 26600);
/// std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Rendezvous {
    dir: PathBuf,
}

/// One agent's announcement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnouncedAgent {
    /// Its rank among the agents the scheduler started.
    pub rank: usize,
    /// Its host name (what proc ids and errors call it).
    pub name: String,
    /// Where controllers reach it.
    pub addr: SocketAddr,
}

/// Waiting at a rendezvous went wrong.
#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    /// The folder or a file in it could not be read or written.
    #[error("the rendezvous folder {path} cannot be used: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file in the folder is not an announcement.
    #[error("{path} is not an agent announcement (`NAME ADDR`): {line:?}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it holds.
        line: String,
    },
    /// Not every agent announced itself in time.
    #[error("{announced} of {expected} agents announced themselves in {dir} within {waited:?}")]
    Timeout {
        /// The folder.
        dir: PathBuf,
        /// How many did.
        announced: usize,
        /// How many were started.
        expected: usize,
        /// How long the launcher waited.
        waited: Duration,
    },
    /// What started the agents ended or failed before they all announced.
    #[error("the agents' job ended before every agent announced itself: {0}")]
    JobEnded(String),
}

impl Rendezvous {
    /// A rendezvous in `dir` (made when the first agent announces).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Rendezvous { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes agent `rank`'s announcement, whole or not at all (a temporary
    /// file renamed into place), so a reader never sees half of one.
    pub fn announce(
        &self,
        rank: usize,
        name: &str,
        addr: SocketAddr,
    ) -> Result<(), RendezvousError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RendezvousError::Io { path, source }
        };
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let file = self.dir.join(format!("{rank}.agent"));
        let partial = self.dir.join(format!(".{rank}.agent.partial"));
        std::fs::write(&partial, format!("{name} {addr}\n")).map_err(io(&partial))?;
        std::fs::rename(&partial, &file).map_err(io(&file))
    }

    /// Every announcement so far, by rank.
    pub fn announced(&self) -> Result<Vec<AnnouncedAgent>, RendezvousError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RendezvousError::Io {
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut agents = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| RendezvousError::Io {
                    path: self.dir.clone(),
                    source,
                })?
                .path();
            let Some(rank) = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".agent"))
                .and_then(|rank| rank.parse().ok())
            else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|source| RendezvousError::Io {
                path: path.clone(),
                source,
            })?;
            let line = text.trim();
            let parsed = line
                .split_once(' ')
                .and_then(|(name, addr)| Some((name, addr.parse().ok()?)));
            let Some((name, addr)) = parsed else {
                return Err(RendezvousError::Malformed {
                    path,
                    line: line.to_string(),
                });
            };
            agents.push(AnnouncedAgent {
                rank,
                name: name.to_string(),
                addr,
            });
        }
        agents.sort_by_key(|agent| agent.rank);
        Ok(agents)
    }

    /// Waits until ranks `0..expected` have all announced, at most
    /// `timeout`. `job_alive` is awaited between looks (about every 100 ms)
    /// and ends the wait with its error when what started the agents has
    /// ended.
    pub async fn wait(
        &self,
        expected: usize,
        timeout: Duration,
        mut job_alive: impl AsyncFnMut() -> Result<(), String>,
    ) -> Result<Vec<AnnouncedAgent>, RendezvousError> {
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let agents = self.announced()?;
            if (0..expected).all(|rank| agents.iter().any(|agent| agent.rank == rank)) {
                return Ok(agents.into_iter().filter(|a| a.rank < expected).collect());
            }
            job_alive().await.map_err(RendezvousError::JobEnded)?;
            if started.elapsed() >= timeout {
                return Err(RendezvousError::Timeout {
                    dir: self.dir.clone(),
                    announced: agents.len(),
                    expected,
                    waited: started.elapsed(),
                });
            }
        }
    }
}

/// The address to announce for an agent listening on `listening`: that
/// address itself when its IP is specific; for a wildcard (`0.0.0.0`), the
/// first non-loopback address this host's name resolves to, else the
/// source address of the default route, else loopback.
pub fn advertised_addr(listening: SocketAddr) -> SocketAddr {
    if !listening.ip().is_unspecified() {
        return listening;
    }
    let port = listening.port();
    let by_name = (local_hostname(), port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() && !a.ip().is_loopback()));
    if let Some(addr) = by_name {
        return addr;
    }
    // TEST-NET-1 is never routed specifically: the lookup takes the default
    // route. Nothing is sent.
    let by_route = routable_ip(SocketAddr::from(([192, 0, 2, 1], 9)))
        .ok()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified());
    SocketAddr::new(by_route.unwrap_or(IpAddr::from([127, 0, 0, 1])), port)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("monarch-rendezvous-{name}-{}", std::process::id()))
    }

    #[tokio::test]
    async fn waits_for_every_rank_and_orders_them() {
        let dir = scratch("order");
        let rendezvous = Rendezvous::new(&dir);
        rendezvous
            .announce(1, "b", "10.0.0.2:1".parse().unwrap())
            .unwrap();
        let writer = rendezvous.clone();
        let late =
            tokio::spawn(async move { writer.announce(0, "a", "10.0.0.1:1".parse().unwrap()) });
        let agents = rendezvous
            .wait(2, Duration::from_secs(10), async || Ok(()))
            .await
            .unwrap();
        late.await.unwrap().unwrap();
        let names: Vec<_> = agents.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_dead_job_or_a_bad_file_ends_the_wait() {
        let dir = scratch("dead");
        let rendezvous = Rendezvous::new(&dir);
        let ended = rendezvous
            .wait(1, Duration::from_secs(10), async || {
                Err("srun exited with 1".into())
            })
            .await;
        assert!(
            matches!(&ended, Err(RendezvousError::JobEnded(why)) if why.contains("srun")),
            "{ended:?}"
        );
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.agent"), "no address here\n").unwrap();
        let bad = rendezvous
            .wait(1, Duration::from_secs(10), async || Ok(()))
            .await;
        assert!(
            matches!(bad, Err(RendezvousError::Malformed { .. })),
            "{bad:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_agent_times_out_saying_how_many_came() {
        let dir = scratch("timeout");
        let rendezvous = Rendezvous::new(&dir);
        rendezvous
            .announce(0, "a", "10.0.0.1:1".parse().unwrap())
            .unwrap();
        let waited = rendezvous
            .wait(2, Duration::from_millis(300), async || Ok(()))
            .await;
        assert!(
            matches!(
                waited,
                Err(RendezvousError::Timeout {
                    announced: 1,
                    expected: 2,
                    ..
                })
            ),
            "{waited:?}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_wildcard_listener_announces_a_specific_address() {
        let addr = advertised_addr("0.0.0.0:26600".parse().unwrap());
        assert!(!addr.ip().is_unspecified());
        assert_eq!(addr.port(), 26600);
        let fixed: SocketAddr = "10.1.2.3:5".parse().unwrap();
        assert_eq!(advertised_addr(fixed), fixed);
    }
}
