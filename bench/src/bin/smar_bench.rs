//! Address resolver (smar) benchmark. Prints, in one run on the same map:
//!
//! * the reference: raw cdb lookups per second on the 1,000,000-entry
//!   access map, without smar and without IPC (keys that are in the map,
//!   keys that are not; one thread, then one per core);
//! * smar's answers per second computed in-process (`Smar::answer_smtps`,
//!   `Smar::answer_qmgr` called directly, no socket), [`CONCURRENCY`]
//!   requests in flight;
//! * the same requests through smx-ipc over the Unix socket of
//!   `smx_smar::serve`, one `smx_ipc::Client` per link with
//!   [`CONCURRENCY`] requests in flight: RCPT checks (`smtps_smar`
//!   `RcptCheck`) whose client address and recipient are in the access
//!   map, RCPT checks where every key misses, and routing (`qmgr_smar`
//!   `Route`) of recipients whose domain is in the mailertable and of
//!   recipients routed by MX.
//!
//! Every answer is checked against the decision the map implies; a wrong
//! answer stops the benchmark with an error.
//!
//! # The maps
//!
//! The access map is a cdb file with 1,000,000 entries:
//!
//! | entries | key | value |
//! | --- | --- | --- |
//! | 300,000 | `cltaddr:10.A.B.C` | `ok`, `relay`, `reject`, `error:550 5.7.1 ...` in turn |
//! | 300,000 | `from:senderK@domainD.example` | `ok`, `reject`, `error:553 5.7.1 ...` in turn |
//! | 400,000 | `to:userK@domainD.example` | `relay`, `ok`, `reject`, `error:550 5.7.1 ...` in turn |
//!
//! The mailertable is a cdb file with 100,000 entries `domainD.example`:
//! even D `esmtp:[192.0.2.N]` (an address, no DNS), odd D
//! `esmtp:[relayN.example]` (a host without MX lookup). The file is
//! written as `smx makemap` writes it: keys lower-cased, djb's cdb format
//! (see `smx_maps::cdb`), to a temporary file that is synced and renamed.
//! smar opens both through its configuration (`smar { access_map { file =
//! "access.cdb"; } mailertable { file = "mailertable.cdb"; } }` with
//! `smtps { flags = { access }; }`).
//!
//! DNS is answered from memory (no server, no network): no PTR for any
//! client, `mx.NAME` as the MX of `otherD.example`, one address for
//! `relayN.example` and `mx.otherD.example`. What is measured is smar's
//! lookup logic, its cdb reads and the IPC, not a resolver.
//!
//! # What each request costs in map lookups
//!
//! * RCPT check, hit: `cltaddr:` of the full address (an `ok` entry ends
//!   the connect stage), the mailertable for the recipient's domain (is it
//!   local?), `to:` of the full address (a hit).
//! * RCPT check, miss: `cltaddr:` for 4 prefixes, `cltresolve:no`, the
//!   mailertable, `to:` for every step of seed 3.12.1 (full address,
//!   `@domain`, `@.example`, the local part alone), all missing; the answer
//!   is `550 5.7.1 Relaying denied`.
//! * Route: the mailertable; for the MX case the misses first, then two
//!   in-memory DNS answers.
//!
//! Usage: `cargo run --release -p smx-bench --bin smar_bench [DIR] [SECONDS]`
//! (DIR defaults to ./bench-smar-tmp, created and removed; it must not be
//! on tmpfs; SECONDS per case, default 3).

use anyhow::{Context, anyhow, bail};
use smx_bench::on_memory_fs;
use smx_ipc::qmgr_smar::{QmgrSmar, Route, RouteReply, RouteRequest};
use smx_ipc::smtps_smar::{SmarReply, SmarRequest, SmtpsSmar};
use smx_ipc::{Client, DEFAULT_MAX_FRAME};
use smx_smar::Smar;
use smx_smar::dns::{Dns, DnsError, Mx};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{UnixListener, UnixStream};

