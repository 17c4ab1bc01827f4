//! `egressd explain`: how the policy decides one connection, as text or JSON.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;

use egressd_policy::explain::{Explanation, explain};
use egressd_policy::geo::Geolocate;
use egressd_policy::model::{Fallback, Protocol};
use egressd_policy::validate::parse_target;
use egressd_policy::{CompiledPolicy, Query};

use super::fail;
use crate::files::{Source, load};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Configuration: a TOML file, or a compiled artifact from `egressd compile`.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
    /// Destination: HOST:PORT, IP:PORT or [IPv6]:PORT. A host name is resolved (system
    /// resolver) and the first address is explained.
    #[arg(long, value_name = "HOST:PORT")]
    dst: String,
    /// Authenticated user name (identity.email, identity.name); anonymous when absent.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Client address, IP or IP:PORT (net.src.ip, and the [[device]] it matches).
    #[arg(long, value_name = "IP[:PORT]")]
    src: Option<String>,
    /// Listener name (proxy.endpoint); the first listener when absent.
    #[arg(long, value_name = "NAME")]
    listener: Option<String>,
    /// Transport protocol of the connection (net.protocol).
    #[arg(long, default_value = "tcp", value_parser = protocols())]
    protocol: String,
    /// Device posture checks that passed, comma-separated; when absent, the [[device]]
    /// matched by --src supplies them.
    #[arg(long, value_delimiter = ',', value_name = "CHECK,...")]
    posture: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// `--protocol`'s possible values, from the policy's own list.
fn protocols() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(Protocol::ALL.iter().map(|p| p.as_str()))
}

pub fn run(args: &Args) -> ExitCode {
    let policy = match load(&args.config) {
        Ok(Source::Config(c)) => {
            if c.policy.is_none() {
                eprint!("{}", c.render());
                return fail(format!("{}: invalid configuration", args.config.display()));
            }
            c.policy
        }
        Ok(s) => s.policy(),
        Err(e) => return fail(e),
    };
    let Some(policy) = policy else {
        return fail("no policy");
    };
    let (host, mut dst_ip, dst_port) = match parse_target(&args.dst) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    if dst_ip.is_none() {
        // The decision is made for the address dialled; explain the first one resolved.
        dst_ip = (host.as_str(), dst_port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .map(|a| a.ip());
    }
    let src = match &args.src {
        Some(s) => match s
            .parse::<SocketAddr>()
            .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 0)))
        {
            Ok(a) => Some(a),
            Err(_) => return fail(format!("invalid --src \"{s}\": expected IP or IP:PORT")),
        },
        None => None,
    };
    let Some(protocol) = Protocol::parse(&args.protocol) else {
        return fail(format!(
            "invalid --protocol \"{}\": expected tcp or udp",
            args.protocol
        ));
    };
    let table = CompiledPolicy::new(policy);
    let directory = table.directory();
    let listener = match &args.listener {
        Some(l) if directory.listener(l).is_none() => {
            return fail(format!("unknown listener \"{l}\""));
        }
        Some(l) => l.clone(),
        None => table
            .policy()
            .listeners
            .first()
            .map(|l| l.name.clone())
            .unwrap_or_default(),
    };
    if let Some(u) = &args.user
        && directory.user(u).is_none()
    {
        eprintln!("egressd: note: \"{u}\" is not a [[user]]; explaining it with no groups");
    }
    let geo = match &table.policy().geoip {
        Some(path) => match crate::geo::GeoDb::open(path) {
            Ok(db) => Some(db),
            Err(e) => return fail(e),
        },
        None => None,
    };
    let query = Query {
        user: args.user.as_deref().unwrap_or(""),
        fingerprint: None,
        listener: &listener,
        src,
        dst_ip,
        dst_port,
        host: &host,
        protocol,
    };
    let mut facts = directory.facts(&query, geo.as_ref().map(|g| g as &dyn Geolocate));
    // Without --posture, the [[device]] matched by the client address supplies it.
    if !args.posture.is_empty() {
        facts = facts.with_posture(&args.posture, &[]);
    }
    let ex = explain(&table, &facts);
    if args.json {
        match serde_json::to_string_pretty(&ex) {
            Ok(s) => println!("{s}"),
            Err(e) => return fail(e),
        }
    } else {
        print!("{}", render(&ex));
    }
    ExitCode::SUCCESS
}

