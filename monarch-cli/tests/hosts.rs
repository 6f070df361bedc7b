//! Multi-host meshes on one machine: each host a network namespace with a
//! `monarch host` agent in it, the controller (this test) in the root
//! namespace. A 2-host x 2-proc mesh runs the adverbs and slices, directly
//! and through a cast tree; cutting one
//! host's link, or killing its agent, is a supervision event naming that
//! host while the other keeps answering; an SPMD job runs twice across the
//! hosts, its ranks meeting at rank 0's address; a controller with another
//! credential is refused.
//!
//! Needs root and iproute2 (skips with a message otherwise):
//! `cargo test -p monarch-rs-cli --test hosts` (about half a minute). The
//! benchmark: `cargo test --release -p monarch-rs-cli --test hosts --
//! --ignored --nocapture`.

mod netns;
mod peer;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use monarch::prelude::*;
use monarch::testing::{Failed, Scenarios};
use monarch::{CastTree, Config, HostMesh, HostMeshError, JobCredential};
use netns::{Agent, Network};

/// Every scenario is bounded by this.
const LIMIT: Duration = Duration::from_secs(120);

/// Every wait inside a scenario is bounded by this.
const WAIT: Duration = Duration::from_secs(30);

/// The links' heartbeat timeout here: how soon a lost host is noticed.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Set in a re-executed copy of this binary that attaches as a stranger.
const STRANGER_ENV: &str = "HOSTS_TEST_STRANGER";

/// Set (to `AGENT CREDENTIAL_FILE`) in a re-executed copy of this binary
/// that attaches, spawns workers, prints their pids and waits to be killed.
const CONTROLLER_ENV: &str = "HOSTS_TEST_CONTROLLER";

/// Set in a re-executed copy of this binary that echoes UDP datagrams.
const ECHO_ENV: &str = "HOSTS_TEST_UDP_ECHO";

fn main() {
    peer::bootstrap();
    if let Ok(agent) = std::env::var(STRANGER_ENV) {
        std::process::exit(stranger(&agent));
    }
    if let Ok(spec) = std::env::var(CONTROLLER_ENV) {
        std::process::exit(doomed_controller(&spec));
    }
    if let Ok(listen) = std::env::var(ECHO_ENV) {
        udp_echo(&listen);
    }
    match Network::create(4) {
        Ok(network) => *lock(&NETWORK) = Some(Arc::new(network)),
        Err(why) => {
            eprintln!("skipping the multi-host tests: cannot make network namespaces: {why}")
        }
    }
    Scenarios::new()
        .limit(LIMIT)
        // Hosts are cut off and agents killed on purpose.
        .log_worker_faults()
        .one_at_a_time()
        .test("a_two_by_two_mesh_runs_the_adverbs_and_slices", || {
            Box::pin(adverbs_and_slices())
        })
        .test("an_spmd_job_runs_twice_across_hosts", || {
            Box::pin(spmd_across_hosts())
        })
        .test("a_cut_host_is_a_supervision_event_naming_it", || {
            Box::pin(cut_host())
        })
        .test(
            "a_dead_agent_is_a_supervision_event_naming_its_host",
            || Box::pin(dead_agent()),
        )
        .test("a_stranger_controller_is_refused", || {
            Box::pin(stranger_refused())
        })
        .test("a_dead_controllers_workers_do_not_outlive_it", || {
            Box::pin(dead_controller())
        })
        .ignored("bench_hosts", || Box::pin(bench()))
        .finally(|| drop(lock(&NETWORK).take()))
        .run();
}

/// The network every scenario uses, if it could be made.
static NETWORK: Mutex<Option<Arc<Network>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The network, or `None` (after saying so) where it could not be made.
fn network() -> Option<Arc<Network>> {
    let network = lock(&NETWORK).clone();
    if network.is_none() {
        eprintln!("skipped: no network namespaces here");
    }
    network
}

/// An actor that says where it runs and counts.
#[derive(Default)]
struct Where {
    count: i64,
}

#[actor]
impl Where {
    /// The host of this proc, as its id names it.
    #[endpoint]
    async fn host(&self) -> String {
        this_proc().proc_id().host().to_string()
    }

    /// The process it runs in.
    #[endpoint]
    async fn pid(&self) -> u32 {
        std::process::id()
    }