/// `cltaddr:` entries.
const CLTADDR: u32 = 300_000;
/// `from:` entries.
const FROM: u32 = 300_000;
/// `to:` entries.
const TO: u32 = 400_000;
/// Mailertable entries (and domains of the addresses).
const DOMAINS: u32 = 100_000;
/// Requests in flight.
const CONCURRENCY: usize = 64;
/// Deadline of one request through the IPC.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Warm-up before each measured case.
const WARMUP: Duration = Duration::from_millis(500);

// ---- the map contents -----------------------------------------------------

fn cltaddr_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8)
}

fn cltaddr_value(i: u32) -> &'static str {
    match i % 4 {
        0 => "ok",
        1 => "relay",
        2 => "reject",
        _ => "error:550 5.7.1 Client blocked",
    }
}

fn from_addr(k: u32) -> String {
    format!("sender{k}@domain{}.example", k % DOMAINS)
}

fn from_value(k: u32) -> String {
    match k % 3 {
        0 => "ok".into(),
        1 => "reject".into(),
        _ => format!("error:553 5.7.1 Sender {k} blocked"),
    }
}

fn to_addr(k: u32) -> String {
    format!("user{k}@domain{}.example", k % DOMAINS)
}

fn to_value(k: u32) -> String {
    match k % 4 {
        0 => "relay".into(),
        1 => "ok".into(),
        2 => "reject".into(),
        _ => format!("error:550 5.7.1 Mailbox {k} disabled"),
    }
}

fn mailertable_value(d: u32) -> String {
    if d.is_multiple_of(2) {
        format!("esmtp:[192.0.2.{}]", d % 250 + 1)
    } else {
        format!("esmtp:[relay{}.example]", d % 1000)
    }
}

/// All access map entries, keys lower-cased.
fn access_entries() -> impl Iterator<Item = (String, String)> {
    let clt = (0..CLTADDR).map(|i| {
        (
            format!("cltaddr:{}", cltaddr_ip(i)),
            cltaddr_value(i).to_owned(),
        )
    });
    let from = (0..FROM).map(|k| (format!("from:{}", from_addr(k)), from_value(k)));
    let to = (0..TO).map(|k| (format!("to:{}", to_addr(k)), to_value(k)));
    clt.chain(from).chain(to)
}

fn mailertable_entries() -> impl Iterator<Item = (String, String)> {
    (0..DOMAINS).map(|d| (format!("domain{d}.example"), mailertable_value(d)))
}

// ---- cdb files ----------------------------------------------------------------

/// Writes `entries` as a cdb file with `smx makemap`'s builder (keys
/// lower-cased, atomic rename). Returns the number of entries.
fn write_cdb(
    output: &Path,
    entries: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<usize> {
    let entries: Vec<smx_maps::text::Entry> = entries
        .enumerate()
        .map(|(i, (key, value))| smx_maps::text::Entry {
            line: i + 1,
            key: key.to_ascii_lowercase(),
            value,
        })
        .collect();
    smx_maps::makemap::write_cdb(&entries, output).with_context(|| output.display().to_string())?;
    Ok(entries.len())
}

// ---- DNS from memory --------------------------------------------------------

#[derive(Debug)]
struct MemoryDns;

/// A fixed documentation address derived from the name (djb hash).
fn memory_addr(name: &str) -> IpAddr {
    let h = name.bytes().fold(5381u32, |h, b| {
        (h.wrapping_shl(5).wrapping_add(h)) ^ u32::from(b)
    });
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, (h % 250 + 1) as u8))
}

impl Dns for MemoryDns {
    async fn mx(&self, name: &str) -> Result<Vec<Mx>, DnsError> {
        if name.starts_with("other") {
            Ok(vec![Mx {
                preference: 10,
                exchange: format!("mx.{name}"),
            }])
        } else {
            Err(DnsError::NxDomain { name: name.into() })
        }
    }

    async fn addrs(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        if name.starts_with("relay") || name.starts_with("mx.other") {
            Ok(vec![memory_addr(name)])
        } else {
            Err(DnsError::NxDomain { name: name.into() })
        }
    }

