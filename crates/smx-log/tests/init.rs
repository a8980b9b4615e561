//! `init` installs a global subscriber, so it gets a test binary of its own.

use smx_log::{Destination, LogError, LogSettings};

#[test]
fn init_installs_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smar.log");
    let settings = LogSettings {
        component: "smar".into(),
        level: 9,
        destination: Destination::File(path.clone()),
    };
    let handle = smx_log::init(&settings).unwrap();
    tracing::info!(map = "aliases", "loaded");
    tracing::debug!("not at log_level 9");
    handle.reopen().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    let want_suffix = format!(
        " smar[{}]: sev=INFO, map=aliases, msg=loaded\n",
        std::process::id()
    );
    assert!(text.ends_with(&want_suffix), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");

    assert!(matches!(
        smx_log::init(&settings),
        Err(LogError::AlreadyInitialised)
    ));
}