    #[endpoint]
    async fn incr(&mut self, by: i64) {
        self.count += by;
    }

    #[endpoint]
    async fn get(&self) -> i64 {
        self.count
    }
}

/// The job credential every scenario's agents and this controller share.
fn credential() -> &'static (PathBuf, JobCredential) {
    static CREDENTIAL: OnceLock<(PathBuf, JobCredential)> = OnceLock::new();
    CREDENTIAL.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("monarch-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let path = dir.join("job.pem");
        let _ = std::fs::remove_file(&path);
        let credential = JobCredential::mint().expect("a credential");
        credential.write(&path).expect("the credential file");
        (path, credential)
    })
}

fn monarch_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_monarch"))
}

/// A port no earlier scenario's agents used.
fn fresh_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(26600);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Starts agents on the first `hosts` namespaces and attaches to them.
async fn attach(network: &Network, hosts: usize) -> Result<(Vec<Agent>, HostMesh), Failed> {
    let (path, credential) = credential();
    let port = fresh_port();
    let agents = (0..hosts)
        .map(|i| network.start_agent(i, monarch_binary(), path, port))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs: Vec<SocketAddr> = agents.iter().map(|a| a.addr).collect();
    let config = Config::builder()
        .heartbeat_timeout(HEARTBEAT)
        .bind(SocketAddr::new(network.controller.into(), 0))
        .build();
    let mesh = tokio::time::timeout(WAIT, HostMesh::attach_with(&addrs, credential, config))
        .await
        .map_err(|_| "attach timed out")??;
    Ok((agents, mesh))
}

async fn adverbs_and_slices() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (_agents, hosts) = attach(&network, 2).await?;
    let names: Vec<&str> = hosts.host_names().collect();
    if names != ["host0", "host1"] {
        return Err(format!("hosts {names:?}").into());
    }
    let procs = hosts.spawn_procs(shape! { procs = 2 }).await?;
    if procs.shape().to_string() != shape! { hosts = 2, procs = 2 }.to_string() {
        return Err(format!("shape {}", procs.shape()).into());
    }
    let mesh = procs.spawn::<Where>("where", ()).await?;
    let at = mesh.host().call().await?;
    if at.values() != ["host0", "host0", "host1", "host1"] {
        return Err(format!("members run on {:?}", at.values()).into());
    }
    mesh.incr(1).broadcast()?;
    let host1 = mesh.slice("hosts", 1)?;
    host1.incr(10).broadcast()?;
    let counts = mesh.get().call().await?;
    if counts.values() != [1, 1, 11, 11] {
        return Err(format!("counts {:?}", counts.values()).into());
    }
    let one = mesh
        .slice("hosts", 1)?
        .slice("procs", 0)?
        .host()
        .call_one()
        .await?;
    if one != "host1" {
        return Err(format!("hosts=1, procs=0 runs on {one}").into());
    }
    let column = mesh.slice("procs", 1)?.host().call().await?;
    if column.values() != ["host0", "host1"] {
        return Err(format!("procs=1 runs on {:?}", column.values()).into());
    }
    let chosen = mesh.host().choose().await?;
    if !chosen.starts_with("host") {
        return Err(format!("choose answered {chosen}").into());
    }
    let sum = mesh.get().reduce(0, |a, b| a + b).await?;
    if sum != 24 {
        return Err(format!("reduced to {sum}").into());
    }
    // The same casts through a tree (one copy into each host, relayed there).
    let tree = mesh.with_cast_tree(CastTree {
        fanout: 2,
        min_procs: 2,
    });
    let before = monarch::testing::casts_started();
    tree.incr(100).broadcast()?;
    let counts = tree.get().call().await?;
    if counts.values() != [101, 101, 111, 111] {
        return Err(format!("counts through the tree {:?}", counts.values()).into());
    }
    if monarch::testing::casts_started() < before + 2 {
        return Err("the casts did not go through a tree".into());
    }
    tokio::time::timeout(WAIT, procs.stop())
        .await
        .map_err(|_| "stopping the mesh timed out")?;
    Ok(())
}

