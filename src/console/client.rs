//! The client's address: the TCP peer, or, when the peer is a trusted proxy, the address
//! that proxy appended to X-Forwarded-For (the rightmost entry: the only one it vouches for).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

pub fn is_trusted(peer: IpAddr, nets: &[IpNet]) -> bool {
    nets.iter().any(|n| n.contains(&peer))
}

pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, nets: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip();
    if !is_trusted(peer_ip, nets) {
        return peer_ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .next_back()
        .unwrap_or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.9".parse().unwrap());
        let proxy: SocketAddr = "10.1.2.3:5000".parse().unwrap();
        let direct: SocketAddr = "198.51.100.4:5000".parse().unwrap();
        assert_eq!(client_addr(proxy, &h, &nets).to_string(), "203.0.113.9");
        assert_eq!(client_addr(direct, &h, &nets).to_string(), "198.51.100.4");
    }
}
