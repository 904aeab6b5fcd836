//! Port mapping: asks the local router to forward the listen port (TCP for peers, UDP for uTP, the
//! DHT and UDP trackers) to us, so peers outside a NAT can dial in. UPnP IGD first (`igd-next`),
//! then NAT-PMP and then PCP (`crab_nat`) when UPnP finds no gateway. A task per session keeps the
//! mappings alive (renewed at half the lease), records the external address the router reports,
//! and removes the mappings when the session closes. **Every exchange with the router has a
//! deadline**: a router that is silent, slow or answers garbage costs that wait and a log line,
//! never the session's start-up or its peers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use crab_nat::{InternetProtocol, PortMapping, PortMappingOptions, PortMappingType, TimeoutConfig};
use igd_next::PortMappingProtocol;
use igd_next::aio::Gateway;
use igd_next::aio::tokio::Tokio;
use tokio::sync::watch;

/// Settings of port mapping ([`SessionConfig::port_mapping_config`](crate::SessionConfig)).
#[derive(Debug, Clone)]
pub struct PortMappingConfig {
    /// Ask a UPnP IGD (found by SSDP multicast on `239.255.255.250:1900`) first.
    pub upnp: bool,
    /// Where the UPnP search (SSDP `M-SEARCH`) is sent: the SSDP multicast group
    /// `239.255.255.250:1900` by default, or a router's own address to ask it alone.
    pub ssdp_addr: SocketAddr,
    /// Ask over NAT-PMP, then PCP (UDP port 5351 of the gateway) when UPnP is off or finds none.
    pub natpmp: bool,
    /// The gateway NAT-PMP and PCP talk to; `None`: the default route's gateway.
    pub gateway: Option<IpAddr>,
    /// The lease asked for; mappings are renewed at half of it. One hour by default.
    pub lease: Duration,
    /// The longest wait for one step with the router: the UPnP search, one UPnP request, or one
    /// NAT-PMP/PCP exchange with its retries. 3 seconds by default.
    pub timeout: Duration,
    /// The wait before trying again after every method failed. 10 minutes by default.
    pub retry_after: Duration,
}

impl Default for PortMappingConfig {
    fn default() -> PortMappingConfig {
        PortMappingConfig {
            upnp: true,
            ssdp_addr: SocketAddr::from((Ipv4Addr::new(239, 255, 255, 250), 1900)),
            natpmp: true,
            gateway: None,
            lease: Duration::from_secs(3600),
            timeout: Duration::from_secs(3),
            retry_after: Duration::from_secs(600),
        }
    }
}

/// How a mapping was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappingMethod {
    /// UPnP Internet Gateway Device (`AddPortMapping`).
    Upnp,
    /// NAT-PMP (RFC 6886).
    NatPmp,
    /// PCP (RFC 6887).
    Pcp,
}

impl std::fmt::Display for MappingMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MappingMethod::Upnp => "UPnP",
            MappingMethod::NatPmp => "NAT-PMP",
            MappingMethod::Pcp => "PCP",
        })
    }
}

/// What the port mapping task has achieved so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortMappingState {
    /// Looking for a gateway or asking it.
    Searching,
    /// The ports are mapped.
    Mapped {
        /// How.
        method: MappingMethod,
        /// The gateway asked (for UPnP its HTTP control address).
        gateway: SocketAddr,
        /// The external address the gateway reported; `None` if it would not say.
        external_ip: Option<IpAddr>,
        /// The external port forwarded to our TCP listen port.
        tcp_port: u16,
        /// The external port forwarded to our UDP port.
        udp_port: u16,
    },
    /// Every method failed; the reason of the last. Tried again later.
    Failed(String),
    /// The session closed; mappings were removed (or the removal was given up after its deadline).
    Closed,
}

/// The session's side of the port mapping task: its state, and closing it.
#[derive(Debug, Clone)]
pub struct PortMappingHandle {
    state: watch::Receiver<PortMappingState>,
    stop: Arc<watch::Sender<bool>>,
    /// The longest [`PortMappingHandle::close`] waits.
    close_bound: Duration,
}

impl PortMappingHandle {
    /// The state now.
    pub fn state(&self) -> PortMappingState {
        self.state.borrow().clone()
    }

    /// A receiver that sees every change of [`PortMappingHandle::state`]. Do not hold its borrow
    /// across an `.await`: the task writes the state, and would wait for it.
    pub fn watch(&self) -> watch::Receiver<PortMappingState> {
        self.state.clone()
    }

