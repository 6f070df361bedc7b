//! Hosts on one machine for multi-host tests: a network namespace per host,
//! each joined by a veth pair to a bridge in this (the root) namespace, where
//! the controller runs; host agents started inside the namespaces.
//!
//! Needs root and `ip` (iproute2); [`Network::create`] says why not where
//! either is missing, so the tests can skip.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Namespaces, veths and a bridge made for this test process; taken down
/// when dropped.
pub(crate) struct Network {
    tag: String,
    /// The bridge's address: where the controller listens.
    pub(crate) controller: Ipv4Addr,
    pub(crate) hosts: Vec<NetHost>,
}

/// One namespace of a [`Network`].
pub(crate) struct NetHost {
    pub(crate) namespace: String,
    pub(crate) ip: Ipv4Addr,
    /// The root side of its veth pair: down cuts the host off.
    veth: String,
}

/// What every name made here starts with (stale ones are cleaned up).
const PREFIX: &str = "mrs";

impl Network {
    /// Makes `hosts` namespaces on a fresh subnet, or says why it cannot.
    pub(crate) fn create(hosts: usize) -> Result<Network, String> {
        if effective_uid() != 0 {
            return Err("not running as root".into());
        }
        run("ip", &["-V"]).map_err(|e| format!("no iproute2: {e}"))?;
        clean_stale();
        let pid = std::process::id();
        let tag = format!("{PREFIX}{pid}");
        let octet = (pid % 250) as u8 + 1;
        let subnet = |last: u8| Ipv4Addr::new(10, 213, octet, last);
        let mut network = Network {
            tag: tag.clone(),
            controller: subnet(1),
            hosts: Vec::new(),
        };
        let bridge = format!("{tag}br");
        run("ip", &["link", "add", &bridge, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{}/24", subnet(1)), "dev", &bridge],
        )?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let namespace = format!("{tag}-{i}");
            let veth = format!("{tag}v{i}");
            let peer = format!("{tag}p{i}");
            let ip = subnet(i as u8 + 2);
            run("ip", &["netns", "add", &namespace])?;
            network.hosts.push(NetHost {
                namespace: namespace.clone(),
                ip,
                veth: veth.clone(),
            });
            run(
                "ip",
                &["link", "add", &veth, "type", "veth", "peer", "name", &peer],
            )?;
            run("ip", &["link", "set", &peer, "netns", &namespace])?;
            run("ip", &["link", "set", &veth, "master", &bridge])?;
            run("ip", &["link", "set", &veth, "up"])?;
            let inside = |args: &[&str]| {
                let mut all = vec!["netns", "exec", &namespace, "ip"];
                all.extend_from_slice(args);
                run("ip", &all)
            };
            inside(&["addr", "add", &format!("{ip}/24"), "dev", &peer])?;
            inside(&["link", "set", &peer, "up"])?;
            inside(&["link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// Cuts host `i` off the network (its veth goes down).
    pub(crate) fn cut(&self, i: usize) -> Result<(), String> {
        run("ip", &["link", "set", &self.hosts[i].veth, "down"])
    }

    /// Joins host `i` to the network again.
    pub(crate) fn mend(&self, i: usize) -> Result<(), String> {
        run("ip", &["link", "set", &self.hosts[i].veth, "up"])
    }

    /// Runs `program args` inside host `i`'s namespace, stdout piped.
    pub(crate) fn spawn_in(
        &self,
        i: usize,
        program: &Path,
        args: &[&str],
    ) -> std::io::Result<Child> {
        Command::new("ip")
            .args(["netns", "exec", &self.hosts[i].namespace])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
    }

    /// Starts `monarch host` in host `i`'s namespace on `port`, named
    /// `host{i}`, and waits until it listens.
    pub(crate) fn start_agent(
        &self,
        i: usize,
        monarch: &Path,
        credential: &Path,
        port: u16,
    ) -> Result<Agent, String> {
        let addr = SocketAddr::new(IpAddr::V4(self.hosts[i].ip), port);
        let name = format!("host{i}");
        let credential = credential.display().to_string();
        let listen = addr.to_string();
        let args = [
            "host",
            "--listen",
            &listen,
            "--credential",
            &credential,
            "--name",
            &name,
        ];
        let mut child = self
            .spawn_in(i, monarch, &args)
            .map_err(|e| format!("cannot start the agent: {e}"))?;
        let lines = lines_of(&mut child);
        match lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("listening on") => Ok(Agent { child, addr }),
            Ok(line) => Err(format!("the agent said {line:?}")),
            Err(_) => Err("the agent did not say it listens within 30 s".into()),
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            let _ = run("ip", &["netns", "del", &host.namespace]);
        }
        let _ = run("ip", &["link", "del", &format!("{}br", self.tag)]);
    }
}

/// A host agent in a namespace; killed when dropped.
pub(crate) struct Agent {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Agent {
    /// Kills the agent (SIGKILL), as a crash would.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The lines `child` writes to stdout, read on a thread of their own.
pub(crate) fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("{line}");
            let _ = send.send(line);
        }
    });
    lines
}

/// Takes down what test processes that are gone left behind.
fn clean_stale() {
    let Ok(listing) = run_output("ip", &["netns", "list"]) else {
        return;
    };
    for line in listing.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = run("ip", &["netns", "del", name]);
            let _ = run("ip", &["link", "del", &format!("{PREFIX}{pid}br")]);
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_output(program, args).map(drop)
}

fn run_output(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