    async fn ptr(&self, ip: IpAddr) -> Result<Vec<String>, DnsError> {
        Err(DnsError::NxDomain {
            name: ip.to_string(),
        })
    }
}

// ---- workloads ----------------------------------------------------------------

/// splitmix64: a deterministic stream of pseudo-random numbers per task.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

#[derive(Debug, Clone, Copy)]
enum Case {
    RcptHit,
    RcptMiss,
    RouteMailertable,
    RouteMx,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::RcptHit => "RCPT check, keys in the map",
            Case::RcptMiss => "RCPT check, every key missing",
            Case::RouteMailertable => "route, mailertable entry",
            Case::RouteMx => "route, no entry (MX from memory)",
        }
    }
}

/// A RCPT check and the answer the map implies (`true`: relay).
fn rcpt_request(case: Case, rng: &mut Rng) -> (SmarRequest, bool) {
    let sender = "someone@sender.example".to_owned();
    if let Case::RcptHit = case {
        // A client whose entry is `ok` (every fourth), a listed recipient.
        let i = rng.below(CLTADDR / 4) * 4;
        let k = rng.below(TO);
        (
            SmarRequest::RcptCheck {
                rcpt: to_addr(k),
                sender,
                client_ip: IpAddr::V4(cltaddr_ip(i)),
            },
            k.is_multiple_of(4),
        )
    } else {
        let n = rng.below(1 << 16);
        let k = rng.below(TO);
        (
            SmarRequest::RcptCheck {
                rcpt: format!("nobody{k}@domain{}.example", k % DOMAINS),
                sender,
                client_ip: IpAddr::V4(Ipv4Addr::new(172, 16, (n >> 8) as u8, n as u8)),
            },
            false,
        )
    }
}

fn check_rcpt(req: &SmarRequest, relay: bool, reply: &SmarReply) -> anyhow::Result<()> {
    let ok = match reply {
        SmarReply::Relay { quick: false } => relay,
        SmarReply::Reject(r) => !relay && r.code / 100 == 5,
        _ => false,
    };
    if !ok {
        bail!("unexpected answer {reply:?} to {req:?}");
    }
    Ok(())
}

fn route_request(case: Case, rng: &mut Rng) -> RouteRequest {
    let k = rng.below(TO);
    let rcpt = match case {
        Case::RouteMailertable => to_addr(k),
        _ => format!("user{k}@other{}.example", k % DOMAINS),
    };
    RouteRequest::Route {
        rcpt,
        sender: "someone@sender.example".into(),
    }
}

fn check_route(req: &RouteRequest, reply: &RouteReply) -> anyhow::Result<()> {
    match reply {
        RouteReply::Routed { rcpts, failed, .. }
            if rcpts.len() == 1
                && failed.is_empty()
                && matches!(&rcpts[0].route, Route::Hosts { hops, .. } if hops.len() == 1) =>
        {
            Ok(())
        }
        _ => bail!("unexpected answer {reply:?} to {req:?}"),
    }
}

