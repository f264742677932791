//! A network namespace of our own, joined to this one by a veth pair, with a
//! tiny reference-protocol echo server inside: a peer whose packets can all be
//! dropped, so only the kernel's keepalive and `TCP_USER_TIMEOUT` can tell.
//!
//! Addresses come from 198.18.0.0/15 (set aside for benchmarking) and exist
//! only on our veth pair. Everything is undone on drop, also when a test
//! panics: the server is killed, the veth pair and the namespace deleted.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{Instant, sleep, timeout};

/// Answers every request frame of the reference protocol with its own body
/// (heartbeats with an empty heartbeat reply): flags keep only the heartbeat
/// bit, status is Ok, id and body are echoed. Connections stay open.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
def serve(c):
    buf = b""
    try:
        while True:
            while len(buf) < 16 or len(buf) < 16 + int.from_bytes(buf[12:16], "big"):
                data = c.recv(65536)
                if not data:
                    return
                buf += data
            n = int.from_bytes(buf[12:16], "big")
            head = bytearray(buf[:16])
            head[2] &= 4
            head[3] = 0
            c.sendall(bytes(head) + buf[16:16 + n])
            buf = buf[16 + n:]
    except OSError:
        pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(128)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One namespace, its veth pair and (once started) its server.
pub struct Netns {
    pub name: String,
    host_if: String,
    /// Our end of the veth pair.
    pub host_ip: Ipv4Addr,
    /// The namespace's end, where its server listens.
    pub ns_ip: Ipv4Addr,
    server: Option<Child>,
}

impl Netns {
    /// Builds the namespace and the link, or says why it could not.
    pub fn create() -> Result<Netns, String> {
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A /30 per namespace, spread over 198.18.0.0/15 by pid and counter.
        let base = ((pid.wrapping_mul(64).wrapping_add(n)) % 32_768) * 4;
        let net = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + base;
        let ns = Netns {
            name: format!("lp-{pid}-{n}"),
            host_if: format!("lph{pid}x{n}"),
            host_ip: Ipv4Addr::from(net + 1),
            ns_ip: Ipv4Addr::from(net + 2),
            server: None,
        };
        let peer_if = format!("lpn{pid}x{n}");
        run("ip", &["netns", "add", &ns.name])?;
        let setup = (|| {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    &ns.host_if,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &peer_if,
                ],
            )?;
            run("ip", &["link", "set", &peer_if, "netns", &ns.name])?;
            let host_cidr = format!("{}/30", ns.host_ip);
            run("ip", &["addr", "add", &host_cidr, "dev", &ns.host_if])?;
            run("ip", &["link", "set", &ns.host_if, "up"])?;
            let ns_cidr = format!("{}/30", ns.ns_ip);
            ns.exec("ip", &["addr", "add", &ns_cidr, "dev", &peer_if])?;
            ns.exec("ip", &["link", "set", &peer_if, "up"])?;
            ns.exec("ip", &["link", "set", "lo", "up"])
        })();
        // On failure `ns` is dropped here, undoing whatever was made.
        setup.map(|()| ns)
    }

    /// Runs `program args` inside the namespace and waits for it.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let mut full = vec!["netns", "exec", &self.name, program];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Starts the echo server inside the namespace on `port` and waits until
    /// it accepts connections.
    pub async fn start_echo_server(&mut self, port: u16) -> Result<SocketAddr, String> {
        let python = ["/usr/bin/python3", "python3"]
            .into_iter()
            .find(|p| !p.starts_with('/') || std::path::Path::new(p).exists())
            .unwrap_or("python3");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, python, "-c", ECHO_SERVER])
            .arg(self.ns_ip.to_string())
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {python} inside {}: {e}", self.name))?;
        self.server = Some(child);
        let addr = SocketAddr::from((self.ns_ip, port));
        let started = Instant::now();
        loop {
            let attempt = timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr));
            if let Ok(Ok(_probe)) = attempt.await {
                return Ok(addr);
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                return Err(format!("the echo server in {} exited: {status}", self.name));
            }
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!(
                    "the echo server at {addr} did not accept within 10 s"
                ));
            }
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the namespace's peer vanish without a FIN or RST: a blackhole
    /// route inside the namespace swallows everything it would send back to
    /// us (ACKs, replies, keepalive answers, RSTs), so nothing ever reaches
    /// this side again.
    ///
    /// Only `ip` (iproute2) is needed; no firewall tool, no qdisc module
    /// (`netem` is often missing). The route lives in the namespace, so our own
    /// sends still leave normally: our kernel sees no local error, just a peer
    /// that stopped answering, which is what keepalive and `TCP_USER_TIMEOUT`
    /// exist to find. ARP is not routed, so the neighbour entry stays valid and
    /// the error our sockets end with is `ETIMEDOUT`, not `EHOSTUNREACH`.
    pub fn drop_all_packets(&self) -> Result<(), String> {
        let us = format!("{}/32", self.host_ip);
        self.exec("ip", &["route", "add", "blackhole", &us])
    }

    /// Whether the namespace is still listed by `ip netns`.
    pub fn exists(name: &str) -> bool {
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|out| {
                String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|line| line.split_whitespace().next() == Some(name))
            })
            .unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        // Deleting one end deletes the pair (a no-op if it was never made).
        let _ = quiet("ip", &["link", "del", &self.host_if]);
        let _ = quiet("ip", &["netns", "del", &self.name]);
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}` ({e}); is it installed and on PATH?"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn quiet(program: &str, args: &[&str]) -> std::io::Result<std::process::ExitStatus> {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
}
