//! A small rustls SMTP server for STARTTLS tests, and test certificates
//! made by rcgen: a CA, a good server certificate, expired, wrong-name and
//! self-signed ones, and a client certificate.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Store, config, deliverer, delivery, message, statuses};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use smx_conf::model::common::TlsFiles;
use smx_ipc::qmgr_smtpc::{
    Destination, Protocol, RecipientResult, RequirementsViolation as Violation, Target,
    TlsRequirements as IpcTlsRequirements,
};
use smx_smtpc::ClientConfig;
use smx_smtpc::tls::{TlsClient, TlsRequirements};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

pub const HOST: &str = "mx.test.example";

pub struct Pem {
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub struct Pki {
    pub _dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub good: Pem,
    pub expired: Pem,
    pub wrong_name: Pem,
    pub self_signed: Pem,
    pub client: Pem,
}

pub fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, cert: String, key: String| {
        let c = d.join(format!("{name}.crt"));
        let k = d.join(format!("{name}.key"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key).unwrap();
        Pem { cert: c, key: k }
    };
    let params = |cn: &str| {
        let mut p = CertificateParams::new(vec![cn.to_string()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "smtpc test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let signed = |p: CertificateParams| {
        let k = KeyPair::generate().unwrap();
        let c = p.signed_by(&k, &ca, &ca_key).unwrap();
        (c.pem(), k.serialize_pem())
    };
    let (gc, gk) = signed(params(HOST));
    let mut exp = params(HOST);
    exp.not_before = rcgen::date_time_ymd(2000, 1, 1);
    exp.not_after = rcgen::date_time_ymd(2001, 1, 1);
    let (ec, ek) = signed(exp);
    let (wc, wk) = signed(params("other.example"));
    let (cc, ck) = signed(params("client.example"));
    let sk = KeyPair::generate().unwrap();
    let sc = params(HOST).self_signed(&sk).unwrap();
    let ca_path = d.join("ca.crt");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    Pki {
        ca: ca_path,
        good: write("good", gc, gk),
        expired: write("expired", ec, ek),
        wrong_name: write("wrong", wc, wk),
        self_signed: write("self", sc.pem(), sk.serialize_pem()),
        client: write("client", cc, ck),
        _dir: dir,
    }
}

/// How the test server behaves.
#[derive(Clone)]
pub struct Opts {
    /// Offer STARTTLS with this certificate.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// Ask for client certificates signed by this CA.
    pub client_ca: Option<PathBuf>,
    /// Answer 220 to STARTTLS, then send garbage instead of a handshake.
    pub break_handshake: bool,
    /// Send an extra reply right after the 220 (response injection).
    pub inject: bool,
}

#[derive(Debug, Default, Clone)]
pub struct Conn {
    pub tls: bool,
    pub client_cert: bool,
    pub delivered: bool,
    /// The client said QUIT.
    pub quit: bool,
}

pub struct Peer {
    pub addr: SocketAddr,
    pub conns: Arc<Mutex<Vec<Conn>>>,
    /// Connections accepted so far (open or ended).
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Peer {
    pub fn accepted(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn target(&self) -> Target {
        Target {
            name: HOST.into(),
            addr: self.addr.ip(),
            port: Some(self.addr.port()),
            tls_requirements: None,
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let b = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca).unwrap() {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .unwrap();
            b.with_client_cert_verifier(v)
        }
        None => b.with_no_client_auth(),
    };
    tokio_rustls::TlsAcceptor::from(Arc::new(b.with_single_cert(chain, key).unwrap()))
}

async fn read_line(s: &mut Box<dyn Io>, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&buf[..i]).to_string();
            buf.drain(..i + 2);
            return Some(line);
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// One SMTP dialogue; returns the stream when the client asked for TLS.
async fn dialogue(
    mut s: Box<dyn Io>,
    tls: bool,
    opts: &Opts,
    rec: &mut Conn,
) -> Option<Box<dyn Io>> {
    let mut buf = Vec::new();
    loop {
        let line = read_line(&mut s, &mut buf).await?;
        let up = line.to_ascii_uppercase();
        let reply: &[u8] = if up.starts_with("EHLO") {
            if opts.cert.is_some() && !tls {
                b"250-mx.test.example hello\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            } else {
                b"250-mx.test.example hello\r\n250 8BITMIME\r\n"
            }
        } else if up == "STARTTLS" && opts.cert.is_some() && !tls {
            if opts.inject {
                s.write_all(b"220 go ahead\r\n250 injected\r\n")
                    .await
                    .ok()?;
            } else {
                s.write_all(b"220 go ahead\r\n").await.ok()?;
            }
            if opts.break_handshake {
                // Wait for the ClientHello, then answer with garbage.
                let mut hello = [0u8; 512];
                let n = s.read(&mut hello).await.ok()?;
                if n == 0 {
                    return None;
                }
                s.write_all(b"this is no TLS server hello\r\n").await.ok()?;
                return None;
            }
            return Some(s);
        } else if up == "DATA" {
            s.write_all(b"354 go\r\n").await.ok()?;
            loop {
                if buf.windows(5).any(|w| w == b"\r\n.\r\n") {
                    let i = buf.windows(5).position(|w| w == b"\r\n.\r\n").unwrap();
                    buf.drain(..i + 5);
                    break;
                }
                let mut tmp = [0u8; 65536];
                let n = s.read(&mut tmp).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..n]);
            }
            rec.delivered = true;
            b"250 2.0.0 queued\r\n"
        } else if up == "QUIT" {
            rec.quit = true;
            let _ = s.write_all(b"221 bye\r\n").await;
            return None;
        } else {
            b"250 ok\r\n"
        };
        s.write_all(reply).await.ok()?;
    }
}

async fn serve_one(stream: tokio::net::TcpStream, opts: Opts, conns: Arc<Mutex<Vec<Conn>>>) {
    let mut rec = Conn::default();
    let mut s: Box<dyn Io> = Box::new(stream);
    if s.write_all(b"220 mx.test.example ESMTP\r\n").await.is_ok()
        && let Some(plain) = dialogue(s, false, &opts, &mut rec).await
        && let Some((cert, key)) = &opts.cert
    {
        let acc = acceptor(cert, key, opts.client_ca.as_deref());
        if let Ok(t) = acc.accept(plain).await {
            rec.tls = true;
            rec.client_cert = t.get_ref().1.peer_certificates().is_some();
            s = Box::new(t);
            dialogue(s, true, &opts, &mut rec).await;
        }
    }
    conns.lock().unwrap().push(rec);
}

pub async fn peer(opts: Opts) -> Peer {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(Mutex::new(Vec::new()));
    let c2 = Arc::clone(&conns);
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let a2 = Arc::clone(&accepted);
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            a2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let opts = opts.clone();
            let conns = Arc::clone(&c2);
            tokio::spawn(async move {
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), serve_one(s, opts, conns)).await;
            });
        }
    });
    Peer {
        addr,
        conns,
        accepted,
        task,
    }
}

