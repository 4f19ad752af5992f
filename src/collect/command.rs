//! The `command` collector: runs a program (no shell unless the profile asks
//! for one) with a timeout and keeps its stdout, stderr and exit status.

use std::io::{self, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Output past this size goes to a temporary file rather than memory, so a
/// database dump of any size costs no more RAM than a small one.
pub const SPILL_AT: usize = 16 << 20;

/// How much of a spilled output is kept in memory to read facts from.
const HEAD: usize = 1 << 20;

/// A stream's output: in memory, or in a temporary file (deleted when the
/// last handle on it goes) with its first bytes in memory.
#[derive(Debug)]
pub enum Captured {
    Memory(Vec<u8>),
    File { path: tempfile::TempPath, head: Vec<u8> },
}

impl Captured {
    /// All of the output if it is in memory, else its first MiB.
    pub fn head(&self) -> &[u8] {
        match self {
            Captured::Memory(bytes) => bytes,
            Captured::File { head, .. } => head,
        }
    }

    fn capture(mut pipe: impl Read) -> io::Result<Captured> {
        let mut memory = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => return Ok(Captured::Memory(memory)),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            memory.extend_from_slice(&buf[..n]);
            if memory.len() > SPILL_AT {
                break;
            }
        }
        let mut file = tempfile::Builder::new().prefix("cairn-cmd-").tempfile()?;
        file.write_all(&memory)?;
        io::copy(&mut pipe, &mut file)?;
        file.flush()?;
        memory.truncate(HEAD);
        Ok(Captured::File {
            path: file.into_temp_path(),
            head: memory,
        })
    }
}

#[derive(Debug)]
pub struct CommandOutput {
    pub stdout: Captured,
    pub stderr: Captured,
    /// `exit 0`, `exit 2`, or `signal 9`, with a newline.
    pub status: String,
    pub success: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}: program not found")]
    NotFound(String),
    #[error("{program}: still running after {secs}s; stopped")]
    TimedOut { program: String, secs: u64 },
    #[error("{program}: stopped, cairn was interrupted")]
    Interrupted { program: String },
    #[error("cannot run {program}")]
    Io {
        program: String,
        #[source]
        source: io::Error,
    },
}

pub fn run(argv: &[String], timeout: Duration) -> Result<CommandOutput, CommandError> {
    run_with_env(argv, timeout, &[])
}

/// Like [`run`], with extra environment variables for the program.
pub fn run_with_env(
    argv: &[String],
    timeout: Duration,
    env: &[(String, String)],
) -> Result<CommandOutput, CommandError> {
    let program = argv.first().cloned().unwrap_or_default();
    let io_err = |source| CommandError::Io {
        program: program.clone(),
        source,
    };
    let mut cmd = Command::new(&program);
    crate::process::without_passwords(&mut cmd);
    cmd.args(argv.get(1..).unwrap_or(&[]))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A group of its own: a timeout or an interrupt ends it with everything
    // it started.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            CommandError::NotFound(program.clone())
        } else {
            io_err(e)
        }
    })?;
    // Both pipes are drained on threads of their own, so a program that
    // fills one of them never blocks waiting for us.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || match pipe {
            Some(pipe) => Captured::capture(pipe),
            None => Ok(Captured::Memory(Vec::new())),
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err)? {
            break status;
        }
        let timed_out = Instant::now() >= deadline;
        if timed_out || crate::interrupt::is_set() {
            crate::process::kill_group(&mut child);
            let _ = child.wait();
            return Err(if timed_out {
                CommandError::TimedOut {
                    program,
                    secs: timeout.as_secs(),
                }
            } else {
                CommandError::Interrupted { program }
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let joined = |h: std::thread::JoinHandle<io::Result<Captured>>| {
        h.join()
            .unwrap_or_else(|_| Err(io::Error::other("output reader panicked")))
            .map_err(io_err)
    };
    let stdout = joined(out)?;
    let stderr = joined(err)?;
    let text = match status.code() {
        Some(code) => format!("exit {code}\n"),
        None => {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt;
                format!("signal {}\n", status.signal().unwrap_or(0))
            }
            #[cfg(not(unix))]
            {
                "killed\n".to_string()
            }
        }
    };
    Ok(CommandOutput {
        stdout,
        stderr,
        status: text,
        success: status.success(),
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn output_status_and_failures() {
        let out = run(
            &argv(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout.head(), b"out\n");
        assert_eq!(out.stderr.head(), b"err\n");
        assert_eq!(out.status, "exit 3\n");
        assert!(!out.success);
        assert!(matches!(
            run(&argv(&["cairn-no-such-program"]), Duration::from_secs(1)),
            Err(CommandError::NotFound(_))
        ));
        assert!(matches!(
            run(&argv(&["sleep", "5"]), Duration::from_millis(100)),
            Err(CommandError::TimedOut { .. })
        ));
    }
}
