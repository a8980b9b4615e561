//! smtps receive rate: Postfix's smtp-source (20 sessions, 4 KiB messages)
//! into smtps with durable CDB commits, beside smtp-source into Postfix's
//! smtp-sink (the load tool's own ceiling) in the same run.
//!
//! `cargo run --release -p smx-bench --bin smtps_bench [DIR] [MESSAGES]`
//!
//! smtps runs in this process with stand-ins for qmgr and smar that answer
//! at once (qmgr: "committed", smar: "accept"), so the figure is the
//! server's: sessions, parsing, content written and fsynced into CDB, one
//! IPC round trip per message. DIR (default: a directory under the current
//! one) must be on a real disk; it is removed afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use smx_conf::model::smtps::SmtpsConfig;
use smx_ipc::DEFAULT_MAX_FRAME;
use smx_ipc::link::{Link, ServerFrame};
use smx_ipc::smtps_qmgr::{QmgrReply, SmtpsQmgr, SmtpsRequest};
use smx_ipc::smtps_smar::{SmarReply, SmtpsSmar};
use smx_smtps::{Server, ServerParts, Settings};
use smx_store::cdb::{Cdb, CdbOptions};
use smx_store::id::IdSource;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

const SESSIONS: &str = "20";
const SIZE: &str = "4096";

/// Answers every request of link `L` with `answer(request)`, at once.
fn instant_peer<L: Link>(path: &Path, answer: fn(&L::Request) -> L::Reply) -> anyhow::Result<()>
where
    L::Reply: Sync,
    L::Notice: Sync,
{
    let listener = UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = smx_ipc::Server::<L>::accept(stream, DEFAULT_MAX_FRAME).await
                else {
                    return;
                };
                let (mut rd, mut wr) = server.into_split();
                let (tx, mut rx) = mpsc::unbounded_channel::<ServerFrame<L::Reply, L::Notice>>();
                tokio::spawn(async move {
                    while let Some(f) = rx.recv().await {
                        if wr.write(&f).await.is_err() {
                            return;
                        }
                    }
                });
                while let Ok(Some(req)) = rd.read().await {
                    let body = answer(&req.body);
                    if tx.send(ServerFrame::Reply { id: req.id, body }).is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(())
}

fn qmgr_answer(req: &SmtpsRequest) -> QmgrReply {
    match req {
        SmtpsRequest::NewSession(_) => QmgrReply::SessionAccepted,
        SmtpsRequest::Commit(_) => QmgrReply::Committed,
        _ => QmgrReply::Done,
    }
}

fn smar_answer(_: &smx_ipc::smtps_smar::SmarRequest) -> SmarReply {
    SmarReply::Accept { quick: false }
}

/// Runs smtp-source against `target` and returns messages per second.
fn source(target: &str, messages: u32) -> anyhow::Result<f64> {
    let start = Instant::now();
    let out = Command::new("/usr/sbin/smtp-source")
        .args(["-s", SESSIONS, "-m", &messages.to_string(), "-l", SIZE])
        .args([
            "-f",
            "s@bench.example",
            "-t",
            "r@bench.example",
            "-M",
            "bench.example",
        ])
        .arg(target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("smtp-source (Debian package postfix)")?;
    let secs = start.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "smtp-source failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(f64::from(messages) / secs)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// smtp-sink on a free port; killed on drop.
struct Sink(std::process::Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_sink() -> anyhow::Result<(Sink, String)> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let mut cmd = Command::new("/usr/sbin/smtp-sink");
    if nix_is_root() {
        cmd.args(["-u", "nobody"]);
    }
    let child = cmd
        .args([&addr, "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("smtp-sink (Debian package postfix)")?;
    let sink = Sink(child);
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            return Ok((sink, addr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("smtp-sink did not start")
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "smtps-bench.tmp".into()));
    let messages: u32 = args.next().map_or(Ok(4000), |s| s.parse())?;
    if dir.exists() {
        bail!("{} exists; give a new directory", dir.display());
    }
    std::fs::create_dir_all(&dir)?;
    if smx_bench::on_memory_fs(&dir) {
        std::fs::remove_dir_all(&dir)?;
        bail!(
            "{} is on a memory file system; use a real disk",
            dir.display()
        );
    }
    let result = run(&dir, messages).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn run(dir: &Path, messages: u32) -> anyhow::Result<()> {
    let cdb = Arc::new(Cdb::open(dir.join("cdb"), CdbOptions::default())?);
    let ids = Arc::new(IdSource::open(dir.join("ids"))?);
    instant_peer::<SmtpsQmgr>(&dir.join("qmgr.sock"), qmgr_answer)?;
    instant_peer::<SmtpsSmar>(&dir.join("smar.sock"), smar_answer)?;
    let cfg = SmtpsConfig {
        max_connections_per_ip: 1000,
        ..SmtpsConfig::default()
    };
    let parts = ServerParts {
        settings: Settings::from_config(&cfg, "bench.example"),
        cdb: Arc::clone(&cdb),
        ids,
        qmgr_socket: dir.join("qmgr.sock"),
        smar_socket: dir.join("smar.sock"),
    };
    let addr: SocketAddr = "127.0.0.1:0".parse()?;
    let server = Server::bind(parts, &[addr], 1024).await?;
    let target = server.local_addrs()[0].to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let (_sink, sink_addr) = start_sink()?;

    println!(
        "smtp-source: {SESSIONS} sessions, {messages} messages of {SIZE} bytes, one recipient each"
    );
    // Alternate the two targets so drift in the machine affects both.
    let mut smx = Vec::new();
    let mut sink = Vec::new();
    for _ in 0..3 {
        let t = target.clone();
        smx.push(tokio::task::spawn_blocking(move || source(&t, messages)).await??);
        let t = sink_addr.clone();
        sink.push(tokio::task::spawn_blocking(move || source(&t, messages)).await??);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (smx_rate, sink_rate) = (median(&mut smx), median(&mut sink));
    println!("smtps (durable CDB commits): {smx_rate:8.0} msgs/s  (runs: {smx:.0?})");
    println!("smtp-sink (no storage):      {sink_rate:8.0} msgs/s  (runs: {sink:.0?})");
    println!("ratio smtps / smtp-sink:     {:8.2}", smx_rate / sink_rate);
    let stats = cdb.stats();
    println!("CDB commits: {}", stats.commits);
    let _ = stop.send(());
    handle.await?;
    Ok(())
}