fn render(ex: &Explanation) -> String {
    use std::fmt::Write;
    let c = &ex.connection;
    let mut out = String::new();
    let who = if c.user.is_empty() {
        "anonymous".to_string()
    } else {
        format!("user {} (groups: {})", c.user, list(&c.groups))
    };
    let target = match (c.host.as_str(), c.dst_ip) {
        ("", Some(ip)) => SocketAddr::new(ip, c.dst_port).to_string(),
        (h, Some(ip)) => format!(
            "{h}:{} (dialled as {})",
            c.dst_port,
            SocketAddr::new(ip, c.dst_port)
        ),
        (h, None) => format!("{h}:{} (not resolved: ip conditions are false)", c.dst_port),
    };
    let _ = writeln!(out, "connection: {who} -> {target}");
    let _ = writeln!(
        out,
        "  from {}, listener \"{}\", protocol {}, posture passed: {}",
        c.src.as_deref().unwrap_or("(unspecified)"),
        c.listener,
        c.protocol,
        list(&c.posture_passed)
    );
    let place = |country: &str, continent: &str| {
        if country.is_empty() {
            "unknown".to_string()
        } else {
            format!("{country} ({continent})")
        }
    };
    let _ = writeln!(
        out,
        "  geolocation: source {}, destination {}",
        place(&c.geo.src_country, &c.geo.src_continent),
        place(&c.geo.dst_country, &c.geo.dst_continent)
    );
    let _ = writeln!(
        out,
        "checked {} of {} rules (the index skipped the rest):",
        ex.checked.len(),
        ex.rules_total
    );
    for r in &ex.checked {
        let _ = writeln!(
            out,
            "  #{} \"{}\": {}",
            r.index + 1,
            r.rule,
            if r.matched { "MATCH" } else { "no match" }
        );
        if r.conditions.is_empty() {
            let _ = writeln!(out, "      (no condition: matches every connection)");
        }
        for cond in &r.conditions {
            let _ = writeln!(
                out,
                "      {:<5} {}    [{} = {}]",
                cond.result, cond.text, cond.field, cond.value
            );
        }
    }
    let e = &ex.egress;
    match &ex.matched_rule {
        Some(r) => {
            let _ = writeln!(out, "decision: rule \"{r}\": action {}", ex.action);
        }
        None => {
            let _ = writeln!(
                out,
                "decision: no rule matched: [policy] default_action gives {}",
                ex.action
            );
        }
    }
    if ex.destination_denied {
        let _ = writeln!(
            out,
            "REFUSED: the destination is in [proxy] deny_destinations"
        );
    }
    let how = match e.kind {
        "pool" => {
            let mut chain: Vec<String> = e.attempts.iter().map(ToString::to_string).collect();
            chain.push(match e.fallback {
                Some(Fallback::Default) => "fallback: default egress".into(),
                Some(Fallback::Deny) | None => "fallback: refuse".into(),
            });
            format!(
                "pool \"{}\"{}: {}",
                e.pool.as_deref().unwrap_or("?"),
                e.pool_country
                    .as_deref()
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default(),
                chain.join(", then ")
            )
        }
        "default" => "default egress (the kernel picks the source address)".into(),
        "ingress" => "the local address the client connected to".into(),
        _ => "none: the connection is refused".into(),
    };
    let _ = writeln!(out, "egress: {how}");
    let order: Vec<&str> = e
        .family_order
        .iter()
        .map(|f| match f {
            egressd_policy::egress::IpFamily::V4 => "IPv4",
            egressd_policy::egress::IpFamily::V6 => "IPv6",
        })
        .collect();
    let _ = writeln!(
        out,
        "family: {} (host names try {})",
        e.family,
        order.join(" then ")
    );
    out
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
