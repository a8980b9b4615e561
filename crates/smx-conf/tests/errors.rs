//! Every kind of syntax and semantic error gives the expected
//! `file:line:column: message`.

fn errors(text: &str) -> Vec<String> {
    match smx_conf::load_str("e.conf", text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

fn check(cases: &[(&str, &[&str])]) {
    let mut failed = Vec::new();
    for (text, want) in cases {
        let got = errors(text);
        if got != *want {
            failed.push(format!(
                "input:\n{text}\n  want: {want:#?}\n  got:  {got:#?}"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn syntax_errors() {
    check(&[
        (
            "qmgr { AQ_max_entries = 10 }\nsmtps {",
            &["e.conf:2:8: expected '}' before end of input"],
        ),
        (
            "hostname = a.b",
            &["e.conf:1:15: expected ';' after the value, found end of input"],
        ),
        (
            "qmgr {\n  log_level = 9\n  debug_level = 1;\n}",
            &[
                "e.conf:3:3: expected ';' before 'debug_level' (missing ';' at the end of the previous value?)",
            ],
        ),
        (
            "smtps { flags = { access, ; }",
            &["e.conf:1:27: expected a list value or '}', found ';'"],
        ),
        (
            "hostname = \"x;\n",
            &[
                "e.conf:1:12: unterminated string: a quoted string cannot contain a line break (split it into \"...\" \"...\" parts instead)",
            ],
        ),
        (
            "{ a = 1; }",
            &["e.conf:1:1: expected an option name or a section keyword, found '{'"],
        ),
    ]);
}

#[test]
fn unknown_names() {
    check(&[
        (
            "qmgr { io_timeout = 5; }",
            &["e.conf:1:8: unknown option 'io_timeout' in 'qmgr'"],
        ),
        (
            "smtps { io_timout = 5; }",
            &["e.conf:1:9: unknown option 'io_timout' in 'smtps', did you mean 'io_timeout'?"],
        ),
        (
            "queue_dir = /x;",
            &["e.conf:1:1: unknown option 'queue_dir' in the top level"],
        ),
        (
            "qmgr { IBDB { sizes = 1MB; } }",
            &["e.conf:1:15: unknown option 'sizes' in 'qmgr'/'IBDB', did you mean 'size'?"],
        ),
        (
            "smar { dns_servers { } }",
            &["e.conf:1:8: unknown section 'dns_servers' in 'smar'"],
        ),
        (
            "mcp { }",
            &["e.conf:1:1: unknown section 'mcp' in the top level"],
        ),
        (
            "qmgr { ibdb = 5; }",
            &["e.conf:1:8: 'ibdb' in 'qmgr' is a section (name { ... }), not an option"],
        ),
        (
            "qmgr { log_level { } }",
            &["e.conf:1:8: 'log_level' in 'qmgr' is an option (name = value;), not a section"],
        ),
    ]);
}

#[test]
fn duplicates_and_section_names() {
    check(&[
        (
            "qmgr { log_level = 1;\n log_level = 2; }",
            &["e.conf:2:2: 'log_level' is set twice in 'qmgr' (first at line 1)"],
        ),
        (
            "qmgr { }\nqmgr { }",
            &["e.conf:2:1: 'qmgr' is set twice in the top level (first at line 1)"],
        ),
        (
            "qmgr main { }",
            &["e.conf:1:6: section 'qmgr' in the top level takes no name (found 'main')"],
        ),
        (
            "smar { map { type = passwd; } }",
            &["e.conf:1:8: section 'map' in 'smar' needs a name (map NAME { ... })"],
        ),
        (
            "smar { map a { type = passwd; } map A { type = passwd; } }",
            &["e.conf:1:33: section 'map A' in 'smar' is defined twice (first at line 1)"],
        ),
        (
            "smar { dnsbl x { domain = d; tag = t; } }",
            &["e.conf:1:8: section 'dnsbl' in 'smar' takes no name (found 'x')"],
        ),
        (
            "smtps { id = 0; }\nsmtps { id = 1; }",
            &[
                "e.conf:2:1: a second unnamed 'smtps' section in the top level (first at line 1); give each a unique name",
            ],
        ),
    ]);
}

#[test]
fn invalid_values() {
    check(&[
        (
            "qmgr { AQ_max_entries = lots; }",
            &[
                "e.conf:1:25: invalid value for 'AQ_max_entries': expected a number (decimal, 0x hexadecimal or 0 octal), found 'lots'",
            ],
        ),
        (
            "qmgr { AQ_max_entries = 0x1FFFFFFFF; }",
            &[
                "e.conf:1:25: invalid value for 'AQ_max_entries': 8589934591 is out of range (at most 4294967295)",
            ],
        ),
        (
            "smtps { id = 256; }",
            &["e.conf:1:14: invalid value for 'id': 256 is out of range (at most 255)"],
        ),
        (
            "smtps { listen_socket { type = inet; port = 089; } }",
            &[
                "e.conf:1:45: invalid value for 'port': expected a number (decimal, 0x hexadecimal or 0 octal), found '089'",
            ],
        ),
        (
            "qmgr { retry_min_delay = 5x; }",
            &[
                "e.conf:1:26: invalid value for 'retry_min_delay': unknown time unit 'x' in '5x' (valid: w d h m s ms us)",
            ],
        ),
        (
            "qmgr { retry_min_delay = 5m 3; }",
            &[
                "e.conf:1:26: invalid value for 'retry_min_delay': expected a time such as '1h 5m 12s', a number in a sequence needs a unit (w d h m s ms us), found '5m 3'",
            ],
        ),
        (
            "smtps { max_message_size = 10TB; }",
            &[
                "e.conf:1:28: invalid value for 'max_message_size': unknown size unit 'TB' in '10TB' (valid: GB MB KB B)",
            ],
        ),
        (
            "qmgr { log { destination = printer; } }",
            &[
                "e.conf:1:28: invalid value for 'destination': expected one of stderr, file, syslog, found 'printer'",
            ],
        ),
        (
            "smtps { flags = { access, fast }; }",
            &[
                "e.conf:1:17: invalid value for 'flags': unknown flag 'fast' (valid: 8bitmime, access, delay_checks, delay_greylisting_error_until_DATA, greylisting, fullgreylisting, rcpt_conf, lmtp_does_not_imply_relaying, soft_bounce, require_EHLO_before_MAIL, strict_EHLO_checks, xverp, allow_data_before_greeting, prdr, lookup_session_conf, check_EHLO, starttls, auth, pipelining, chunking, dsn, smtputf8, enhancedstatuscodes, etrn, deliverby, vrfy, expn, background, serialize_accept; negate with a prefix not_ dont_ no_ - ! ~)",
            ],
        ),
        (
            "smtpc { connect_only_to = 300.1.1.1; }",
            &[
                "e.conf:1:27: invalid value for 'connect_only_to': expected an IPv4 or IPv6 address, found '300.1.1.1'",
            ],
        ),
        (
            "smtps { tarpit { exponent = fast; } }",
            &[
                "e.conf:1:29: invalid value for 'exponent': expected a decimal number such as 0.5, found 'fast'",
            ],
        ),
        (
            "smtps { allow_source_route = maybe; }",
            &[
                "e.conf:1:30: invalid value for 'allow_source_route': expected a boolean (true, on, 1, false, off, 0), found 'maybe'",
            ],
        ),
        (
            "qmgr { log_level = { 1, 2 }; }",
            &["e.conf:1:20: invalid value for 'log_level': expected number, found a list"],
        ),
    ]);
}

#[test]
fn cross_field_checks() {
    check(&[
        (
            "qmgr {\n  min_disk_space = 100MB;\n  ok_disk_space = 50MB;\n}",
            &[
                "e.conf:3:3: ok_disk_space (52428800 bytes) must be larger than min_disk_space (104857600 bytes)",
            ],
        ),
        (
            "qmgr { IQDB {\n max_cache_entries = 100;\n hash_table_entries = 100; } }",
            &[
                "e.conf:3:2: IQDB hash_table_entries (100) must be larger than max_cache_entries (100)",
            ],
        ),
        (
            "qmgr { AQ_max_entries = 500; }\nsmtps MX { max_recipients_per_transaction = 1000; }",
            &[
                "e.conf:1:8: qmgr AQ_max_entries (500) must be larger than max_recipients_per_transaction (1000) of smtps MX",
            ],
        ),
        (
            "qmgr {\n retry_min_delay = 2h;\n retry_max_delay = 1h; }",
            &[
                "e.conf:2:2: retry_min_delay (7200s) must not be larger than retry_max_delay (3600s)",
            ],
        ),
        (
            "smtps a { id = 3; }\nsmtps b { id = 3; }",
            &[
                "e.conf:2:11: smtps id 3 is used by two servers (smtps a and smtps b); each needs a unique id",
            ],
        ),
        (
            "smtps { max_recipients_per_transaction = 50; }",
            &[
                "e.conf:1:9: max_recipients_per_transaction (50) must be at least 100 (RFC 5321 4.5.3.1.8)",
            ],
        ),
        (
            "smtpc { start_action = pass; }",
            &[
                "e.conf:1:9: 'smtpc': start_action pass needs a listen_socket section",
                "e.conf:1:9: 'smtpc': start_action pass needs pass_fd_socket",
            ],
        ),
        (
            "smtps { listen_socket { type = unix; } }",
            &["e.conf:1:25: 'smtps'/'listen_socket': type unix needs a path"],
        ),
        (
            "qmgr { restart_dependencies = { smtps, mailer }; }",
            &[
                "e.conf:1:8: restart_dependencies names 'mailer', which is not a component or service",
            ],
        ),
        (
            "smar { mailertable { name = mt; } }",
            &["e.conf:1:22: map 'mt' is not declared (map mt { ... })"],
        ),
        (
            "smar { map s { type = sequence; maps = { s }; } }",
            &["e.conf:1:33: sequence map 's' refers to itself"],
        ),
        (
            "smar { map c { type = cdb; } }",
            &["e.conf:1:16: 'smar'/'map c': type cdb needs file"],
        ),
        (
            "smar { aliases { file = a.cdb; name = x; } map x { type = passwd; } }",
            &["e.conf:1:32: 'smar'/'aliases': set only one of file, name and entries"],
        ),
        (
            "smar { DNS { nameservers = { 1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4, 5.5.5.5 }; } }",
            &["e.conf:1:14: at most 4 nameservers are allowed, found 5"],
        ),
        (
            "smar { DNS { flags = { no_use_resolvconf }; } }",
            &["e.conf:1:14: no nameservers: set nameservers or keep use_resolvconf"],
        ),
        (
            "hostname = \"bad_host!\";",
            &["e.conf:1:1: hostname 'bad_host!' is not a valid domain name"],
        ),
        (
            "CDB_base_directory = /var/cdb;",
            &[
                "e.conf:1:1: CDB_base_directory must end with '/' (the subdirectory names are appended)",
            ],
        ),
        (
            "qmgr { log { facility = mailer; } }",
            &[
                "e.conf:1:14: unknown syslog facility 'mailer' (valid: kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0, local1, local2, local3, local4, local5, local6, local7)",
            ],
        ),
        (
            "smtps { protected_recipients { match_type = exact; } }",
            &["e.conf:1:9: protected_recipients needs allow_by with sender and/or client_ip"],
        ),
        (
            "smtps { flags = { greylisting }; }",
            &[
                "e.conf:1:9: greylisting in smtps needs a greylisting section in smar",
                "e.conf:1:9: greylisting needs the access flag",
            ],
        ),
        (
            "smtpc { max_processes = 2; min_processes = 3; }",
            &["e.conf:1:28: min_processes (3) is larger than max_processes (2)"],
        ),
        (
            "qmgr { max_processes = 2; }",
            &["e.conf:1:8: 'qmgr': this component must run as exactly one process"],
        ),
        (
            "service lmtpd { start_action = wait; }",
            &["e.conf:1:1: 'service lmtpd': a service needs path and arguments"],
        ),
        (
            "smtps { start_action = wait; daemon_address = { \"127.0.0.1:99999\" }; }",
            &["e.conf:1:30: daemon_address '127.0.0.1:99999' is not host:port, :port or host"],
        ),
    ]);
}

#[test]
fn errors_are_reported_all_at_once_in_file_order() {
    let got = errors(
        "qmgr { log_level = x; bogus = 1; }\nsmtps { id = 300; }\nsmtpc { remote_port = -1; }",
    );
    assert_eq!(
        got,
        [
            "e.conf:1:20: invalid value for 'log_level': expected a number (decimal, 0x hexadecimal or 0 octal), found 'x'",
            "e.conf:1:23: unknown option 'bogus' in 'qmgr'",
            "e.conf:2:14: invalid value for 'id': 300 is out of range (at most 255)",
            "e.conf:3:23: invalid value for 'remote_port': expected a number (decimal, 0x hexadecimal or 0 octal), found '-1'",
        ]
    );
}

#[test]
fn one_option_set_under_two_names() {
    check(&[
        (
            "qmgr {\n DSN_handling { max_errors_per_DSN = 17; }\n max_errors_per_DSN = 16; }",
            &[
                "e.conf:3:2: 'max_errors_per_DSN' sets the same option as 'max_errors_per_DSN' at line 2",
            ],
        ),
        (
            "smar { nameserver = 10.0.0.1; DNS { nameservers = { 10.0.0.2 }; } }",
            &["e.conf:1:8: 'nameserver' sets the same option as 'nameservers' at line 1"],
        ),
        (
            "smar { nameserver = 10.0.0.1;\n nameservers = 10.0.0.3; }",
            &["e.conf:2:2: 'nameservers' sets the same option as 'nameserver' at line 1"],
        ),
        (
            "smtps { daemon_address = :2525; }",
            &[
                "e.conf:1:9: set only one of daemon_address and pass_fd_socket: with daemon_address smtps listens itself, so start_action must be wait (found pass)",
            ],
        ),
    ]);
}

#[test]
fn cross_field_checks_wait_for_valid_values() {
    // A bad value is reported alone, not together with the rules it breaks.
    assert_eq!(
        errors("smtpc { remote_port = 0; }\nqmgr { log_level = x; }"),
        [
            "e.conf:2:20: invalid value for 'log_level': expected a number (decimal, 0x hexadecimal or 0 octal), found 'x'"
        ]
    );
    assert_eq!(
        errors("smtpc { remote_port = 0; }"),
        ["e.conf:1:9: remote_port must not be 0"]
    );
}

#[test]
fn file_errors() {
    let dir = std::env::temp_dir().join(format!("smx-conf-errors-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.conf");
    let e = smx_conf::load_file(&missing).unwrap_err();
    assert!(matches!(e, smx_conf::LoadError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!(
        "cannot read configuration file {}",
        missing.display()
    )));
    let latin1 = dir.join("latin1.conf");
    std::fs::write(&latin1, b"hostname = \"caf\xe9\";").unwrap();
    let e = smx_conf::load_file(&latin1).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "configuration file {} is not valid UTF-8 text (at byte 15)",
            latin1.display()
        )
    );
    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "qmgr { x = 1; }").unwrap();
    let e = smx_conf::load_file(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}:1:8: unknown option 'x' in 'qmgr'", bad.display())
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