    /// The external address the gateway reported, once mapped.
    pub fn external_ip(&self) -> Option<IpAddr> {
        match &*self.state.borrow() {
            PortMappingState::Mapped { external_ip, .. } => *external_ip,
            _ => None,
        }
    }

    /// Removes the mappings from the gateway and ends the task. Waits at most twice
    /// [`PortMappingConfig::timeout`] plus 2 seconds (one bounded removal per port), then gives
    /// up with a warning (the leases run out by themselves); returns at once if already closed.
    pub async fn close(&self) {
        self.stop.send_replace(true);
        let mut state = self.state.clone();
        let bound = self.close_bound;
        let closed = state.wait_for(|s| *s == PortMappingState::Closed);
        if tokio::time::timeout(bound, closed).await.is_err() {
            tracing::warn!("port mapping: removal from the gateway gave up after {bound:?}");
        }
    }

    /// Tells the task to remove the mappings and end, without waiting (a dropped session).
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// What the task maps: our local ports (the same external ports are asked for).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ports {
    /// The TCP listen port.
    pub(crate) tcp: u16,
    /// The UDP port (uTP, DHT, UDP trackers).
    pub(crate) udp: u16,
    /// The address we bound, if one was given: the mapping's internal address then.
    pub(crate) bind_ip: Option<IpAddr>,
}

/// Starts the task; it never blocks the caller.
pub(crate) fn start(config: PortMappingConfig, ports: Ports) -> PortMappingHandle {
    let (state_tx, state) = watch::channel(PortMappingState::Searching);
    let (stop, stop_rx) = watch::channel(false);
    // Two bounded removals and some slack, so a gateway that vanished never holds up an exit
    // for long.
    let close_bound = config.timeout * 2 + Duration::from_secs(2);
    tokio::spawn(run(config, ports, state_tx, stop_rx));
    PortMappingHandle {
        state,
        stop: Arc::new(stop),
        close_bound,
    }
}

/// A live mapping of both ports, by one method.
#[derive(Clone)]
enum Mapped {
    Upnp {
        gateway: Gateway<Tokio>,
        tcp: u16,
        udp: u16,
        /// The lease granted: 0 when the gateway only allows permanent ones.
        lease: u32,
    },
    Crab {
        tcp: Box<PortMapping>,
        udp: Box<PortMapping>,
    },
}