async fn spmd_across_hosts() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (_agents, hosts) = attach(&network, 2).await?;
    let procs = hosts.spawn_procs(shape! { procs = 2 }).await?;
    let command = peer::command()?;
    for round in 0..2 {
        let exits = procs.run_spmd(&command).await?;
        if exits.len() != 4 || !exits.iter().all(|e| e.success()) {
            return Err(format!("round {round}: {exits:?}").into());
        }
    }
    tokio::time::timeout(WAIT, procs.stop())
        .await
        .map_err(|_| "stopping the mesh timed out")?;
    Ok(())
}

/// A proc whose fault hook forwards every supervision event here.
fn event_owner() -> (Proc, tokio::sync::mpsc::UnboundedReceiver<SupervisionEvent>) {
    let (send, events) = tokio::sync::mpsc::unbounded_channel();
    let owner = Proc::new("hosts-test-owner");
    owner.set_fault_hook(Arc::new(move |event: &SupervisionEvent| {
        let _ = send.send(event.clone());
    }));
    (owner, events)
}

/// Waits for one supervision event per actor on host `name`'s two procs,
/// each naming the host; returns how long that took.
async fn events_naming(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<SupervisionEvent>,
    name: &str,
) -> Result<Duration, Failed> {
    let started = Instant::now();
    for _ in 0..2 {
        let event = tokio::time::timeout(WAIT, events.recv())
            .await
            .map_err(|_| format!("no supervision event for {name} within {WAIT:?}"))?
            .ok_or("the owner is gone")?;
        let shown = event.to_string();
        if event.actor.proc_id().host() != name || !shown.contains(name) {
            return Err(format!("an event that does not name {name}: {shown}").into());
        }
        eprintln!("supervision event: {shown}");
    }
    Ok(started.elapsed())
}

async fn cut_host() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (_agents, hosts) = attach(&network, 2).await?;
    let (owner, mut events) = event_owner();
    let procs = hosts
        .owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let mesh = procs.spawn::<Where>("where", ()).await?;
    mesh.get().call().await?;
    network.cut(1)?;
    let cut = Instant::now();
    let host1 = mesh.slice("hosts", 1)?;
    let pending = tokio::spawn(async move { host1.get().timeout(WAIT).call().await });
    let took = events_naming(&mut events, "host1").await;
    network.mend(1)?;
    let took = took?;
    eprintln!("host1 cut off: noticed after {took:?} (heartbeat timeout {HEARTBEAT:?})");
    if took > HEARTBEAT * 3 {
        return Err(format!("noticed after {took:?}").into());
    }
    match pending.await? {
        Ok(values) => return Err(format!("a call to the cut host answered {values:?}").into()),
        Err(error) if error.to_string().contains("host1") => {
            eprintln!("the pending call failed after {:?}: {error}", cut.elapsed())
        }
        Err(error) => {
            return Err(format!("the pending call failed without naming host1: {error}").into())
        }
    }
    let alive = mesh.slice("hosts", 0)?.get().call().await?;
    if alive.values() != [0, 0] {
        return Err(format!("host0 answered {:?}", alive.values()).into());
    }
    Ok(())
}

async fn dead_agent() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (mut agents, hosts) = attach(&network, 2).await?;
    let (owner, mut events) = event_owner();
    let procs = hosts
        .owned_by(&owner)
        .spawn_procs(shape! { procs = 2 })
        .await?;
    let mesh = procs.spawn::<Where>("where", ()).await?;
    mesh.get().call().await?;
    agents[0].kill();
    let took = events_naming(&mut events, "host0").await?;
    eprintln!("host0's agent killed: noticed after {took:?}");
    let alive = mesh.slice("hosts", 1)?.host().call().await?;
    if alive.values() != ["host1", "host1"] {
        return Err(format!("host1 answered {:?}", alive.values()).into());
    }
    Ok(())
}

async fn stranger_refused() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (path, _) = credential();
    let agent = network.start_agent(2, monarch_binary(), path, fresh_port())?;
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .env(STRANGER_ENV, agent.addr.to_string())
        .env("MONARCH_BIND", format!("{}:0", network.controller))
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(WAIT, status)
        .await
        .map_err(|_| "the stranger did not finish")??;
    if !status.success() {
        return Err(format!("the stranger was not refused as expected ({status})").into());
    }
    Ok(())
}

