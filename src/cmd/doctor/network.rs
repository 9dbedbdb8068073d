//! Doctor's `dns` and `tcp` rows: resolving the gateway's host and connecting to it, and the
//! proxy (if any) that reqwest would use instead.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use url::Url;

use super::{shown, Mark, Row};
use crate::config::Cluster;
use crate::time::human;

/// DNS and TCP checks give up after this, or after the cluster's timeout if that is shorter
/// (the same bound `KnoxClient` puts on connecting).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The DNS and TCP rows; returns whether HTTP requests are worth trying.
pub(super) async fn reach(c: &Cluster, rows: &mut Vec<Row>) -> bool {
    let url = &c.token_url;
    let port = url.port_or_known_default().unwrap_or(443);
    let limit = CONNECT_TIMEOUT.min(c.transport.timeout);
    // With a proxy, reqwest connects to the proxy and the proxy resolves and connects: a direct
    // failure here is then only a warning, and the HTTP rows tell the real story.
    let proxy = proxy_var(url);
    let soft = |mark: Mark| if mark == Mark::Fail && proxy.is_some() { Mark::Warn } else { mark };
    let via = proxy.map(|v| format!(" (requests go through the proxy in ${v})")).unwrap_or_default();
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => {
            rows.push(Row::new(Mark::Pass, "dns", format!("{ip} is an address: nothing to resolve")));
            vec![SocketAddr::new(IpAddr::V4(ip), port)]
        }
        Some(url::Host::Ipv6(ip)) => {
            rows.push(Row::new(Mark::Pass, "dns", format!("{ip} is an address: nothing to resolve")));
            vec![SocketAddr::new(IpAddr::V6(ip), port)]
        }
        Some(url::Host::Domain(host)) => {
            let (mark, detail, addrs) =
                match tokio::time::timeout(limit, tokio::net::lookup_host((host, port))).await {
                    Ok(Ok(found)) => {
                        let addrs: Vec<SocketAddr> = found.collect();
                        if addrs.is_empty() {
                            (Mark::Fail, format!("{host} resolves to no address"), addrs)
                        } else {
                            (Mark::Pass, format!("{host} resolves to {}", list_addrs(&addrs)), addrs)
                        }
                    }
                    Ok(Err(e)) => (Mark::Fail, format!("cannot resolve {host}: {e}"), Vec::new()),
                    Err(_) => {
                        (Mark::Fail, format!("no DNS answer for {host} within {}", human(limit)), Vec::new())
                    }
                };
            rows.push(Row::new(soft(mark), "dns", format!("{detail}{via}")));
            addrs
        }
        None => {
            rows.push(Row::new(Mark::Fail, "dns", format!("{} has no host", shown(url))));
            Vec::new()
        }
    };
    if addrs.is_empty() {
        rows.push(Row::new(Mark::Skip, "tcp", "no address to connect to"));
        return proxy.is_some();
    }
    let mut errors = Vec::new();
    for addr in &addrs {
        let started = Instant::now();
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => {
                let took = human(started.elapsed());
                rows.push(Row::new(Mark::Pass, "tcp", format!("connected to {addr} in {took}{via}")));
                return true;
            }
            Ok(Err(e)) => errors.push(format!("{addr}: {e}")),
            Err(_) => errors.push(format!("{addr}: no answer within {}", human(limit))),
        }
    }
    rows.push(Row::new(soft(Mark::Fail), "tcp", format!("cannot connect to {}{via}", errors.join("; "))));
    proxy.is_some()
}

fn list_addrs(addrs: &[SocketAddr]) -> String {
    let shown: Vec<String> = addrs.iter().take(3).map(|a| a.ip().to_string()).collect();
    match addrs.len() {
        n if n > 3 => format!("{} (and {} more)", shown.join(", "), n.saturating_sub(3)),
        _ => shown.join(", "),
    }
}

/// The environment variable naming the proxy reqwest would use for `url`, if any. `NO_PROXY`
/// is honoured for exact names, domain suffixes and `*`, which covers its common uses.
pub(super) fn proxy_var(url: &Url) -> Option<&'static str> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let host = url.host_str()?.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if let Some(no) = set("NO_PROXY").or_else(|| set("no_proxy")) {
        let bypass = no
            .split(',')
            .map(|e| e.trim().trim_start_matches('.').to_ascii_lowercase())
            .any(|e| !e.is_empty() && (e == "*" || host == e || host.ends_with(&format!(".{e}"))));
        if bypass {
            return None;
        }
    }
    let names: &[&'static str] = if url.scheme() == "https" {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    names.iter().copied().find(|n| set(n).is_some())
}