pub fn opts(cert: Option<&Pem>) -> Opts {
    Opts {
        cert: cert.map(|p| (p.cert.clone(), p.key.clone())),
        client_ca: None,
        break_handshake: false,
        inject: false,
    }
}

pub fn client(pki: &Pki, client_cert: bool, req: TlsRequirements) -> ClientConfig {
    let files = TlsFiles {
        ca_cert_file: Some(pki.ca.clone()),
        cert_file: client_cert.then(|| pki.client.cert.clone()),
        key_file: client_cert.then(|| pki.client.key.clone()),
        ..TlsFiles::default()
    };
    ClientConfig {
        tls: Some(TlsClient::load(&files).unwrap()),
        tls_requirements: req,
        ..config()
    }
}

/// Delivers one message to `p`; returns the status and the server's
/// record of each connection, after the connections ended.
pub async fn deliver(
    p: &Peer,
    cfg: ClientConfig,
) -> (smx_ipc::qmgr_smtpc::RecipientStatus, Vec<Conn>) {
    let mut store = Store::new();
    let c = store.put(&message(2000));
    let d = deliverer(
        &store,
        ClientConfig {
            reuse_connection: false,
            read_quit_reply: true,
            ..cfg
        },
    );
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![Target {
            name: HOST.into(),
            addr: p.addr.ip(),
            port: Some(p.addr.port()),
            tls_requirements: None,
        }],
    };
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            &[("r@example.org", "")],
            dest,
        ))
        .await;
    let status = statuses(&r)[0];
    // The server records a connection when it ends.
    for _ in 0..200 {
        if !p.conns.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    (status, p.conns.lock().unwrap().clone())
}

pub fn verified() -> TlsRequirements {
    TlsRequirements {
        verified: true,
        ..TlsRequirements::default()
    }
}

/// Delivers one message with `req` in the delivery to the peers' targets
/// in order; returns the recipient's result.
pub async fn deliver_with(
    d: &smx_smtpc::Deliverer,
    store: &mut Store,
    peers: &[&Peer],
    req: Option<IpcTlsRequirements>,
) -> RecipientResult {
    let c = store.put(&message(2000));
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: peers.iter().map(|p| p.target()).collect(),
    };
    let mut request = delivery(c, "s@example.org", "", &[("r@example.org", "")], dest);
    request.tls_requirements = req;
    d.deliver(&request).await.recipients.remove(0)
}

/// The requirements of a `smtpc_rcpt_conf:` map value, as qmgr puts
/// them into a delivery.
pub fn from_map(value: &str) -> IpcTlsRequirements {
    let conf = smx_conf::SessionConf::parse(value).unwrap();
    let t = conf.tls.unwrap();
    IpcTlsRequirements {
        verified: t.flags.verified,
        encrypted: t.flags.encrypted,
        common_name: t.common_name,
        cert_subject: t.cert_subject,
        cert_issuer: t.cert_issuer,
        min_cipher_bits: t.min_cipher_bits,
        violation: t.requirements_violation.map(|v| match v {
            smx_conf::model::smtps::RequirementsViolation::PermFail => Violation::PermFail,
            smx_conf::model::smtps::RequirementsViolation::TempFail => Violation::TempFail,
            smx_conf::model::smtps::RequirementsViolation::Abort => Violation::Abort,
        }),
    }
}

/// Waits until `n` connections of `p` ended (bounded).
pub async fn ended(p: &Peer, n: usize) -> Vec<Conn> {
    for _ in 0..300 {
        if p.conns.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    p.conns.lock().unwrap().clone()
}
