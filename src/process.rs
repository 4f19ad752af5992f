//! Child processes that cairn waits for (health checks): each runs in a
//! process group of its own, so that a timeout or an interrupt ends it with
//! everything it started.

use std::io;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The variables that may hold a repository password: never passed on to
/// a hook, a collector's command, a health check or `cairn run`'s command.
pub const PASSWORD_VARIABLES: [&str; 6] = [
    "CAIRN_PASSWORD",
    "CAIRN_UNLOCK_KEY_FILE",
    "CAIRN_PASSWORD_FILE",
    "CAIRN_PASSWORD_COMMAND",
    "CAIRN_NEW_PASSWORD",
    "CAIRN_NEW_PASSWORD_FILE",
];

/// Removes the password variables from what `cmd` inherits.
pub fn without_passwords(cmd: &mut Command) -> &mut Command {
    for name in PASSWORD_VARIABLES {
        cmd.env_remove(name);
    }
    cmd
}

/// Runs `line` through the shell (`sh -c`, `cmd /C` on Windows) with
/// stdin closed and stdout/stderr passed through; kills its whole process
/// group when `timeout` passes or cairn is interrupted.
pub fn run_shell(line: &str, timeout: Duration) -> io::Result<ExitStatus> {
    let mut cmd = if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.arg("/C").arg(line);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c").arg(line);
        c
    };
    cmd.stdin(Stdio::null());
    without_passwords(&mut cmd);
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + timeout;
    // Polled often at first: most commands (`go version`) end in milliseconds.
    let mut nap = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        let timed_out = Instant::now() >= deadline;
        if timed_out || crate::interrupt::is_set() {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(if timed_out {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("still running after {}s; stopped", timeout.as_secs()),
                )
            } else {
                io::Error::new(io::ErrorKind::Interrupted, "interrupted")
            });
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(10));
    }
}

/// What a program printed, and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `program` with `args` (no shell), `input` on its stdin, its output
/// captured; kills its whole process group when `timeout` passes or cairn
/// is interrupted (installing a scheduled job: crontab, systemctl...).
pub fn run_captured(program: &str, args: &[&str], input: &[u8], timeout: Duration) -> io::Result<Captured> {
    use std::io::{Read, Write};
    let mut cmd = Command::new(program);
    without_passwords(&mut cmd);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn()?;
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // It may be a password (the credential store's helpers): wiped after.
    let input = zeroize::Zeroizing::new(input.to_vec());
    let feeder = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&input);
        }
    });
    // Each drain says when its pipe closes: the child has then usually
    // exited, so a short command is not kept waiting for the next poll.
    let (closed_tx, closed) = std::sync::mpsc::channel();
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let closed_tx = closed_tx.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            if let Some(p) = pipe {
                let _ = p.take(16 << 20).read_to_end(&mut out);
            }
            let _ = closed_tx.send(());
            out
        })
    };
    let out = drain(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
    drop(closed_tx);
    let deadline = Instant::now() + timeout;
    let mut open_pipes = 2;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline || crate::interrupt::is_set() {
            kill_group(&mut child);
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{program} did not finish in {}s; stopped", timeout.as_secs()),
            ));
        }
        match open_pipes {
            0 => std::thread::sleep(Duration::from_millis(1)),
            _ => {
                if closed.recv_timeout(Duration::from_millis(10)).is_ok() {
                    open_pipes -= 1;
                }
            }
        }
    };
    let _ = feeder.join();
    Ok(Captured {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

/// Kills the child and every process in its group.
pub(crate) fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: killpg has no memory preconditions; the group is the
        // child's own (process_group(0) above).
        unsafe { libc::killpg(pid, libc::SIGKILL) };
    }
    let _ = child.kill();
}
