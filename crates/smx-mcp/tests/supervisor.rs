//! The supervisor with real child processes (sh and python3 scripts).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use smx_conf::model::common::StartAction;
use smx_mcp::{Component, Kind, Listen, Supervisor, Timing};
use tokio::io::AsyncReadExt;

fn timing() -> Timing {
    Timing {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        stable: Duration::from_secs(10),
        stop_grace: Duration::from_secs(1),
    }
}

fn sh(name: &str, dir: &Path, script: &str) -> Component {
    Component {
        name: name.into(),
        kind: Kind::Service,
        program: PathBuf::from("/bin/sh"),
        argv0: "sh".into(),
        args: vec!["-c".into(), script.into()],
        pass_id: None,
        processes: 1,
        working_directory: dir.to_path_buf(),
        start_action: StartAction::Wait,
        listen: None,
        pass_fd_socket: None,
        user: None,
        group: None,
        restart_dependencies: Vec::new(),
    }
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

async fn run_for(components: Vec<Component>, t: Duration) {
    let sup = Supervisor::new(components, timing());
    tokio::time::timeout(t + Duration::from_secs(10), sup.run(tokio::time::sleep(t)))
        .await
        .unwrap()
        .unwrap();
}

fn alive(pid: i32) -> bool {
    // A zombie counts as gone: its status in /proc is Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test]
async fn crashing_process_restarts_with_backoff() {
    let d = tempfile::tempdir().unwrap();
    let c = sh("crash", d.path(), "echo start >> starts; exit 1");
    run_for(vec![c], Duration::from_millis(1500)).await;
    let n = lines(&d.path().join("starts"));
    // 50, 100, 200, 200, ... ms: about 8 starts in 1.5 s; never a spin.
    assert!((4..=14).contains(&n), "{n} starts");
}

#[tokio::test]
async fn configuration_errors_are_not_restarted() {
    let d = tempfile::tempdir().unwrap();
    let c = sh("badconf", d.path(), "echo start >> starts; exit 78");
    run_for(vec![c], Duration::from_millis(800)).await;
    assert_eq!(lines(&d.path().join("starts")), 1);
}

#[tokio::test]
async fn dependencies_restart_together_and_stop_kills_all() {
    let d = tempfile::tempdir().unwrap();
    let mut a = sh("a", d.path(), "echo a >> a.starts; sleep 0.4; exit 1");
    a.restart_dependencies = vec!["b".into()];
    let b = sh("b", d.path(), "echo $$ >> b.pids; exec sleep 100");
    // c ignores SIGTERM: killed after the grace time.
    let c = sh(
        "c",
        d.path(),
        "trap '' TERM; echo $$ > c.pid; while :; do sleep 0.1; done",
    );
    let started = std::time::Instant::now();
    run_for(vec![a, b, c], Duration::from_millis(2000)).await;
    assert!(started.elapsed() < Duration::from_secs(6));
    let a_starts = lines(&d.path().join("a.starts"));
    let b_pids: Vec<i32> = std::fs::read_to_string(d.path().join("b.pids"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(a_starts >= 2, "{a_starts}");
    assert!(b_pids.len() >= 2, "b restarted with a: {b_pids:?}");
    for pid in b_pids {
        assert!(!alive(pid), "b ({pid}) left running");
    }
    let c_pid: i32 = std::fs::read_to_string(d.path().join("c.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(!alive(c_pid), "c ({c_pid}) survived SIGKILL");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn read_from(port: u16) -> String {
    for _ in 0..100 {
        if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut out = String::new();
            let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
            if !out.is_empty() {
                return out;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    String::new()
}

fn python(name: &str, dir: &Path, script: &str) -> Component {
    Component {
        program: PathBuf::from("python3"),
        argv0: "python3".into(),
        args: vec!["-c".into(), script.into()],
        ..sh(name, dir, "")
    }
}

#[tokio::test]
async fn pass_accept_and_nostartaccept_sockets() {
    let d = tempfile::tempdir().unwrap();
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let mut pass = python(
        "pass",
        d.path(),
        r#"
import os, socket
open("pass.starts", "a").write("x\n")
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
c.connect(os.environ["SMX_FD_SOCKET"])
msg, fds, flags, addr = socket.recv_fds(c, 1, 1)
l = socket.socket(fileno=fds[0])
while True:
    s, _ = l.accept()
    s.sendall(b"passed " + os.environ["SMX_COMPONENT"].encode() + b"\n")
    s.close()
"#,
    );
    pass.start_action = StartAction::Pass;
    pass.listen = Some(Listen::Inet(format!("127.0.0.1:{p1}").parse().unwrap()));
    pass.pass_fd_socket = Some(d.path().join("fd/passfd"));
    let mut accept = python(
        "accept",
        d.path(),
        r#"
import socket
open("accept.starts", "a").write("x\n")
l = socket.socket(fileno=0)
while True:
    s, _ = l.accept()
    s.sendall(b"inherited\n")
    s.close()
"#,
    );
    accept.start_action = StartAction::Accept;
    accept.listen = Some(Listen::Inet(format!("127.0.0.1:{p2}").parse().unwrap()));
    let mut nostart = sh("nostart", d.path(), "echo per-connection");
    nostart.start_action = StartAction::NoStartAccept;
    nostart.listen = Some(Listen::Inet(format!("127.0.0.1:{p3}").parse().unwrap()));
    let sup = Supervisor::new(vec![pass, accept, nostart], timing());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(sup.run(async move {
        let _ = rx.await;
    }));
    assert_eq!(read_from(p1).await, "passed pass\n");
    assert_eq!(read_from(p2).await, "inherited\n");
    assert_eq!(read_from(p3).await, "per-connection\n");
    assert_eq!(read_from(p3).await, "per-connection\n");
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", p1))
            .await
            .is_err(),
        "sockets closed at stop"
    );
    // The sockets arrived in blocking mode: the children never failed.
    assert_eq!(lines(&d.path().join("pass.starts")), 1);
    assert_eq!(lines(&d.path().join("accept.starts")), 1);
}

/// The credentials of a user are its uid, the configured group (default:
/// its primary group) and the groups `id -G` lists for it.
#[test]
fn credentials_follow_the_group_database() {
    for user in ["root", "nobody"] {
        let c = smx_mcp::supervisor::credentials(user, None).unwrap();
        let id = |flag: &str| -> Vec<u32> {
            let o = std::process::Command::new("id")
                .args([flag, user])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(|w| w.parse().unwrap())
                .collect()
        };
        assert_eq!(vec![c.uid], id("-u"), "{user}");
        assert_eq!(vec![c.gid], id("-g"), "{user}");
        let (mut got, mut want) = (c.groups.clone(), id("-G"));
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{user}");
    }
    let c = smx_mcp::supervisor::credentials("nobody", Some("root")).unwrap();
    assert_eq!(c.gid, 0);
    assert!(c.groups.contains(&0));
    assert!(matches!(
        smx_mcp::supervisor::credentials("smx_no_such_user_x", None),
        Err(smx_mcp::McpError::NoSuchUser(_))
    ));
    assert!(matches!(
        smx_mcp::supervisor::credentials("nobody", Some("smx_no_such_group_x")),
        Err(smx_mcp::McpError::NoSuchGroup(_))
    ));
}

/// As root, a component with `user` runs with that user's uid, gid and
/// groups (all four uids of /proc/self/status); without root the user is
/// ignored.
#[tokio::test]
async fn processes_run_as_the_configured_user() {
    let d = tempfile::tempdir().unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    }
    let mut c = sh(
        "ids",
        d.path(),
        "grep -E '^(Uid|Gid|Groups):' /proc/self/status > ids.tmp; mv ids.tmp ids; exec sleep 100",
    );
    c.user = Some("nobody".into());
    run_for(vec![c], Duration::from_millis(700)).await;
    let text = std::fs::read_to_string(d.path().join("ids")).unwrap();
    let field = |name: &str| -> Vec<u32> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .split_whitespace()
            .map(|w| w.parse().unwrap())
            .collect()
    };
    let root = nix::unistd::geteuid().is_root();
    let want = if root {
        smx_mcp::supervisor::credentials("nobody", None).unwrap()
    } else {
        smx_mcp::supervisor::Credentials {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
            groups: Vec::new(),
        }
    };
    assert_eq!(field("Uid:"), vec![want.uid; 4], "{text}");
    assert_eq!(field("Gid:"), vec![want.gid; 4], "{text}");
    if root {
        let (mut got, mut groups) = (field("Groups:"), want.groups.clone());
        got.sort_unstable();
        groups.sort_unstable();
        assert_eq!(got, groups, "{text}");
    }
}
