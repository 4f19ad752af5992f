//! The `command` collector: runs a program (no shell unless the profile asks
//! for one) with a timeout and keeps its stdout, stderr and exit status.

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct CommandOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
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
    #[error("{program}: {source}")]
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
    let mut child = Command::new(&program)
        .args(argv.get(1..).unwrap_or(&[]))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                CommandError::NotFound(program.clone())
            } else {
                io_err(e)
            }
        })?;
    // Both pipes are drained on threads of their own, so a program that
    // fills one of them never blocks waiting for us.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(CommandError::TimedOut {
                program,
                secs: timeout.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
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
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
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
