//! A child process of the running bench binary in another role (a server,
//! a memory probe), so what it spends is measured apart from the parent:
//! `/proc/<pid>/stat` per process, and no scheduler shared with the pool.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::fail;

/// Bound on any answer from a child process.
pub const CHILD_ANSWER: Duration = Duration::from_secs(30);

/// The child, with its stdout read line by line on a thread so every wait
/// for an answer is bounded.
pub struct ChildProcess {
    process: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl ChildProcess {
    /// This binary again with `role_var=role`; `wrapper`, if given, is the
    /// command that runs it (e.g. `["taskset", "-c", "1"]` to pin it).
    pub fn spawn(role_var: &str, role: &str, wrapper: &[&str]) -> ChildProcess {
        let exe =
            std::env::current_exe().unwrap_or_else(|e| fail("finding this bench's binary", e));
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(exe);
                command
            }
            None => Command::new(exe),
        };
        let mut process = command
            .env(role_var, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| fail(&format!("starting the {role} child"), e));
        let stdout = process
            .stdout
            .take()
            .unwrap_or_else(|| fail("child", "no stdout pipe"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ChildProcess {
            stdin: process.stdin.take(),
            process,
            lines,
        }
    }

    /// Its process id (that of the wrapper, which `exec`s it, if any).
    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// The next line it prints, waited for at most [`CHILD_ANSWER`].
    pub fn line(&self, what: &str) -> String {
        self.lines
            .recv_timeout(CHILD_ANSWER)
            .unwrap_or_else(|e| fail(&format!("waiting for the child's {what}"), e))
    }

    /// Sends `command` on its stdin and returns its one-line answer.
    pub fn ask(&mut self, command: &str) -> String {
        let sent = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{command}").and_then(|()| stdin.flush()),
            None => Err(std::io::Error::other("stdin already closed")),
        };
        if let Err(e) = sent {
            fail(&format!("asking the child for {command}"), e);
        }
        self.line(command)
    }

    /// Closes its stdin (its signal to stop) and waits a bounded time for it
    /// to exit; kills it past that.
    pub fn finish(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + CHILD_ANSWER;
        while Instant::now() < deadline {
            match self.process.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}
