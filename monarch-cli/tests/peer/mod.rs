//! A small SPMD program, as torchrun would start it: it checks the
//! environment it was given, then every rank reports to rank 0 over
//! `MASTER_ADDR:MASTER_PORT` and rank 0 answers each with the sum of all
//! ranks. Test binaries run it when [`PEER_ENV`] is set.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Set to run this binary as the SPMD program.
pub(crate) const PEER_ENV: &str = "MONARCH_TEST_SPMD_PEER";

/// How long rank 0 waits for its peers, and they for it.
const WAIT: Duration = Duration::from_secs(30);

/// What a test binary that may be started as the SPMD program does first:
/// bootstraps monarch and, when [`PEER_ENV`] is set, runs the program and
/// exits with its code.
pub(crate) fn bootstrap() {
    monarch::bootstrap();
    if std::env::var_os(PEER_ENV).is_some() {
        std::process::exit(run());
    }
}

/// This test binary started as the SPMD program, once per proc.
pub(crate) fn command() -> std::io::Result<monarch::SpmdCommand> {
    let exe = std::env::current_exe()?;
    Ok(monarch::SpmdCommand::new(exe.display().to_string()).env(PEER_ENV, "1"))
}

/// Runs the program; the process's exit code.
fn run() -> i32 {
    match peer() {
        Ok(summary) => {
            println!("{summary}");
            0
        }
        Err(why) => {
            eprintln!("spmd peer failed: {why}");
            1
        }
    }
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

fn number(name: &str) -> Result<usize, String> {
    var(name)?
        .parse()
        .map_err(|e| format!("{name} is not a number: {e}"))
}

fn peer() -> Result<String, String> {
    let rank = number("RANK")?;
    let world = number("WORLD_SIZE")?;
    let local_rank = number("LOCAL_RANK")?;
    let local_world = number("LOCAL_WORLD_SIZE")?;
    let master = format!("{}:{}", var("MASTER_ADDR")?, number("MASTER_PORT")?);
    if rank >= world || local_rank >= local_world || local_world > world {
        return Err(format!(
            "inconsistent: RANK {rank} WORLD_SIZE {world} LOCAL_RANK {local_rank} LOCAL_WORLD_SIZE {local_world}"
        ));
    }
    if world % local_world != 0 || local_rank != rank % local_world {
        return Err(format!(
            "LOCAL_RANK {local_rank} of {local_world} does not fit RANK {rank} of {world}"
        ));
    }
    let expected: usize = (0..world).sum();
    if rank == 0 {
        let listener =
            TcpListener::bind(&master).map_err(|e| format!("cannot listen on {master}: {e}"))?;
        let mut heard = Vec::new();
        let mut peers = Vec::new();
        for _ in 1..world {
            let (stream, _) = listener.accept().map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(WAIT))
                .map_err(|e| e.to_string())?;
            let mut line = String::new();
            BufReader::new(&stream)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
            heard.push(line.trim().parse::<usize>().map_err(|e| e.to_string())?);
            peers.push(stream);
        }
        let total: usize = heard.iter().sum();
        for mut stream in peers {
            writeln!(stream, "{total}").map_err(|e| e.to_string())?;
        }
        heard.sort_unstable();
        if total != expected || heard != (1..world).collect::<Vec<_>>() {
            return Err(format!("rank 0 heard {heard:?}"));
        }
        Ok(format!(
            "rank 0 of {world} heard ranks {heard:?}, sum {total}"
        ))
    } else {
        let started = Instant::now();
        let mut stream = loop {
            match TcpStream::connect(&master) {
                Ok(stream) => break stream,
                // Rank 0 may not listen yet, as with torch.distributed.
                Err(_) if started.elapsed() < WAIT => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(format!("cannot reach rank 0 at {master}: {e}")),
            }
        };
        stream
            .set_read_timeout(Some(WAIT))
            .map_err(|e| e.to_string())?;
        writeln!(stream, "{rank}").map_err(|e| e.to_string())?;
        let mut line = String::new();
        BufReader::new(&stream)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let total: usize = line
            .trim()
            .parse()
            .map_err(|e| format!("rank 0 answered {line:?}: {e}"))?;
        if total != expected {
            return Err(format!("rank 0 said the sum is {total}, not {expected}"));
        }
        Ok(format!(
            "rank {rank} (local {local_rank} of {local_world}) agreed on sum {total}"
        ))
    }
}
