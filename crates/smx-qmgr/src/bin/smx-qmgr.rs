//! `smx-qmgr <configuration file>`: runs the queue manager alone, without
//! mcp, until SIGTERM or SIGINT (then it stops cleanly: see
//! `smx_qmgr::process`). smar and smtpc are expected on their configured
//! sockets. Used to debug a queue, and by the crash test, which kills it
//! with SIGKILL.
//!
//! Log output goes to standard error. Exit status: 0 after a clean stop,
//! 1 when the configuration cannot be read or qmgr fails, 2 on a usage
//! error.

use std::process::ExitCode;

use smx_qmgr::Settings;
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: smx-qmgr <configuration file>");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("smx-qmgr: {}: {e}", path.to_string_lossy());
            return ExitCode::from(1);
        }
    };
    let config = match smx_conf::load_str(&path.to_string_lossy(), &text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("smx-qmgr: {e}");
            return ExitCode::from(1);
        }
    };
    let settings = Settings::from_config(&config);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smx-qmgr: runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("smx-qmgr: signals: {e}");
                return Ok(());
            }
        };
        smx_qmgr::serve(settings, async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
        .await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smx-qmgr: {e}");
            ExitCode::from(1)
        }
    }
}
