//! A redis-server of a test's own, on a port the test names, ended by pid
//! when dropped: never the machine's own server.

use std::net::SocketAddr;
use std::time::Duration;

pub struct RedisChild {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl RedisChild {
    /// A plain child on `port`, with a password if given.
    pub async fn start(port: u16, password: Option<&str>) -> Self {
        let port_arg = port.to_string();
        let mut args = vec!["--port", &port_arg];
        if let Some(password) = password {
            args.extend(["--requirepass", password]);
        }
        Self::start_with(port, &args).await
    }

    /// A child listening (plain or TLS, as `args` say) on `port`, nothing
    /// kept on disk; returns once the port takes connections (bounded).
    pub async fn start_with(port: u16, args: &[&str]) -> Self {
        let mut command = std::process::Command::new("redis-server");
        command.args(args);
        command.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        let child = command
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed to run this test");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        RedisChild { child, addr }
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
