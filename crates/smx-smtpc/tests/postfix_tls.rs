//! STARTTLS against Postfix's smtpd, set up by the test in a temporary
//! directory (its own configuration, queue and log; mail is discarded)
//! with a certificate made by rcgen.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::tls_peer::*;
use common::{Store, deliverer, delivery, free_port, message, statuses};
use smx_ipc::qmgr_smtpc::{Destination, Protocol, RecipientStatus::*, Target};
use smx_smtpc::ClientConfig;
use smx_smtpc::tls::TlsRequirements;

/// A Postfix instance, stopped on drop.
struct Postfix {
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Postfix {
    fn conf(&self) -> PathBuf {
        self.dir.path().join("conf")
    }

    fn start(cert: &Path, key: &Path) -> Postfix {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for sub in ["conf", "queue", "data"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let status = Command::new("chown")
            .arg("postfix")
            .arg(d.join("data"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::copy(cert, d.join("cert.pem")).unwrap();
        std::fs::copy(key, d.join("key.pem")).unwrap();
        for _ in 0..10 {
            let port = free_port();
            let main = format!(
                "compatibility_level = 3.6\nqueue_directory = {d}/queue\n\
                 data_directory = {d}/data\nmail_owner = postfix\nsetgid_group = postdrop\n\
                 inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n\
                 myhostname = mx.test.example\nmydestination =\nmynetworks = 127.0.0.0/8\n\
                 default_transport = discard\nrelay_transport = discard\n\
                 local_transport = discard\n\
                 smtpd_tls_cert_file = {d}/cert.pem\nsmtpd_tls_key_file = {d}/key.pem\n\
                 smtpd_tls_security_level = may\n\
                 maillog_file = {d}/maillog\nmaillog_file_prefixes = {d}\n",
                d = d.display()
            );
            std::fs::write(d.join("conf/main.cf"), main).unwrap();
            let master = format!(
                "127.0.0.1:{port} inet n - n - - smtpd\n\
                 pickup unix n - n 60 1 pickup\n\
                 cleanup unix n - n - 0 cleanup\n\
                 qmgr unix n - n 300 1 qmgr\n\
                 rewrite unix - - n - - trivial-rewrite\n\
                 bounce unix - - n - 0 bounce\n\
                 defer unix - - n - 0 bounce\n\
                 trace unix - - n - 0 bounce\n\
                 verify unix - - n - 1 verify\n\
                 flush unix n - n 1000? 0 flush\n\
                 proxymap unix - - n - - proxymap\n\
                 error unix - - n - - error\n\
                 retry unix - - n - - error\n\
                 discard unix - - n - - discard\n\
                 anvil unix - - n - 1 anvil\n\
                 scache unix - - n - 1 scache\n\
                 postlog unix-dgram n - n - 1 postlogd\n\
                 tlsmgr unix - - n 1000? 1 tlsmgr\n"
            );
            std::fs::write(d.join("conf/master.cf"), master).unwrap();
            let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port);
            let postfix = |cmd: &str| {
                Command::new("/usr/sbin/postfix")
                    .arg("-c")
                    .arg(d.join("conf"))
                    .arg(cmd)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if postfix("start") && wait_for(addr) {
                return Postfix { dir, addr };
            }
            // The port was taken (or start failed): stop what may run.
            postfix("stop");
        }
        panic!("postfix did not start");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("maillog")).unwrap_or_default()
    }
}

fn wait_for(addr: SocketAddr) -> bool {
    for _ in 0..200 {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = Command::new("/usr/sbin/postfix")
            .arg("-c")
            .arg(self.conf())
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

async fn send(pf: &Postfix, cfg: ClientConfig) -> smx_ipc::qmgr_smtpc::RecipientStatus {
    let mut store = Store::new();
    let c = store.put(&message(3000));
    let d = deliverer(
        &store,
        ClientConfig {
            reuse_connection: false,
            ..cfg
        },
    );
    let dest = Destination::Hosts {
        protocol: Protocol::Esmtp,
        targets: vec![Target {
            name: HOST.into(),
            addr: pf.addr.ip(),
            port: Some(pf.addr.port()),
            tls_requirements: None,
        }],
    };
    let r = d
        .deliver(&delivery(
            c,
            "s@example.org",
            "",
            &[("r@remote.example", "")],
            dest,
        ))
        .await;
    statuses(&r)[0]
}

#[tokio::test]
async fn starttls_with_postfix() {
    let pki = pki();
    let pf = Postfix::start(&pki.good.cert, &pki.good.key);
    assert_eq!(
        send(&pf, client(&pki, false, TlsRequirements::default())).await,
        Delivered
    );
    assert_eq!(send(&pf, client(&pki, false, verified())).await, Delivered);
    // Another CA: the certificate does not verify.
    let other = pki_other();
    assert_eq!(send(&pf, client(&other, false, verified())).await, TempFail);
    let cn = TlsRequirements {
        common_name: vec!["mx.test.example".into()],
        min_cipher_bits: 128,
        ..TlsRequirements::default()
    };
    assert_eq!(send(&pf, client(&other, false, cn)).await, Delivered);
    // Postfix's view: each session used STARTTLS.
    let mut log = String::new();
    for _ in 0..100 {
        log = pf.log();
        if log.matches("starttls=1").count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(log.matches("starttls=1").count(), 4, "{log}");
    assert_eq!(log.matches("status=sent").count(), 3, "{log}");
}

fn pki_other() -> Pki {
    pki()
}