/// The stranger: attaches to `agent` with a credential of its own; exits 0
/// if it was refused at the handshake.
fn stranger(agent: &str) -> i32 {
    let agent: SocketAddr = agent.parse().expect("an agent address");
    let credential = JobCredential::mint().expect("a credential");
    let attached = monarch::testing::runtime().block_on(HostMesh::attach(&[agent], &credential));
    match attached {
        Err(HostMeshError::Attach { reason, .. }) => {
            eprintln!("the stranger was refused: {reason}");
            0
        }
        Err(other) => {
            eprintln!("the stranger failed otherwise: {other}");
            1
        }
        Ok(_) => {
            eprintln!("the stranger was let in");
            1
        }
    }
}

/// A controller SIGKILLed with workers on a host: the agent notices the
/// lost link and kills them.
async fn dead_controller() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    let (path, _) = credential();
    let agent = network.start_agent(3, monarch_binary(), path, fresh_port())?;
    let mut controller = std::process::Command::new(std::env::current_exe()?)
        .env(CONTROLLER_ENV, format!("{} {}", agent.addr, path.display()))
        .env("MONARCH_BIND", format!("{}:0", network.controller))
        .env(
            "MONARCH_HEARTBEAT_TIMEOUT_MS",
            HEARTBEAT.as_millis().to_string(),
        )
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let lines = netns::lines_of(&mut controller);
    let said = lines.recv_timeout(WAIT);
    let _ = controller.kill();
    let _ = controller.wait();
    let said = said.map_err(|_| "the controller did not report its workers")?;
    let pids: Vec<u32> = said
        .strip_prefix("workers ")
        .ok_or_else(|| format!("the controller said {said:?}"))?
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    if pids.len() != 2 || !pids.iter().all(|pid| running(*pid)) {
        return Err(format!("workers {pids:?} are not running before the kill").into());
    }
    let killed = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    while pids.iter().any(|pid| running(*pid)) {
        if killed.elapsed() > WAIT {
            return Err(format!("workers {pids:?} outlived their controller by {WAIT:?}").into());
        }
        tick.tick().await;
    }
    eprintln!(
        "the workers were gone {:?} after the controller",
        killed.elapsed()
    );
    Ok(())
}

/// Whether a process exists and has not exited (a zombie has).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

/// The doomed controller: attaches to the agent in `spec`, spawns two
/// workers there, prints `workers PID PID` and waits (at most two minutes)
/// for the test to kill it.
fn doomed_controller(spec: &str) -> i32 {
    let (agent, file) = spec.split_once(' ').expect("AGENT CREDENTIAL_FILE");
    let agent: SocketAddr = agent.parse().expect("an agent address");
    let credential = JobCredential::read(Path::new(file)).expect("the job credential");
    monarch::testing::runtime().block_on(async {
        let hosts = HostMesh::attach(&[agent], &credential)
            .await
            .expect("attached");
        let procs = hosts
            .spawn_procs(shape! { procs = 2 })
            .await
            .expect("workers");
        let mesh = procs.spawn::<Where>("where", ()).await.expect("a mesh");
        let pids = mesh.pid().call().await.expect("their pids");
        let pids: Vec<String> = pids.values().iter().map(u32::to_string).collect();
        println!("workers {}", pids.join(" "));
        tokio::time::sleep(LIMIT).await;
        1
    })
}

/// Times `rounds` UDP round trips to the echo `socket` is connected to,
/// after 20 of warm-up.
fn ping_pong(socket: &UdpSocket, rounds: usize) -> std::io::Result<Duration> {
    socket.set_read_timeout(Some(WAIT))?;
    let mut buffer = [0u8; 64];
    for _ in 0..20 {
        socket.send(b"ping")?;
        socket.recv(&mut buffer)?;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        socket.send(b"ping")?;
        socket.recv(&mut buffer)?;
    }
    Ok(started.elapsed())
}

/// Echoes UDP datagrams on `listen` until killed.
fn udp_echo(listen: &str) -> ! {
    let socket = UdpSocket::bind(listen).expect("an echo socket");
    println!("echoing on {}", socket.local_addr().expect("an address"));
    let mut buffer = [0u8; 64];
    loop {
        if let Ok((n, from)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(&buffer[..n], from);
        }
    }
}

