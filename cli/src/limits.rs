//! Limits of the device listeners (MQTT and HJ 212): their command-line flags, and the
//! connection caps — per source address and in total — taken at accept and given back when the
//! connection's task ends.
//!
//! Why the defaults are what they are (README, `smartsite serve`): one box is sized for tens of
//! thousands of devices, so the MQTT total is 100,000 — the cap is there so that a flood meets a
//! refusal instead of the file-descriptor limit or the allocator, not to ration real devices.
//! A per-address cap of a tenth of the total lets one address — a site router, a carrier-grade
//! NAT address, an integrator's private-APN egress with thousands of 4G devices behind it — bring
//! a large share of the fleet, while one hostile address can never take the whole listener.
//! IPv6 peers are counted per /64, the smallest block one subscriber is handed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `smartsite serve` flags of the MQTT listeners; `--mqtts` and `--mqtt` share one budget.
#[derive(Debug, Clone, clap::Args)]
pub struct MqttLimits {
    /// Most MQTT connections open at once, over TLS and plain together; beyond it a new
    /// connection is closed at accept.
    #[arg(
        id = "mqtt-max-connections",
        long = "mqtt-max-connections",
        value_name = "N",
        env = "SMARTSITE_MQTT_MAX_CONNECTIONS",
        default_value_t = MqttLimits::DEFAULT.max_connections,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    /// Most MQTT connections open at once from one source address (IPv6: one /64).
    #[arg(
        id = "mqtt-max-connections-per-addr",
        long = "mqtt-max-connections-per-addr",
        value_name = "N",
        env = "SMARTSITE_MQTT_MAX_CONNECTIONS_PER_ADDR",
        default_value_t = MqttLimits::DEFAULT.max_connections_per_addr,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections_per_addr: u32,
    /// Seconds from TCP accept to a complete CONNECT packet, TLS handshake included.
    #[arg(
        id = "mqtt-connect-timeout-secs",
        long = "mqtt-connect-timeout-secs",
        value_name = "SECS",
        env = "SMARTSITE_MQTT_CONNECT_TIMEOUT_SECS",
        default_value_t = MqttLimits::DEFAULT.connect_timeout_secs,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub connect_timeout_secs: u64,
    /// Largest keep-alive the broker honours, in seconds; a CONNECT asking for 0 (none) or more
    /// gets this one (announced to MQTT 5 clients as the server keep-alive). As AWS IoT Core.
    #[arg(
        id = "mqtt-max-keep-alive-secs",
        long = "mqtt-max-keep-alive-secs",
        value_name = "SECS",
        env = "SMARTSITE_MQTT_MAX_KEEP_ALIVE_SECS",
        default_value_t = MqttLimits::DEFAULT.max_keep_alive_secs,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_keep_alive_secs: u16,
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits::DEFAULT
    }
}

