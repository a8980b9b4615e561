//! Delivery agent benchmark: messages/s from smtpc into Postfix's
//! smtp-sink with 20 concurrent connections and 4 KiB messages, beside
//! Postfix's smtp-source into the same smtp-sink in the same run (20
//! sessions, 4 KiB, connections kept open with `-d` as smtpc keeps them
//! with reuse_connection). Prints both rates and their ratio.
//!
//! smtpc reads the content from a CDB file each time (as in production),
//! one recipient per message, PIPELINING as smtp-sink offers it.
//!
//! Usage: `cargo run --release -p smx-bench --bin smtpc_bench [MESSAGES]`
//! (default 20000 per side). Needs /usr/sbin/smtp-sink and
//! /usr/sbin/smtp-source; run as root (smtp-sink drops to `nobody`).

use std::net::{IpAddr, SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use smx_ipc::qmgr_smtpc::{
    DaTransactionId, Delivery, DeliveryRecipient, Destination, Protocol, RecipientStatus, Target,
};
use smx_ipc::types::TransactionId;
use smx_smtpc::{ClientConfig, Deliverer};
use smx_store::cdb::{Cdb, CdbOptions};

const CONNECTIONS: usize = 20;
const SIZE: usize = 4096;

struct Sink(Child);

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start_sink() -> anyhow::Result<(Sink, SocketAddr)> {
    let port = StdListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
    let child = Command::new("/usr/sbin/smtp-sink")
        .args(["-u", "nobody", &format!("127.0.0.1:{port}"), "512"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting /usr/sbin/smtp-sink")?;
    let sink = Sink(child);
    let start = Instant::now();
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("smtp-sink does not listen on {addr}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((sink, addr))
}

fn smtp_source_rate(addr: SocketAddr, messages: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    let status = Command::new("/usr/sbin/smtp-source")
        .args([
            "-d",
            "-s",
            &CONNECTIONS.to_string(),
            "-l",
            &SIZE.to_string(),
            "-m",
            &messages.to_string(),
            "-f",
            "sender@example.org",
            "-t",
            "rcpt@example.org",
            &addr.to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .context("running /usr/sbin/smtp-source")?;
    let secs = start.elapsed().as_secs_f64();
    if !status.success() {
        bail!("smtp-source failed: {status}");
    }
    Ok(messages as f64 / secs)
}

fn message() -> Vec<u8> {
    let mut m =
        b"From: sender@example.org\r\nTo: rcpt@example.org\r\nSubject: bench\r\n\r\n".to_vec();
    let mut i = 0;
    while m.len() < SIZE {
        m.extend_from_slice(
            format!("body line {i:06} of the benchmark message.........\r\n").as_bytes(),
        );
        i += 1;
    }
    m.truncate(SIZE - 2);
    m.extend_from_slice(b"\r\n");
    m
}

async fn smtpc_rate(addr: SocketAddr, messages: usize) -> anyhow::Result<f64> {
    let dir = TempDir(std::env::temp_dir().join(format!("smtpc-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let cdb = Cdb::open(dir.0.join("cdb"), CdbOptions::default())?;
    let content = TransactionId {
        counter: 1,
        process: 0,
    };
    let mut w = cdb.create(smx_store::id::TransactionId::new(
        content.counter,
        content.process,
    ))?;
    w.write(&message())?;
    w.commit()?;
    let cfg = ClientConfig {
        hostname: "smtpc-bench.invalid".into(),
        max_idle_sessions: CONNECTIONS,
        max_transactions_per_session: u32::MAX,
        ..ClientConfig::default()
    };
    let deliverer = Arc::new(Deliverer::new(cfg, cdb));
    let request = Delivery {
        da_ta: DaTransactionId {
            process: 1,
            counter: 1,
            index: 0,
        },
        content,
        size: SIZE as u64,
        sender: "sender@example.org".into(),
        params: String::new(),
        recipients: vec![DeliveryRecipient {
            index: 0,
            address: "rcpt@example.org".into(),
            params: String::new(),
        }],
        destination: Destination::Hosts {
            protocol: Protocol::Esmtp,
            targets: vec![Target {
                name: "sink".into(),
                addr: addr.ip(),
                port: Some(addr.port()),
                tls_requirements: None,
            }],
        },
        tls_requirements: None,
    };
    let left = Arc::new(AtomicUsize::new(messages));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let d = Arc::clone(&deliverer);
        let left = Arc::clone(&left);
        let failed = Arc::clone(&failed);
        let req = request.clone();
        tasks.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                let r = d.deliver(&req).await;
                if r.recipients
                    .iter()
                    .any(|x| x.status != RecipientStatus::Delivered)
                {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r?;
    }
    let secs = start.elapsed().as_secs_f64();
    deliverer.close_idle().await;
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 {
        bail!("{failed} deliveries failed");
    }
    Ok(messages as f64 / secs)
}

fn main() -> anyhow::Result<()> {
    let messages: usize = match std::env::args().nth(1) {
        Some(a) => a.parse().context("MESSAGES must be a number")?,
        None => 20_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (_sink, addr) = start_sink()?;
    println!(
        "smtpc benchmark: {messages} messages of {SIZE} bytes, {CONNECTIONS} connections, into smtp-sink at {addr}"
    );
    // Warm up both sides briefly, then measure.
    smtp_source_rate(addr, 1000.min(messages))?;
    rt.block_on(smtpc_rate(addr, 1000.min(messages)))?;
    let reference = smtp_source_rate(addr, messages)?;
    let ours = rt.block_on(smtpc_rate(addr, messages))?;
    println!("smtp-source -> smtp-sink: {reference:10.0} messages/s");
    println!("smtpc       -> smtp-sink: {ours:10.0} messages/s");
    println!("ratio smtpc / smtp-source: {:.2}", ours / reference);
    Ok(())
}
