//! Which TCP sockets this process holds open, read from `/proc`.
//!
//! Tests run in parallel threads of one process, so a plain count of
//! `/proc/self/fd` mixes every test's descriptors. Each rig knows its own ports
//! (the server's and the proxy's), so it can count exactly the descriptors
//! that touch them: a leaked member, a proxy leg or a server connection still
//! open after teardown shows up here and nowhere else.

use std::collections::HashSet;
use std::fs;

/// One TCP socket of this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local_port: u16,
    pub remote_port: u16,
    /// The kernel's state code (`0A` listen, `01` established, ...).
    pub state: u8,
    pub inode: u64,
}

/// Every TCP socket (IPv4 and IPv6) this process has a descriptor for, in its
/// network namespace.
pub fn open_tcp_sockets() -> Vec<TcpSocket> {
    let ours = socket_inodes();
    ["/proc/self/net/tcp", "/proc/self/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(parse_line)
                .collect::<Vec<_>>()
        })
        .filter(|socket| ours.contains(&socket.inode))
        .collect()
}

/// Sockets of this process with `port` at either end.
pub fn touching(ports: &[u16]) -> Vec<TcpSocket> {
    open_tcp_sockets()
        .into_iter()
        .filter(|s| ports.contains(&s.local_port) || ports.contains(&s.remote_port))
        .collect()
}

/// Connected sockets of this process whose far end is `port`: the client ends
/// of connections to a server (or proxy) listening there.
pub fn clients_of(port: u16) -> usize {
    open_tcp_sockets()
        .iter()
        .filter(|s| s.remote_port == port)
        .count()
}

/// Entries in `/proc/self/fd`: every descriptor, whatever it is.
pub fn fd_count() -> usize {
    fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn socket_inodes() -> HashSet<u64> {
    let Ok(dir) = fs::read_dir("/proc/self/fd") else {
        return HashSet::new();
    };
    dir.filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_str()?;
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// `  0: 0100007F:1F90 0100007F:A1B2 01 ... uid timeout inode ...`
fn parse_line(line: &str) -> Option<TcpSocket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    Some(TcpSocket {
        local_port: port(fields.get(1)?)?,
        remote_port: port(fields.get(2)?)?,
        state: u8::from_str_radix(fields.get(3)?, 16).ok()?,
        inode: fields.get(9)?.parse().ok()?,
    })
}
