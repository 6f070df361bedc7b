//! Which local address reaches another host.

use std::net::{IpAddr, SocketAddr, UdpSocket};

/// The local IP the kernel routes to `toward` from (no packet is sent).
pub(crate) fn routable_ip(toward: SocketAddr) -> std::io::Result<IpAddr> {
    let unspecified: IpAddr = match toward {
        SocketAddr::V4(_) => [0, 0, 0, 0].into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind(SocketAddr::new(unspecified, 0))?;
    socket.connect(toward)?;
    Ok(socket.local_addr()?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_reached_from_loopback() {
        let ip = routable_ip("127.0.0.1:9".parse().unwrap()).unwrap();
        assert!(ip.is_loopback(), "{ip}");
    }
}