impl MqttLimits {
    pub const DEFAULT: MqttLimits = MqttLimits {
        max_connections: 100_000,
        max_connections_per_addr: 10_000,
        connect_timeout_secs: 10,
        max_keep_alive_secs: 1200,
    };

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

/// Flags of an HJ 212 listener (`smartsite serve --hj212`, `smartsite gateway hj212`).
#[derive(Debug, Clone, clap::Args)]
pub struct Hj212Limits {
    /// Most HJ 212 connections open at once; beyond it a new connection is closed at accept.
    #[arg(
        id = "hj212-max-connections",
        long = "hj212-max-connections",
        value_name = "N",
        env = "SMARTSITE_HJ212_MAX_CONNECTIONS",
        default_value_t = Hj212Limits::DEFAULT.max_connections,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections: u32,
    /// Most HJ 212 connections open at once from one source address (IPv6: one /64).
    #[arg(
        id = "hj212-max-connections-per-addr",
        long = "hj212-max-connections-per-addr",
        value_name = "N",
        env = "SMARTSITE_HJ212_MAX_CONNECTIONS_PER_ADDR",
        default_value_t = Hj212Limits::DEFAULT.max_connections_per_addr,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub max_connections_per_addr: u32,
    /// A connection without a whole frame for this many seconds is closed (stray bytes do not
    /// count). Monitors send data or a heartbeat every few minutes, so a silent socket is a dead
    /// NAT mapping or a stuck peer.
    #[arg(
        id = "hj212-idle-timeout-secs",
        long = "hj212-idle-timeout-secs",
        value_name = "SECS",
        env = "SMARTSITE_HJ212_IDLE_TIMEOUT_SECS",
        default_value_t = Hj212Limits::DEFAULT.idle_timeout_secs,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub idle_timeout_secs: u64,
}

impl Default for Hj212Limits {
    fn default() -> Self {
        Hj212Limits::DEFAULT
    }
}

impl Hj212Limits {
    pub const DEFAULT: Hj212Limits = Hj212Limits {
        max_connections: 10_000,
        max_connections_per_addr: 1_000,
        idle_timeout_secs: 600,
    };

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

/// At most one "refused" log line per listener this often; the line carries how many
/// connections were refused since the previous one, so a flood cannot flood the log too.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Open connections of one listener (or of listeners sharing a budget), in total and per
/// source address.
pub struct ConnCaps {
    listener: &'static str,
    total: usize,
    per_addr: usize,
    state: Mutex<CapState>,
}

#[derive(Default)]
struct CapState {
    open: usize,
    by_addr: HashMap<IpAddr, usize>,
    /// Refusals not yet reported in a log line.
    refused: u64,
    logged_at: Option<Instant>,
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    fn as_str(self) -> &'static str {
        match self {
            Refusal::Total => "max_connections",
            Refusal::PerAddress => "max_connections_per_addr",
        }
    }
}

/// A connection's place under the caps; dropping it gives the place back.
pub struct ConnPermit {
    caps: Arc<ConnCaps>,
    key: IpAddr,
}

impl ConnCaps {
    pub fn new(listener: &'static str, total: u32, per_addr: u32) -> Arc<Self> {
        Arc::new(ConnCaps {
            listener,
            total: total as usize,
            per_addr: per_addr as usize,
            state: Mutex::new(CapState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CapState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place for a connection from `peer`, or refuses it with a (rate-limited) log line.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<ConnPermit> {
        match self.try_admit(peer.ip()) {
            Ok(permit) => Some(permit),
            Err(refusal) => {
                self.log_refusal(peer, refusal);
                None
            }
        }
    }

    /// Takes a place for a connection from `ip`, or says which cap is full.
    pub fn try_admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refusal> {
        let key = addr_key(ip);
        let mut st = self.lock();
        if st.open >= self.total {
            return Err(Refusal::Total);
        }
        let from_addr = st.by_addr.entry(key).or_insert(0);
        if *from_addr >= self.per_addr {
            return Err(Refusal::PerAddress);
        }
        *from_addr += 1;
        st.open += 1;
        Ok(ConnPermit {
            caps: Arc::clone(self),
            key,
        })
    }

    /// Connections holding a place now.
    pub fn open(&self) -> usize {
        self.lock().open
    }

    fn log_refusal(&self, peer: SocketAddr, refusal: Refusal) {
        let refused = {
            let mut st = self.lock();
            st.refused += 1;
            let now = Instant::now();
            if st
                .logged_at
                .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_EVERY)
            {
                return;
            }
            st.logged_at = Some(now);
            std::mem::take(&mut st.refused)
        };
        let limit = match refusal {
            Refusal::Total => self.total,
            Refusal::PerAddress => self.per_addr,
        };
        tracing::warn!(
            listener = self.listener,
            %peer,
            cap = refusal.as_str(),
            limit,
            refused,
            "connection refused: the listener's connection cap is reached"
        );
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut st = self.caps.lock();
        st.open = st.open.saturating_sub(1);
        if let Some(n) = st.by_addr.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.by_addr.remove(&self.key);
            }
        }
    }
}

/// What the per-address cap counts: an IPv4 address (IPv4-mapped IPv6 included), or the /64 of
/// an IPv6 address.
fn addr_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The process's open-file limit (soft), from /proc on Linux; `None` elsewhere or unreadable.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Warns at start-up when the connection caps cannot be reached because the open-file limit
/// is lower: the accept loop would then meet EMFILE before the cap.
pub fn warn_if_fd_limit_below(caps: u64) {
    if let Some(limit) = open_file_limit()
        && limit < caps
    {
        tracing::warn!(
            open_file_limit = limit,
            connection_caps = caps,
            "the open-file limit (ulimit -n) is below the device listeners' connection caps; \
             raise it, or lower the caps, so a flood meets the cap rather than EMFILE"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_address_and_total_caps_refuse_and_give_back() {
        let caps = ConnCaps::new("test", 3, 2);
        let a1 = caps.try_admit(ip("10.0.0.1")).unwrap();
        let _a2 = caps.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(
            caps.try_admit(ip("10.0.0.1")).err(),
            Some(Refusal::PerAddress)
        );
        // The same address mapped into IPv6 is the same source.
        assert_eq!(
            caps.try_admit(ip("::ffff:10.0.0.1")).err(),
            Some(Refusal::PerAddress)
        );
        let _b = caps.try_admit(ip("10.0.0.2")).unwrap();
        assert_eq!(caps.try_admit(ip("10.0.0.3")).err(), Some(Refusal::Total));
        assert_eq!(caps.open(), 3);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _a3 = caps.try_admit(ip("10.0.0.1")).unwrap();
        assert_eq!(caps.open(), 3);
    }

    #[test]
    fn ipv6_peers_count_per_64() {
        let caps = ConnCaps::new("test", 10, 1);
        let _a = caps.try_admit(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            caps.try_admit(ip("2001:db8:1:2:ffff::9")).err(),
            Some(Refusal::PerAddress)
        );
        assert!(caps.try_admit(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn released_addresses_leave_no_entry() {
        let caps = ConnCaps::new("test", 10, 10);
        let permits: Vec<_> = (0..5)
            .map(|i| caps.try_admit(ip(&format!("10.0.1.{i}"))).unwrap())
            .collect();
        assert_eq!(caps.lock().by_addr.len(), 5);
        drop(permits);
        assert_eq!(caps.open(), 0);
        assert!(caps.lock().by_addr.is_empty());
    }
}
