//! Port mapping against a real gateway: Debian's miniupnpd (nftables backend) in a network
//! namespace of its own (`router`), reached over a veth pair: the router is 10.0.0.1 on `lan0`,
//! swarmer 10.0.0.2 on `lan1` with its default route via the router, and the router's external
//! side is another veth, `ext0`, with 11.0.0.1 (miniupnpd refuses to forward when its external
//! address is private or reserved; nothing routes beyond the pair). Each test makes miniupnpd
//! speak one protocol, UPnP IGD or NAT-PMP, starts `swarmer download`, and checks in the router's
//! nftables rules that the TCP and UDP ports are forwarded to 10.0.0.2, that swarmer logs the
//! external address 11.0.0.1, and that the rules are gone once swarmer exits on a signal; and the
//! same for `swarmer daemon`, whose session view shows the method and the external address.

use std::process::Command;
use std::time::Duration;

use crate::netns::{Need, isolated};
use crate::procs::Proc;
use crate::scene::Scene;
use crate::{MIB, single_file};

const NEEDS: &[Need] = &[Need::Mktorrent, Need::Miniupnpd];
/// swarmer's address on the router's LAN, and its peer port.
const CLIENT: &str = "10.0.0.2";
const PORT: u16 = 6890;
/// The external address miniupnpd reports.
const EXTERNAL: &str = "11.0.0.1";

/// Which protocol miniupnpd speaks.
#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Upnp,
    NatPmp,
}

/// The router's nftables chains, named as miniupnpd's configuration below says (Debian's
/// `nft_init.sh` needs iptables, so the test writes them itself).
const RULES: &str = "table inet filter {
    chain forward { type filter hook forward priority 0; policy drop; jump miniupnpd; }
    chain miniupnpd { }
    chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
    chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
    chain prerouting_miniupnpd { }
    chain postrouting_miniupnpd { }
}
";

fn sh(scene: &Scene, what: &str, script: &str) {
    let output = Command::new("sh")
        .args(["-e", "-c", script])
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    scene.mark(what);
}

/// Builds the router namespace and its links, loads the chains and starts miniupnpd speaking
/// `protocol` only; returns once it listens.
fn start_router(scene: &Scene, protocol: Protocol) -> Proc {
    // `ip netns` keeps its namespaces under /run/netns: a tmpfs there vanishes with the test's
    // mount namespace, and with it the router's namespace.
    sh(
        scene,
        "router namespace and veth pairs",
        "mkdir -p /run/netns && mount -t tmpfs tmpfs /run/netns
         ip netns add router
         ip link add lan1 type veth peer name lan0
         ip link set lan0 netns router
         ip addr add 10.0.0.2/24 dev lan1 && ip link set lan1 up
         ip route add default via 10.0.0.1
         ip netns exec router sh -e -c '
             ip link set lo up
             ip addr add 10.0.0.1/24 dev lan0 && ip link set lan0 up
             ip link add ext0 type veth peer name ext1
             ip addr add 11.0.0.1/24 dev ext0 && ip link set ext0 up && ip link set ext1 up'",
    );
    let rules = scene.dir.join("rules.nft");
    std::fs::write(&rules, RULES).expect("write rules");
    sh(
        scene,
        "the router's nftables chains",
        &format!("ip netns exec router nft -f {}", rules.display()),
    );
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    let config = scene.dir.join("miniupnpd.conf");
    std::fs::write(
        &config,
        format!(
            "ext_ifname=ext0\nlistening_ip=lan0\nhttp_port=5000\nlease_file={}\n\
             enable_upnp={}\nenable_natpmp={}\nsecure_mode=no\nsystem_uptime=yes\n\
             uuid=fc4ec57e-b051-11db-88f8-0060085db3f6\n\
             upnp_forward_chain=miniupnpd\nupnp_nat_chain=prerouting_miniupnpd\n\
             upnp_nat_postrouting_chain=postrouting_miniupnpd\n\
             allow 1024-65535 10.0.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            scene.dir.join("leases").display(),
            yes_no(protocol == Protocol::Upnp),
            yes_no(protocol == Protocol::NatPmp),
        ),
    )
    .expect("write miniupnpd.conf");
    // Its own pid file: the default one in /run is shared with tests running beside this one,
    // and miniupnpd refuses to start when it names a live process.
    let mut command = Command::new("ip");
    command.args(["netns", "exec", "router", "miniupnpd", "-d", "-f"]);
    command
        .arg(&config)
        .arg("-P")
        .arg(scene.dir.join("miniupnpd.pid"));
    let mut router = Proc::spawn("miniupnpd", &mut command, &scene.logs);
    // `ip netns exec` execs miniupnpd, so the PID the test kills is miniupnpd's.
    let ready = match protocol {
        Protocol::Upnp => "HTTP listening on port 5000",
        Protocol::NatPmp => "Listening for NAT-PMP",
    };
    router.wait_for_stderr_line("miniupnpd listening", scene.deadline, |l| l.contains(ready));
    scene.mark("miniupnpd listens");
    router
}