/// `call()` on 2 hosts x 4 procs against 1 host x 8 procs, attaching 4
/// agents and spawning their procs, and an ask round trip across a veth
/// pair against a bare UDP ping-pong across the same pair.
async fn bench() -> Result<(), Failed> {
    let Some(network) = network() else {
        return Ok(());
    };
    const ROUNDS: usize = 300;
    let timed = |elapsed: Duration| elapsed / ROUNDS as u32;

    let started = Instant::now();
    let (_agents, four) = attach(&network, 4).await?;
    let attached = started.elapsed();
    let procs4 = four.spawn_procs(shape! { procs = 1 }).await?;
    let attach_and_spawn = started.elapsed();
    eprintln!(
        "attach 4 agents: {attached:?}; attach + spawn 4 procs: {attach_and_spawn:?} (target < 500 ms)"
    );
    procs4.stop().await;

    let (_agents2, two) = attach(&network, 2).await?;
    let remote = two.spawn_procs(shape! { procs = 4 }).await?;
    let remote_mesh = remote.spawn::<Where>("bench", ()).await?;
    let local = this_host().spawn_procs(shape! { procs = 8 }).await?;
    let local_mesh = local.spawn::<Where>("bench", ()).await?;
    for _ in 0..20 {
        remote_mesh.get().call().await?;
        local_mesh.get().call().await?;
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        remote_mesh.get().call().await?;
    }
    let two_by_four = timed(t.elapsed());
    let t = Instant::now();
    for _ in 0..ROUNDS {
        local_mesh.get().call().await?;
    }
    let one_by_eight = timed(t.elapsed());
    eprintln!(
        "call(): 2 hosts x 4 procs {two_by_four:?}, 1 host x 8 procs (this host) {one_by_eight:?}: {:.2}x (target < 1.5x)",
        two_by_four.as_secs_f64() / one_by_eight.as_secs_f64()
    );
    // The same 8 procs on one remote host: both meshes across veth pairs.
    let (_agent1, one_host) = attach(&network, 1).await?;
    let remote8 = one_host.spawn_procs(shape! { procs = 8 }).await?;
    let remote8_mesh = remote8.spawn::<Where>("bench", ()).await?;
    for _ in 0..20 {
        remote8_mesh.get().call().await?;
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        remote8_mesh.get().call().await?;
    }
    let one_remote_by_eight = timed(t.elapsed());
    eprintln!(
        "call(): 2 hosts x 4 procs {two_by_four:?}, 1 remote host x 8 procs {one_remote_by_eight:?}: {:.2}x",
        two_by_four.as_secs_f64() / one_remote_by_eight.as_secs_f64()
    );
    remote8.stop().await;

    let one = remote_mesh.slice("hosts", 1)?.slice("procs", 0)?;
    for _ in 0..20 {
        one.get().call_one().await?;
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        one.get().call_one().await?;
    }
    let ask = timed(t.elapsed());
    let echo_at = format!("{}:7", network.hosts[1].ip);
    let mut echo = std::process::Command::new("ip")
        .args(["netns", "exec", &network.hosts[1].namespace])
        .arg(std::env::current_exe()?)
        .env(ECHO_ENV, &echo_at)
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let lines = netns::lines_of(&mut echo);
    lines
        .recv_timeout(WAIT)
        .map_err(|_| "the echo did not start")?;
    let socket = UdpSocket::bind(SocketAddr::new(network.controller.into(), 0))?;
    socket.connect(&echo_at)?;
    let udp = timed(ping_pong(&socket, ROUNDS)?);
    let _ = echo.kill();
    let _ = echo.wait();
    eprintln!(
        "ask round trip across a veth pair {ask:?}, UDP ping-pong {udp:?}: {:.2}x",
        ask.as_secs_f64() / udp.as_secs_f64()
    );
    // The 1-host mesh talks over loopback, the 2-host one over veth pairs
    // and a bridge: the network's own share of the call() ratio.
    let loopback = UdpSocket::bind("127.0.0.1:0")?;
    let echo_addr = loopback.local_addr()?;
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while let Ok((n, from)) = loopback.recv_from(&mut buffer) {
            let _ = loopback.send_to(&buffer[..n], from);
        }
    });
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    socket.connect(echo_addr)?;
    let udp_loopback = timed(ping_pong(&socket, ROUNDS)?);
    eprintln!(
        "UDP ping-pong over loopback {udp_loopback:?}, across a veth pair {udp:?}: {:.2}x",
        udp.as_secs_f64() / udp_loopback.as_secs_f64()
    );
    remote.stop().await;
    local.stop().await;
    Ok(())
}