async fn run(
    config: PortMappingConfig,
    ports: Ports,
    state: watch::Sender<PortMappingState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut mapped: Option<Mapped> = None;
    loop {
        let current = mapped.take();
        let shown = state.borrow().clone();
        // A stop in the middle of a renewal still removes what was mapped.
        let previous = current.clone();
        let attempt = async {
            match current {
                Some(m) => renew(&config, ports, m, shown).await,
                None => map(&config, ports).await,
            }
        };
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            _ = stop.wait_for(|s| *s) => {
                mapped = previous;
                break;
            }
        };
        let wait = match outcome {
            Ok((m, shown)) => {
                let changed = *state.borrow() != shown;
                if changed {
                    if let PortMappingState::Mapped {
                        method,
                        external_ip,
                        tcp_port,
                        udp_port,
                        gateway,
                    } = &shown
                    {
                        let external =
                            external_ip.map_or("unknown".to_string(), |ip| ip.to_string());
                        tracing::info!(
                            %method, %gateway, external_ip = %external, tcp = tcp_port, udp = udp_port,
                            "port mapping: ports {}/{} mapped; external address {external}",
                            ports.tcp, ports.udp
                        );
                    }
                    state.send_replace(shown);
                }
                let wait = match &m {
                    Mapped::Upnp { lease: 0, .. } => config.retry_after,
                    _ => config.lease / 2,
                };
                mapped = Some(m);
                wait
            }
            Err(reason) => {
                // A host with no default route (a container, an isolated namespace) has no router
                // to ask: an expected condition, not a warning.
                if natpmp_gateway(&config).is_err() {
                    tracing::info!(
                        "port mapping not available: no default gateway ({reason}); trying again in {:?}",
                        config.retry_after
                    );
                } else {
                    tracing::warn!(
                        "port mapping failed: {reason}; trying again in {:?}",
                        config.retry_after
                    );
                }
                state.send_replace(PortMappingState::Failed(reason));
                config.retry_after
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait.max(Duration::from_secs(1))) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Some(m) = mapped {
        remove(&config, m).await;
    }
    state.send_replace(PortMappingState::Closed);
}

/// Maps both ports by the first method that finds a gateway.
async fn map(
    config: &PortMappingConfig,
    ports: Ports,
) -> Result<(Mapped, PortMappingState), String> {
    let mut reasons = Vec::new();
    if config.upnp {
        match map_upnp(config, ports).await {
            Ok(done) => return Ok(done),
            Err(e) => reasons.push(format!("UPnP: {e}")),
        }
    }
    if config.natpmp {
        match map_crab(config, ports).await {
            Ok(done) => return Ok(done),
            Err(e) => reasons.push(e),
        }
    }
    if reasons.is_empty() {
        reasons.push("every method is turned off".to_string());
    }
    Err(reasons.join("; "))
}

/// Our address on the way to `gateway` (what the router must forward to): the bind address if
/// one was given, else the source address the kernel picks for that route. No packet is sent.
fn local_ip_towards(gateway: IpAddr, bind_ip: Option<IpAddr>) -> Result<IpAddr, String> {
    if let Some(ip) = bind_ip.filter(|ip| !ip.is_unspecified()) {
        return Ok(ip);
    }
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.connect((gateway, 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .map_err(|e| format!("no route to the gateway {gateway}: {e}"))?;
    Ok(socket.ip())
}

/// Runs `step` with the configured deadline.
async fn bounded<T, E: std::fmt::Display>(
    config: &PortMappingConfig,
    what: &str,
    step: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(config.timeout, step).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {:?}", config.timeout)),
    }
}

fn lease_secs(config: &PortMappingConfig) -> u32 {
    u32::try_from(config.lease.as_secs())
        .unwrap_or(u32::MAX)
        .max(1)
}

async fn map_upnp(
    config: &PortMappingConfig,
    ports: Ports,
) -> Result<(Mapped, PortMappingState), String> {
    let mut options = igd_next::SearchOptions {
        timeout: Some(config.timeout),
        single_search_timeout: Some(config.timeout),
        broadcast_address: config.ssdp_addr,
        ..Default::default()
    };
    // From the bind address, so the search leaves by the interface the peers use.
    if let Some(ip @ IpAddr::V4(_)) = ports.bind_ip.filter(|ip| !ip.is_unspecified()) {
        options.bind_addr = SocketAddr::new(ip, 0);
    }
    let gateway = bounded(
        config,
        "search",
        igd_next::aio::tokio::search_gateway(options),
    )
    .await?;
    tracing::debug!(gateway = %gateway.addr, "port mapping: found a UPnP gateway");
    let local = local_ip_towards(gateway.addr.ip(), ports.bind_ip)?;
    let mut lease = lease_secs(config);
    let tcp = upnp_add(
        config,
        &gateway,
        PortMappingProtocol::TCP,
        local,
        ports.tcp,
        &mut lease,
    )
    .await?;
    let udp = match upnp_add(
        config,
        &gateway,
        PortMappingProtocol::UDP,
        local,
        ports.udp,
        &mut lease,
    )
    .await
    {
        Ok(udp) => udp,
        Err(e) => {
            let _ = bounded(
                config,
                "remove",
                gateway.remove_port(PortMappingProtocol::TCP, tcp),
            )
            .await;
            return Err(e);
        }
    };
    // A gateway that maps but will not say its address still forwards: keep the mapping.
    let external_ip = match bounded(config, "external address", gateway.get_external_ip()).await {
        Ok(ip) => Some(ip),
        Err(e) => {
            tracing::warn!(
                "port mapping: UPnP gateway {} mapped the ports but {e}",
                gateway.addr
            );
            None
        }
    };
    let shown = PortMappingState::Mapped {
        method: MappingMethod::Upnp,
        gateway: gateway.addr,
        external_ip,
        tcp_port: tcp,
        udp_port: udp,
    };
    Ok((
        Mapped::Upnp {
            gateway,
            tcp,
            udp,
            lease,
        },
        shown,
    ))
}

/// Maps `port` to the same external port, or any the gateway picks if that one is taken; a
/// gateway that allows only permanent leases gets a permanent one (`lease` becomes 0).
async fn upnp_add(
    config: &PortMappingConfig,
    gateway: &Gateway<Tokio>,
    protocol: PortMappingProtocol,
    local: IpAddr,
    port: u16,
    lease: &mut u32,
) -> Result<u16, String> {
    let addr = SocketAddr::new(local, port);
    let what = format!("{protocol} port {port}");
    let first = tokio::time::timeout(
        config.timeout,
        gateway.add_port(protocol, port, addr, *lease, DESCRIPTION),
    )
    .await;
    match first {
        Ok(Ok(())) => Ok(port),
        Ok(Err(igd_next::AddPortError::OnlyPermanentLeasesSupported)) => {
            *lease = 0;
            bounded(
                config,
                &what,
                gateway.add_port(protocol, port, addr, 0, DESCRIPTION),
            )
            .await?;
            Ok(port)
        }
        Ok(Err(igd_next::AddPortError::PortInUse)) => {
            bounded(
                config,
                &what,
                gateway.add_any_port(protocol, addr, *lease, DESCRIPTION),
            )
            .await
        }
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {:?}", config.timeout)),
    }
}

/// The description UPnP routers show next to our mappings.
const DESCRIPTION: &str = "swarmer";

/// The gateway for NAT-PMP and PCP: the configured one or the default route's.
fn natpmp_gateway(config: &PortMappingConfig) -> Result<IpAddr, String> {
    if let Some(gateway) = config.gateway {
        return Ok(gateway);
    }
    let device = netdev::get_default_gateway().map_err(|e| format!("no default gateway: {e}"))?;
    device
        .ipv4
        .first()
        .map(|ip| IpAddr::V4(*ip))
        .or_else(|| device.ipv6.first().map(|ip| IpAddr::V6(*ip)))
        .ok_or_else(|| "no default gateway: it has no address".to_string())
}

/// crab_nat's retries, fitted inside `config.timeout`: 4 sends at 1/15, 2/15, 4/15 and 8/15 of it.
fn crab_timeouts(config: &PortMappingConfig) -> TimeoutConfig {
    TimeoutConfig {
        initial_timeout: config.timeout / 15,
        max_retries: 3,
        max_retry_timeout: Some(config.timeout / 2),
    }
}

fn crab_options(config: &PortMappingConfig, port: NonZeroU16) -> PortMappingOptions {
    PortMappingOptions {
        external_port: Some(port),
        lifetime_seconds: Some(lease_secs(config)),
        timeout_config: Some(crab_timeouts(config)),
    }
}

/// NAT-PMP first (it also tells the external address), PCP if the gateway does not speak it.
async fn map_crab(
    config: &PortMappingConfig,
    ports: Ports,
) -> Result<(Mapped, PortMappingState), String> {
    let gateway_ip = natpmp_gateway(config)?;
    let gateway = crab_nat::GatewayAddress::from(gateway_ip);
    let tcp_port = NonZeroU16::new(ports.tcp).ok_or("TCP port 0")?;
    let udp_port = NonZeroU16::new(ports.udp).ok_or("UDP port 0")?;
    let natpmp = async {
        let tcp = bounded(
            config,
            "NAT-PMP TCP",
            crab_nat::natpmp::port_mapping(
                gateway,
                InternetProtocol::Tcp,
                tcp_port,
                crab_options(config, tcp_port),
            ),
        )
        .await?;
        let udp = bounded(
            config,
            "NAT-PMP UDP",
            crab_nat::natpmp::port_mapping(
                gateway,
                InternetProtocol::Udp,
                udp_port,
                crab_options(config, udp_port),
            ),
        )
        .await;
        let udp = match udp {
            Ok(udp) => udp,
            Err(e) => {
                crab_drop(config, tcp).await;
                return Err(e);
            }
        };
        let external = bounded(
            config,
            "NAT-PMP external address",
            crab_nat::natpmp::external_address(gateway, Some(crab_timeouts(config))),
        )
        .await;
        let external_ip = match external {
            Ok(ip) => Some(IpAddr::V4(ip)),
            Err(e) => {
                tracing::warn!("port mapping: {e}");
                None
            }
        };
        Ok::<_, String>((tcp, udp, external_ip, MappingMethod::NatPmp))
    };
    let (tcp, udp, external_ip, method) = match natpmp.await {
        Ok(done) => done,
        Err(natpmp_error) => {
            let client = local_ip_towards(gateway_ip, ports.bind_ip)?;
            let pcp = async {
                let request = |protocol, port| {
                    crab_nat::pcp::port_mapping(
                        crab_nat::pcp::BaseMapRequest::new(gateway, client, protocol, port),
                        None,
                        None,
                        crab_options(config, port),
                    )
                };
                let tcp =
                    bounded(config, "PCP TCP", request(InternetProtocol::Tcp, tcp_port)).await?;
                match bounded(config, "PCP UDP", request(InternetProtocol::Udp, udp_port)).await {
                    Ok(udp) => Ok((tcp, udp)),
                    Err(e) => {
                        crab_drop(config, tcp).await;
                        Err(e)
                    }
                }
            };
            let (tcp, udp) = pcp.await.map_err(|pcp_error| {
                format!("{natpmp_error}; {pcp_error} (gateway {gateway_ip})")
            })?;
            let external_ip = match tcp.mapping_type() {
                PortMappingType::Pcp { external_ip, .. } => Some(external_ip),
                PortMappingType::NatPmp => None,
            };
            (tcp, udp, external_ip, MappingMethod::Pcp)
        }
    };
    let shown = PortMappingState::Mapped {
        method,
        gateway: SocketAddr::new(gateway_ip, crab_nat::GATEWAY_PORT),
        external_ip,
        tcp_port: tcp.external_port().get(),
        udp_port: udp.external_port().get(),
    };
    Ok((
        Mapped::Crab {
            tcp: Box::new(tcp),
            udp: Box::new(udp),
        },
        shown,
    ))
}

async fn crab_drop(config: &PortMappingConfig, mapping: PortMapping) {
    let what = format!(
        "removing the {} mapping of port {}",
        mapping.protocol(),
        mapping.internal_port()
    );
    match tokio::time::timeout(config.timeout, mapping.try_drop()).await {
        Ok(Ok(())) => {}
        Ok(Err((e, _))) => tracing::warn!("port mapping: {what}: {e}"),
        Err(_) => tracing::warn!(
            "port mapping: {what}: no answer within {:?}",
            config.timeout
        ),
    }
}

/// Renews both mappings with the requests that made them (UPnP's `AddPortMapping` again, PCP with
/// its nonce); if that fails, maps from scratch (the gateway may have rebooted or changed).
async fn renew(
    config: &PortMappingConfig,
    ports: Ports,
    mapped: Mapped,
    shown: PortMappingState,
) -> Result<(Mapped, PortMappingState), String> {
    let renewed = match mapped {
        Mapped::Upnp {
            gateway,
            tcp,
            udp,
            lease,
        } => {
            let result = async {
                let local = local_ip_towards(gateway.addr.ip(), ports.bind_ip)?;
                for (protocol, external, internal) in [
                    (PortMappingProtocol::TCP, tcp, ports.tcp),
                    (PortMappingProtocol::UDP, udp, ports.udp),
                ] {
                    let addr = SocketAddr::new(local, internal);
                    let request = gateway.add_port(protocol, external, addr, lease, DESCRIPTION);
                    bounded(config, "renewing", request).await?;
                }
                Ok::<_, String>(())
            }
            .await;
            result.map(|()| Mapped::Upnp {
                gateway,
                tcp,
                udp,
                lease,
            })
        }
        Mapped::Crab { mut tcp, mut udp } => {
            let tcp_result = bounded(config, "renewing TCP", tcp.renew()).await;
            let udp_result = bounded(config, "renewing UDP", udp.renew()).await;
            tcp_result
                .and(udp_result)
                .map(|()| Mapped::Crab { tcp, udp })
        }
    };
    match renewed {
        Ok(mapped) => {
            tracing::debug!("port mapping: renewed");
            Ok((mapped, shown))
        }
        Err(e) => {
            tracing::warn!("port mapping: renewal failed ({e}); mapping again");
            map(config, ports).await
        }
    }
}

/// Removes both mappings, each removal bounded.
async fn remove(config: &PortMappingConfig, mapped: Mapped) {
    match mapped {
        Mapped::Upnp {
            gateway, tcp, udp, ..
        } => {
            for (protocol, port) in [
                (PortMappingProtocol::TCP, tcp),
                (PortMappingProtocol::UDP, udp),
            ] {
                let what = format!("removing the {protocol} mapping of port {port}");
                if let Err(e) = bounded(config, &what, gateway.remove_port(protocol, port)).await {
                    tracing::warn!("port mapping: {e}");
                }
            }
        }
        Mapped::Crab { tcp, udp } => {
            crab_drop(config, *tcp).await;
            crab_drop(config, *udp).await;
        }
    }
    tracing::info!("port mapping: mappings removed");
}