/// The forwarding rules miniupnpd made, as `nft` lists them: `dnat ip to 10.0.0.2:6890` lines.
fn forwards() -> Vec<String> {
    let output = Command::new("ip")
        .args([
            "netns", "exec", "router", "nft", "list", "chain", "inet", "filter",
        ])
        .arg("prerouting_miniupnpd")
        .output()
        .expect("run nft");
    assert!(output.status.success(), "nft list chain failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| l.contains("dnat"))
        .map(|l| l.trim().to_owned())
        .collect()
}

/// Whether `rules` forward both TCP (IP protocol 6) and UDP (17, 0x11) to swarmer's port.
fn both_forwarded(rules: &[String]) -> bool {
    let target = format!("dnat ip to {CLIENT}:{PORT}");
    let forwarded = |proto: &str| {
        rules
            .iter()
            .any(|r| r.contains(&target) && r.contains(&format!("@nh,72,8 {proto} ")))
    };
    forwarded("0x6") && forwarded("0x11")
}

fn start_swarmer(scene: &Scene) -> Proc {
    let fixture = single_file(scene, MIB, 16, &["http://127.0.0.1:6969/announce"]);
    let out = scene.subdir("swarmer-download");
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command
        .arg("download")
        .arg(&fixture.torrent)
        .arg("-o")
        .arg(&out)
        .args(["--bind-address", CLIENT, "--port", &PORT.to_string(), "-v"])
        .args(["--no-lsd", "--no-dht", "--no-pex"])
        .env("XDG_CACHE_HOME", scene.dir.join("xdg-cache"))
        .env("XDG_STATE_HOME", scene.dir.join("xdg-state"))
        .env_remove("RUST_LOG");
    Proc::spawn("swarmer", &mut command, &scene.logs)
}

/// `swarmer daemon` on the router's LAN, its API on loopback, nothing of the user's environment.
fn start_daemon(scene: &Scene) -> Proc {
    let mut command = Command::new(env!("CARGO_BIN_EXE_swarmer"));
    command
        .arg("daemon")
        .args(["--http-listen", DAEMON_API])
        .arg("-o")
        .arg(scene.subdir("daemon-download"))
        .arg("--state-dir")
        .arg(scene.subdir("daemon-state"))
        .args(["--bind-address", CLIENT, "--port", &PORT.to_string()])
        .args(["--no-lsd", "--no-dht", "--no-pex"])
        .env("XDG_CONFIG_HOME", scene.dir.join("xdg-config"))
        .env("XDG_CACHE_HOME", scene.dir.join("xdg-cache"))
        .env("XDG_STATE_HOME", scene.dir.join("xdg-state"))
        .env_remove("SWARMER_TOKEN")
        .env("RUST_LOG", "info");
    Proc::spawn("swarmer-daemon", &mut command, &scene.logs)
}

/// Where the daemon's API listens.
const DAEMON_API: &str = "127.0.0.1:9191";

/// The daemon's session view (`GET /api/v1/session`), once it answers.
fn daemon_session() -> Option<serde_json::Value> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{DAEMON_API}/api/v1/session"))
        .send()
        .ok()?;
    response.json().ok()
}

