//! The lda as an LMTP server: Python's smtplib.LMTP as the client, and a
//! raw client for the exact replies.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use smx_lda::{Lda, Users};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

fn start(dir: &Path, max: u64) -> (std::path::PathBuf, tokio::sync::oneshot::Sender<()>) {
    let sock = dir.join("lmtp.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let lda = Arc::new(Lda::new(
        "lda.test.example",
        Users::new(dir.join("mail"), None),
        max,
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(lda.serve_unix(listener, async move {
        let _ = rx.await;
    }));
    (sock, tx)
}

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

async fn conversation(sock: &Path, send: &[u8], replies: usize) -> String {
    let mut s = UnixStream::connect(sock).await.unwrap();
    s.write_all(send).await.unwrap();
    let mut got = String::new();
    let mut buf = [0u8; 4096];
    while got.matches("\r\n").count() < replies {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

#[tokio::test]
async fn per_recipient_replies_and_maildir() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _stop) = start(dir.path(), 1 << 20);
    std::fs::create_dir_all(dir.path().join("mail/bob/Maildir/.lists")).unwrap();
    let msg = b"LHLO client\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<alice@localhost>\r\nRCPT TO:<-evil@localhost>\r\nRCPT TO:<Bob+lists@localhost>\r\nRCPT TO:<bob+nofolder@localhost>\r\nDATA\r\nSubject: t\r\n\r\n..x\r\n.\r\nQUIT\r\n";
    let got = conversation(&sock, msg, 18).await;
    let lines: Vec<&str> = got.split("\r\n").collect();
    let codes: Vec<&str> = lines
        .iter()
        .filter(|l| l.len() >= 4)
        .map(|l| &l[..4])
        .collect();
    assert_eq!(
        codes,
        [
            "220 ", "250-", "250-", "250-", "250-", "250-", "250 ", "250 ", "250 ", "550 ", "250 ",
            "250 ", "354 ", "250 ", "250 ", "250 ", "221 "
        ],
        "{got}"
    );
    let alice = files(&dir.path().join("mail/alice/Maildir/new"));
    assert_eq!(alice.len(), 1);
    assert_eq!(
        std::fs::read(&alice[0]).unwrap(),
        b"Return-Path: <s@x.example>\r\nDelivered-To: alice@localhost\r\nSubject: t\r\n\r\n.x\r\n"
    );
    assert_eq!(
        files(&dir.path().join("mail/bob/Maildir/.lists/new")).len(),
        1
    );
    assert_eq!(files(&dir.path().join("mail/bob/Maildir/new")).len(), 1);
    assert!(!dir.path().join("mail/-evil").exists());
}

#[tokio::test]
async fn too_big_is_refused_per_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _stop) = start(dir.path(), 100);
    let mut msg =
        b"LHLO c\r\nMAIL FROM:<s@x.example>\r\nRCPT TO:<a@h>\r\nRCPT TO:<b@h>\r\nDATA\r\n".to_vec();
    msg.extend(std::iter::repeat_n(b'x', 200));
    msg.extend_from_slice(b"\r\n.\r\nQUIT\r\n");
    let got = conversation(&sock, &msg, 14).await;
    assert_eq!(got.matches("552 5.3.4").count(), 2, "{got}");
    assert!(files(&dir.path().join("mail/a/Maildir/new")).is_empty());
}

#[tokio::test]
async fn python_lmtp_client() {
    let dir = tempfile::tempdir().unwrap();
    let (sock, _stop) = start(dir.path(), 1 << 20);
    let script = format!(
        r#"
import smtplib
s = smtplib.LMTP("{sock}")
refused = s.sendmail("s@x.example", ["carol@localhost", "dave@localhost", "-bad@localhost"], b"Subject: py\r\n\r\nhi\r\n")
assert list(refused) == ["-bad@localhost"], refused
s.quit()
print("ok")
"#,
        sock = sock.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .args(["-c", &script])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap()
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("ok"), "{text}");
    for u in ["carol", "dave"] {
        let f = files(&dir.path().join(format!("mail/{u}/Maildir/new")));
        assert_eq!(f.len(), 1, "{u}");
        assert!(
            std::fs::read_to_string(&f[0])
                .unwrap()
                .ends_with("Subject: py\r\n\r\nhi\r\n")
        );
    }
}
