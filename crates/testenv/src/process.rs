//! Child processes that never outlive the test process.
//!
//! Every child is started through `setpriv --pdeathsig KILL`, so the kernel
//! kills it when the thread that spawned it exits, even if the test process
//! is killed with SIGKILL and no destructor runs. Because the signal follows
//! the *spawning thread*, all children are spawned from one dedicated thread
//! that lives as long as the process, not from a tokio worker that may retire.
//! `ManagedProcess` also kills its child on drop, for the ordinary case.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::error::{Error, Result, io};

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `command` from the long-lived spawner thread.
fn spawn_from_keeper_thread(command: Command) -> std::io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (requests, incoming) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testenv-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
                // The channel lives in a static, so this loop ends only with
                // the process; parking keeps the thread (and its children) alive.
                loop {
                    std::thread::park();
                }
            })
            .expect("the spawner thread starts");
        Mutex::new(requests)
    });
    let (reply, answer) = mpsc::channel();
    keeper
        .lock()
        .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
        .send((command, reply))
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?;
    answer
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread is gone"))?
}

/// One running child with its log file.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl ManagedProcess {
    /// Starts `program` with `args`, appending stdout and stderr to `log`.
    pub fn start(name: &str, program: &Path, args: Vec<String>, log: PathBuf) -> Result<Self> {
        Self::start_with_env(name, program, args, Vec::new(), log)
    }

    /// Like [`Self::start`], with extra environment variables.
    pub fn start_with_env(
        name: &str,
        program: &Path,
        args: Vec<String>,
        envs: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Self> {
        let mut process = Self {
            name: name.to_owned(),
            program: program.to_owned(),
            args,
            envs,
            log,
            child: None,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<()> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let err = out.try_clone().map_err(io("duplicating the log handle"))?;
        let mut command = Command::new("setpriv");
        command
            .arg("--pdeathsig")
            .arg("KILL")
            .arg("--")
            .arg(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = spawn_from_keeper_thread(command).map_err(io(format!(
            "starting {} ({})",
            self.name,
            self.program.display()
        )))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Fails with the log's tail if the child has already exited.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(Error::Other(format!("{} is stopped", self.name)));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(Error::Exited {
                process: self.name.clone(),
                status: status.to_string(),
                log: self.log.clone(),
                tail: tail(&self.log, 30),
            }),
            Err(source) => Err(Error::Io {
                what: format!("waiting for {}", self.name),
                source,
            }),
        }
    }

    /// Sends SIGKILL and reaps the child. Safe to call twice.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits up to `grace` for the child to exit. Returns
    /// its exit status, or `None` when it had to be killed (or was not running).
    pub fn terminate(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// Starts the same command again (after `kill` or `terminate`).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    /// The last `lines` lines of the log, for error messages.
    pub fn tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of a file, or a note that it could not be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read {}: {err})", path.display()),
    }
}

/// `N` distinct free TCP ports on 127.0.0.1, for a child process to listen
/// on.
///
/// They are taken below the kernel's ephemeral range
/// (`net.ipv4.ip_local_port_range`), never from it: a port the kernel hands
/// out for `bind(0)` is released before the child binds it, and in between
/// the kernel may give the same number to any outgoing connection's local
/// end (there are thousands during a test run), so the child fails with
/// "Address already in use". Below that range no connection ever gets a port
/// on its own. Each process walks the range from its own offset (derived
/// from its pid) and never hands out a port twice, and every candidate is
/// checked by binding it, so ports in use elsewhere are skipped.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (floor, ceiling) = listening_range();
    let span = u32::from(ceiling - floor);
    let offset = std::process::id().wrapping_mul(7_919) % span;
    let mut ports = [0; N];
    let mut listeners = Vec::with_capacity(N);
    for port in &mut ports {
        let found = (0..span).find_map(|_| {
            let step = NEXT.fetch_add(1, Ordering::Relaxed);
            let candidate = floor + ((offset + step) % span) as u16;
            std::net::TcpListener::bind(("127.0.0.1", candidate))
                .ok()
                .map(|listener| (candidate, listener))
        });
        let (candidate, listener) = found.ok_or_else(|| {
            io("finding a free port")(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("every port from {floor} to {ceiling} is in use"),
            ))
        })?;
        *port = candidate;
        // Held until all are chosen, so a later candidate cannot repeat it.
        listeners.push(listener);
    }
    Ok(ports)
}

/// Ports for listeners: from 10000 up to the start of the ephemeral range
/// (32768 unless the machine says otherwise).
fn listening_range() -> (u16, u16) {
    const FLOOR: u16 = 10_000;
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    (FLOOR, ephemeral_start.max(FLOOR + 1_000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_below_the_ephemeral_range() {
        let (floor, ceiling) = listening_range();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let ports: [u16; 3] = free_ports().expect("ports");
            for port in ports {
                assert!((floor..ceiling).contains(&port), "{port}");
                assert!(seen.insert(port), "{port} handed out twice");
                std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port is free");
            }
        }
    }
}