/// Runs `tasks` tasks, each calling `op` with its own random stream until
/// `secs` have passed (after a warm-up); returns operations per second.
async fn measure<F, Fut>(tasks: usize, secs: f64, op: F) -> anyhow::Result<f64>
where
    F: Fn(Rng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Rng>> + Send + 'static,
{
    let op = Arc::new(op);
    let done = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + WARMUP;
    let end = warm_until + Duration::from_secs_f64(secs);
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let op = Arc::clone(&op);
        let done = Arc::clone(&done);
        set.spawn(async move {
            let mut rng = Rng(0x5eed_0000 + t as u64);
            loop {
                let now = Instant::now();
                if now >= end {
                    return anyhow::Ok(());
                }
                rng = op(rng).await?;
                if now >= warm_until {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    let elapsed = Instant::now().duration_since(warm_until).as_secs_f64();
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed)
}

/// Raw lookups per second on `threads` threads, without smar or IPC.
fn raw_lookups(
    smar: &Arc<Smar<MemoryDns>>,
    threads: usize,
    secs: f64,
    hit: bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut handles = Vec::new();
    for t in 0..threads {
        let smar = Arc::clone(smar);
        handles.push(std::thread::spawn(move || -> anyhow::Result<u64> {
            let map = smar.access.as_ref().context("no access map")?;
            let mut rng = Rng(0xcdb0_0000 + t as u64);
            let mut n = 0u64;
            while Instant::now() < end {
                for _ in 0..256 {
                    let k = rng.below(TO);
                    let key = if hit {
                        format!("to:{}", to_addr(k))
                    } else {
                        format!("to:nobody{k}@domain{}.example", k % DOMAINS)
                    };
                    let found = map.lookup(&key).map_err(|e| anyhow!("{e}"))?;
                    if found.is_some() != hit {
                        bail!("cdb lookup of {key}: {found:?}");
                    }
                    n += 1;
                }
            }
            Ok(n)
        }));
    }
    let mut total = 0u64;
    for h in handles {
        total += h.join().map_err(|_| anyhow!("lookup thread panicked"))??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

// ---- main -------------------------------------------------------------------

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "bench-smar-tmp".into()));
    let secs: f64 = match args.next() {
        Some(s) => s.parse().context("SECONDS")?,
        None => 3.0,
    };
    if !(secs > 0.0 && secs <= 600.0) {
        bail!("SECONDS must be between 0 and 600");
    }
    if dir.exists() {
        bail!("{} exists; give a new directory", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    if on_memory_fs(&dir) {
        let _ = std::fs::remove_dir_all(&dir);
        bail!(
            "{} is on tmpfs: the maps must be on a real disk",
            dir.display()
        );
    }
    let result = bench(&dir, secs);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn bench(dir: &Path, secs: f64) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "smar benchmark in {} ({secs} s per case, {cores} cores, {CONCURRENCY} requests in flight)",
        dir.display()
    );
    let t = Instant::now();
    let n = write_cdb(&dir.join("access.cdb"), access_entries())?;
    let size = std::fs::metadata(dir.join("access.cdb"))?.len();
    println!(
        "access map: {n} entries, {:.1} MB cdb, written in {:.1} s",
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let m = write_cdb(&dir.join("mailertable.cdb"), mailertable_entries())?;
    println!("mailertable: {m} entries (cdb)");
    let conf_text = r#"
smtps { flags = { access }; }
smar {
    access_map { file = "access.cdb"; }
    mailertable { file = "mailertable.cdb"; }
}
"#;
    std::fs::write(dir.join("smx.conf"), conf_text)?;
    let config = smx_conf::load_str("smx.conf", conf_text).map_err(|e| anyhow!("{e}"))?;
    let smar = Arc::new(Smar::from_config(&config, dir, MemoryDns)?);
    if !smar.policy.access || smar.access.is_none() {
        bail!("the configuration did not enable the access map");
    }

    println!();
    println!("reference: raw cdb lookups of to: keys, no smar, no IPC");
    for (threads, hit) in [(1, true), (1, false), (cores, true), (cores, false)] {
        let r = raw_lookups(&smar, threads, secs, hit)?;
        println!(
            "  {:<44} {r:>12.0} lookups/s",
            format!(
                "{} thread(s), {}",
                threads,
                if hit { "key in the map" } else { "key missing" }
            )
        );
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .enable_all()
        .build()?;
    rt.block_on(async_part(dir, smar, secs))
}

async fn async_part(dir: &Path, smar: Arc<Smar<MemoryDns>>, secs: f64) -> anyhow::Result<()> {
    let cases = [
        Case::RcptHit,
        Case::RcptMiss,
        Case::RouteMailertable,
        Case::RouteMx,
    ];
    let mut direct = Vec::new();
    println!();
    println!("in-process: Smar::answer_smtps / answer_qmgr called directly, no IPC");
    for case in cases {
        let s = Arc::clone(&smar);
        let r = measure(CONCURRENCY, secs, move |mut rng| {
            let s = Arc::clone(&s);
            async move {
                match case {
                    Case::RcptHit | Case::RcptMiss => {
                        let (req, relay) = rcpt_request(case, &mut rng);
                        let reply = s.answer_smtps(req.clone()).await;
                        check_rcpt(&req, relay, &reply)?;
                    }
                    Case::RouteMailertable | Case::RouteMx => {
                        let req = route_request(case, &mut rng);
                        let reply = s.answer_qmgr(req.clone()).await;
                        check_route(&req, &reply)?;
                    }
                }
                Ok(rng)
            }
        })
        .await?;
        println!("  {:<44} {r:>12.0} requests/s", case.name());
        direct.push(r);
    }

    let path = dir.join("smar.sock");
    let listener = UnixListener::bind(&path)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(smx_smar::serve(listener, Arc::clone(&smar), async {
        let _ = stop_rx.await;
    }));
    let (smtps, _smtps_notices) =
        Client::<SmtpsSmar>::connect(UnixStream::connect(&path).await?, DEFAULT_MAX_FRAME).await?;
    let (qmgr, _qmgr_notices) =
        Client::<QmgrSmar>::connect(UnixStream::connect(&path).await?, DEFAULT_MAX_FRAME).await?;
    let smtps = Arc::new(smtps);
    let qmgr = Arc::new(qmgr);

    println!();
    println!("through smx-ipc on a Unix socket (smx_smar::serve, one client per link)");
    for (case, reference) in cases.into_iter().zip(&direct) {
        let (smtps, qmgr) = (Arc::clone(&smtps), Arc::clone(&qmgr));
        let r = measure(CONCURRENCY, secs, move |mut rng| {
            let (smtps, qmgr) = (Arc::clone(&smtps), Arc::clone(&qmgr));
            async move {
                match case {
                    Case::RcptHit | Case::RcptMiss => {
                        let (req, relay) = rcpt_request(case, &mut rng);
                        let reply = smtps.request(req.clone(), REQUEST_TIMEOUT).await?;
                        check_rcpt(&req, relay, &reply)?;
                    }
                    Case::RouteMailertable | Case::RouteMx => {
                        let req = route_request(case, &mut rng);
                        let reply = qmgr.request(req.clone(), REQUEST_TIMEOUT).await?;
                        check_route(&req, &reply)?;
                    }
                }
                Ok(rng)
            }
        })
        .await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                let _ = stop_tx.send(());
                server.abort();
                return Err(e);
            }
        };
        println!(
            "  {:<44} {r:>12.0} requests/s  ({:.0}% of in-process)",
            case.name(),
            100.0 * r / reference
        );
    }
    let _ = stop_tx.send(());
    drop((smtps, qmgr));
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(r)) => r?,
        Ok(Err(e)) => bail!("smar task: {e}"),
        Err(_) => bail!("smar did not stop"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The cdb writer's files read back through smar's own cdb map: every
    /// key is found with its value, absent keys are not.
    #[test]
    fn cdb_writer_reads_back_through_smar() {
        let dir = tempfile::tempdir().unwrap();
        let entries: Vec<(String, String)> = (0..5000u32)
            .map(|k| (format!("to:{}", to_addr(k)), to_value(k)))
            .chain([("Upper:Case".to_owned(), "ok".to_owned())])
            .collect();
        assert_eq!(
            write_cdb(&dir.path().join("access.cdb"), entries.clone().into_iter()).unwrap(),
            entries.len()
        );
        assert!(!dir.path().join("access.cdb.tmp").exists());
        let config =
            smx_conf::load_str("t.conf", r#"smar { access_map { file = "access.cdb"; } }"#)
                .unwrap();
        let smar = Smar::from_config(&config, dir.path(), MemoryDns).unwrap();
        let map = smar.access.as_ref().unwrap();
        for (k, v) in &entries {
            assert_eq!(
                map.lookup(&k.to_ascii_lowercase()).unwrap().as_deref(),
                Some(v.as_str()),
                "{k}"
            );
        }
        assert_eq!(map.lookup("upper:case").unwrap().as_deref(), Some("ok"));
        assert_eq!(map.lookup("Upper:Case").unwrap(), None);
        assert_eq!(map.lookup("to:user5000@domain5000.example").unwrap(), None);
    }
}