/// How a test's swarmer runs, and how it is seen to know the external address.
#[derive(Clone, Copy, PartialEq)]
enum Runner {
    /// `swarmer download`, whose `-v` log names the external address.
    Download,
    /// `swarmer daemon`, whose session view shows it.
    Daemon,
}

/// The whole story for one protocol; `request` is what miniupnpd logs for the mapping request.
fn maps_and_removes(scene: &Scene, protocol: Protocol, request: &str, runner: Runner) {
    let mut router = start_router(scene, protocol);
    assert!(forwards().is_empty(), "rules before swarmer started");
    let mut swarmer = match runner {
        Runner::Download => start_swarmer(scene),
        Runner::Daemon => start_daemon(scene),
    };
    scene.deadline.poll(
        "the TCP and UDP forwards in the router's nftables",
        Duration::from_millis(100),
        || both_forwarded(&forwards()).then_some(()),
    );
    scene.mark("miniupnpd forwards TCP and UDP port 6890 to 10.0.0.2");
    assert!(
        router.stderr_text().contains(request),
        "miniupnpd's log has no {request:?}:\n{}",
        router.stderr_text()
    );
    match runner {
        Runner::Download => {
            let external = format!("external address {EXTERNAL}");
            swarmer.wait_for_stderr_line("the external address", scene.deadline, |l| {
                l.contains(&external)
            });
            scene.mark("swarmer logged the external address 11.0.0.1");
        }
        Runner::Daemon => {
            let session = scene.deadline.poll(
                "the daemon's session view with the mapping",
                Duration::from_millis(100),
                || daemon_session().filter(|s| s["external_ip"].is_string()),
            );
            assert_eq!(session["external_ip"], EXTERNAL, "{session}");
            let method = if protocol == Protocol::Upnp {
                "UPnP"
            } else {
                "NAT-PMP"
            };
            assert_eq!(session["port_mapping"], method, "{session}");
            scene.mark("the daemon's session view shows the mapping and 11.0.0.1");
        }
    }
    let status = swarmer.signal("INT", Duration::from_secs(20));
    assert!(
        status.is_some(),
        "swarmer did not exit within 20 s of SIGINT"
    );
    let left = forwards();
    assert!(
        left.is_empty(),
        "forwards left after swarmer exited: {left:?}\n--- swarmer\n{}",
        swarmer.stderr_text()
    );
    scene.mark("swarmer removed both forwards on its way out");
    router.assert_running();
}

#[test]
fn upnp_maps_both_ports_and_removes_them_on_exit() {
    isolated(
        "port_mapping::upnp_maps_both_ports_and_removes_them_on_exit",
        NEEDS,
        |scene| maps_and_removes(scene, Protocol::Upnp, "AddPortMapping", Runner::Download),
    );
}

#[test]
fn natpmp_maps_both_ports_and_removes_them_on_exit() {
    isolated(
        "port_mapping::natpmp_maps_both_ports_and_removes_them_on_exit",
        NEEDS,
        |scene| {
            maps_and_removes(
                scene,
                Protocol::NatPmp,
                "NAT-PMP port mapping request",
                Runner::Download,
            )
        },
    );
}

#[test]
fn the_daemon_shows_the_mapping_and_removes_it_on_exit() {
    isolated(
        "port_mapping::the_daemon_shows_the_mapping_and_removes_it_on_exit",
        NEEDS,
        |scene| maps_and_removes(scene, Protocol::Upnp, "AddPortMapping", Runner::Daemon),
    );
}
