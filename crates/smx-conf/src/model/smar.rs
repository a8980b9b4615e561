//! The `smar` section: the address resolver and its maps (seed 3.9.1,
//! 3.9.2, 8.4).

use super::common::{LogConfig, McpOptions, StartAction, check_nonzero_time};
use super::qmgr::LookupFlags;
use crate::conf_enum;
use crate::conf_flags;
use crate::schema::{Checker, Naming, Repeated, Section, Visitor};
use crate::value::Time;
use std::net::IpAddr;
use std::path::PathBuf;

/// Most DNS blacklists (seed: MTA_MAX_DNSBL).
pub const MAX_DNSBL: usize = 8;
/// Most declared maps.
pub const MAX_MAPS: usize = 256;
/// Most nameservers.
pub const MAX_NAMESERVERS: usize = 4;

/// `smar { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmarConfig {
    /// How MCP starts smar.
    pub mcp: McpOptions,
    /// Logging.
    pub log: LogConfig,
    /// Logging level.
    pub log_level: u32,
    /// Declared maps.
    pub maps: Repeated<MapDecl>,
    /// The access map.
    pub access_map: MapRef,
    /// Delimiters of address extensions.
    pub address_delimiter: String,
    /// The aliases map.
    pub aliases: AliasesConfig,
    /// DNS options.
    pub dns: DnsConfig,
    /// DNS blacklists.
    pub dnsbl: Repeated<DnsblConfig>,
    /// Greylisting, when configured.
    pub greylisting: Option<GreylistingConfig>,
    /// The map of valid local users.
    pub local_user_map: Option<LocalUserMap>,
    /// The mailertable.
    pub mailertable: MailertableConfig,
    /// Maximum file descriptors.
    pub max_fds: u32,
    /// Maximum threads.
    pub max_threads: u32,
    /// Minimum threads.
    pub min_threads: u32,
}

impl Default for SmarConfig {
    fn default() -> Self {
        let mut mcp = McpOptions::new(StartAction::Wait);
        mcp.restart_dependencies = vec!["smtps".into(), "qmgr".into()];
        SmarConfig {
            mcp,
            log: LogConfig::default(),
            log_level: 9,
            maps: Repeated::new(Naming::Required, MAX_MAPS),
            access_map: MapRef::file("access.cdb"),
            address_delimiter: "+".into(),
            aliases: AliasesConfig::default(),
            dns: DnsConfig::default(),
            dnsbl: Repeated::new(Naming::Forbidden, MAX_DNSBL),
            greylisting: None,
            local_user_map: None,
            mailertable: MailertableConfig::default(),
            max_fds: 1024,
            max_threads: 8,
            min_threads: 1,
        }
    }
}

impl Section for SmarConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.mcp.visit(v);
        v.section("log", "Logging (seed 3.5).", &mut self.log);
        v.option("log_level", "Amount of logging.", &mut self.log_level);
        v.repeated(
            "map",
            "A map declaration (seed 3.9.1); the name is used to refer to the map.",
            &mut self.maps,
        );
        v.section(
            "access_map",
            "The access map (seed 3.9.3). Set file or name, not both.",
            &mut self.access_map,
        );
        v.option(
            "address_delimiter",
            "Characters that start an address extension (user+detail); the first one found is used.",
            &mut self.address_delimiter,
        );
        v.section(
            "aliases",
            "The aliases map (seed 3.9.2 item 3).",
            &mut self.aliases,
        );
        v.section("DNS", "DNS resolver options.", &mut self.dns);
        v.alias("nameserver", &mut self.dns.nameservers);
        v.alias("nameservers", &mut self.dns.nameservers);
        v.alias("DNS_timeout", &mut self.dns.timeout);
        v.repeated(
            "dnsbl",
            "A DNS blacklist (repeatable, at most 8); results are looked up in the access map as TAG:A.B.C.D.",
            &mut self.dnsbl,
        );
        v.optional(
            "greylisting",
            "Greylisting (seed 3.9.4).",
            &mut self.greylisting,
        );
        v.optional(
            "local_user_map",
            "Map of valid local addresses (seed 3.9.2 item 7).",
            &mut self.local_user_map,
        );
        v.section(
            "mailertable",
            "The mailertable (routing, seed 3.9.3).",
            &mut self.mailertable,
        );
        v.option(
            "max_fds",
            "Maximum number of file descriptors.",
            &mut self.max_fds,
        );
        v.option(
            "max_threads",
            "Maximum number of threads.",
            &mut self.max_threads,
        );
        v.option(
            "min_threads",
            "Minimum number of threads.",
            &mut self.min_threads,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        self.mcp.check(c);
        self.mcp.check_single(c);
        if self.address_delimiter.is_empty() {
            c.error(
                &["address_delimiter"],
                "address_delimiter must not be empty".into(),
            );
        }
        if self
            .address_delimiter
            .chars()
            .any(|ch| ch == '@' || ch.is_whitespace())
        {
            c.error(
                &["address_delimiter"],
                "address_delimiter must not contain '@' or white space".into(),
            );
        }
        let declared = |name: &str| self.maps.get(name).is_some();
        let refs: [(&[&str], Option<&String>); 4] = [
            (&["access_map", "name"], self.access_map.name.as_ref()),
            (&["aliases", "name"], self.aliases.map.name.as_ref()),
            (&["mailertable", "name"], self.mailertable.map.name.as_ref()),
            (
                &["local_user_map", "name"],
                self.local_user_map.as_ref().map(|m| &m.name),
            ),
        ];
        for (path, name) in refs {
            if let Some(n) = name
                && !declared(n)
            {
                c.error(
                    path,
                    format!(
                        "map '{}' is not declared (map {} {{ ... }})",
                        n.escape_debug(),
                        n.escape_debug()
                    ),
                );
            }
        }
        // Sequence maps refer to declared maps, without cycles.
        for (i, m) in self.maps.iter().enumerate() {
            let part = format!("map#{i}");
            for inner in &m.body.maps {
                if !declared(inner) {
                    c.error(
                        &[&part, "maps"],
                        format!(
                            "sequence map refers to undeclared map '{}'",
                            inner.escape_debug()
                        ),
                    );
                }
            }
            if let Some(name) = &m.name
                && self.sequence_reaches(name, name, 0)
            {
                c.error(
                    &[&part, "maps"],
                    format!("sequence map '{}' refers to itself", name.escape_debug()),
                );
            }
        }
        if self.min_threads > self.max_threads {
            c.error(
                &["min_threads"],
                "min_threads is larger than max_threads".into(),
            );
        }
    }
}

impl SmarConfig {
    /// Whether following sequence maps from `from` leads to `target`.
    fn sequence_reaches(&self, from: &str, target: &str, depth: usize) -> bool {
        if depth > MAX_MAPS {
            return true;
        }
        let Some(m) = self.maps.get(from) else {
            return false;
        };
        m.maps.iter().any(|inner| {
            inner.eq_ignore_ascii_case(target) || self.sequence_reaches(inner, target, depth + 1)
        })
    }
}

conf_enum! {
    /// Map types (seed 3.9.1). `hash` is read as cdb: there is no Berkeley DB.
    pub enum MapType {
        /// A hash map; stored as cdb.
        Hash = "hash",
        /// A cdb file (djb cdb / tinycdb format).
        Cdb = "cdb",
        /// A plain text file loaded into memory.
        Text = "text",
        /// Several maps tried in order.
        Sequence = "sequence",
        /// A socket map server (seed 10.1).
        Socket = "socket",
        /// System users (getpwnam).
        Passwd = "passwd",
    }
}

/// `map NAME { ... }` (seed 3.9.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDecl {
    /// Map type.
    pub kind: MapType,
    /// File (hash, cdb, text).
    pub file: Option<PathBuf>,
    /// Map name in the socket map protocol.
    pub mapname: Option<String>,
    /// Address of an inet socket map.
    pub address: Option<IpAddr>,
    /// Path of a unix socket map.
    pub path: Option<PathBuf>,
    /// Port of an inet socket map.
    pub port: Option<u16>,
    /// Maps of a sequence.
    pub maps: Vec<String>,
    /// Timeout of a socket map lookup.
    pub timeout: Time,
}

impl Default for MapDecl {
    fn default() -> Self {
        MapDecl {
            kind: MapType::Cdb,
            file: None,
            mapname: None,
            address: None,
            path: None,
            port: None,
            maps: Vec::new(),
            timeout: Time::secs(10),
        }
    }
}

impl Section for MapDecl {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "type",
            "hash (read as cdb), cdb, text, sequence, socket or passwd.",
            &mut self.kind,
        );
        v.option("file", "The map file (hash, cdb, text).", &mut self.file);
        v.option(
            "mapname",
            "Map name sent to the socket map server.",
            &mut self.mapname,
        );
        v.option(
            "address",
            "Address of an inet socket map.",
            &mut self.address,
        );
        v.option("path", "Path of a Unix socket map.", &mut self.path);
        v.option("port", "Port of an inet socket map.", &mut self.port);
        v.option("maps", "Maps tried in order (sequence).", &mut self.maps);
        v.option(
            "timeout",
            "Timeout for one socket map lookup.",
            &mut self.timeout,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        let d = c.section_desc().to_owned();
        match self.kind {
            MapType::Hash | MapType::Cdb | MapType::Text => {
                if self.file.is_none() {
                    c.error(
                        &["type"],
                        format!("{d}: type {} needs file", self.kind.as_str()),
                    );
                }
            }
            MapType::Sequence => {
                if self.maps.is_empty() {
                    c.error(&["type"], format!("{d}: type sequence needs maps"));
                }
            }
            MapType::Socket => {
                let unix = self.path.is_some();
                let inet = self.address.is_some() && self.port.is_some();
                if unix == inet {
                    c.error(
                        &["type"],
                        format!("{d}: type socket needs either path or address and port"),
                    );
                }
                if self.mapname.is_none() {
                    c.error(&["type"], format!("{d}: type socket needs mapname"));
                }
                check_nonzero_time(c, "timeout", self.timeout);
            }
            MapType::Passwd => {}
        }
    }
}

/// A map given by file or by the name of a declared map, or inline entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRef {
    /// The map file (relative to the configuration directory).
    pub file: Option<PathBuf>,
    /// The name of a declared map.
    pub name: Option<String>,
    /// Entries written in the configuration itself, in the map's text
    /// format (`"LHS RHS"`); used instead of a file.
    pub entries: Vec<String>,
    default_file: &'static str,
}

impl MapRef {
    /// A map read from `file` by default.
    pub fn file(default_file: &'static str) -> Self {
        MapRef {
            file: None,
            name: None,
            entries: Vec::new(),
            default_file,
        }
    }

    /// The file the map is read from, if it is read from a file.
    pub fn effective_file(&self) -> Option<PathBuf> {
        if self.name.is_some() || !self.entries.is_empty() {
            return None;
        }
        Some(
            self.file
                .clone()
                .unwrap_or_else(|| PathBuf::from(self.default_file)),
        )
    }

    fn visit_fields(&mut self, v: &mut dyn Visitor) {
        v.option(
            "file",
            "Map file (relative to the configuration directory); hash files are read as cdb.",
            &mut self.file,
        );
        v.option(
            "name",
            "Name of a declared map (map NAME { ... }).",
            &mut self.name,
        );
        v.option(
            "entries",
            "Entries given inline, each \"LHS RHS\" as in the map's text format; used instead of a file.",
            &mut self.entries,
        );
    }

    fn check_fields(&self, c: &mut Checker<'_>) {
        let given = [
            self.file.is_some(),
            self.name.is_some(),
            !self.entries.is_empty(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if given > 1 {
            c.error(
                &["name"],
                format!(
                    "{}: set only one of file, name and entries",
                    c.section_desc()
                ),
            );
        }
        for (i, e) in self.entries.iter().enumerate() {
            let mut parts = e.trim().splitn(2, char::is_whitespace);
            let lhs = parts.next().unwrap_or("");
            let rhs = parts.next().map(str::trim).unwrap_or("");
            if lhs.is_empty() || rhs.is_empty() {
                c.error(
                    &["entries"],
                    format!(
                        "entry {} ('{}') needs a key and a value separated by white space",
                        i + 1,
                        e.escape_debug()
                    ),
                );
            }
        }
    }
}

impl Section for MapRef {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.visit_fields(v);
    }
    fn check(&self, c: &mut Checker<'_>) {
        self.check_fields(c);
    }
}

conf_flags! {
    /// Aliases flags (seed 3.9.2 item 3c).
    pub struct AliasFlags {
        /// Keys are local parts, looked up for local addresses only.
        localpart: "localpart" = true,
        /// Keys are full addresses, looked up for local domains only.
        local_domains: "local_domains" = false,
        /// Keys are full addresses, looked up for all domains.
        all_domains: "all_domains" = false,
        /// user@host also matches user+detail@host.
        implicitly_match_detail: "implicitly_match_detail" = false,
        /// Replace ${macros} in the right-hand side.
        replace_macros: "replace_macros" = false,
        /// Qualify unqualified right-hand sides with the original domain.
        preserve_domain: "preserve_domain" = false,
    }
}

/// `aliases { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AliasesConfig {
    /// Where the map comes from.
    pub map: MapRef,
    /// Flags.
    pub flags: AliasFlags,
}

impl Default for AliasesConfig {
    fn default() -> Self {
        AliasesConfig {
            map: MapRef::file("aliases.cdb"),
            flags: AliasFlags::default(),
        }
    }
}

impl Section for AliasesConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.map.visit_fields(v);
        v.option("flags", "How aliases are looked up.", &mut self.flags);
    }
    fn check(&self, c: &mut Checker<'_>) {
        self.map.check_fields(c);
    }
}

conf_flags! {
    /// DNS flags (seed 3.9.2 item 4d, 8.4).
    pub struct DnsFlags {
        /// Read nameservers from /etc/resolv.conf (on unless nameservers is set).
        use_resolvconf: "use_resolvconf" = true,
        /// Use TCP instead of UDP.
        use_tcp: "use_TCP" = false,
        /// connect(2) UDP sockets.
        use_connect: "use_connect" = false,
    }
}

/// `DNS { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Nameservers (at most 4).
    pub nameservers: Vec<IpAddr>,
    /// Retries after the first query.
    pub retries: u32,
    /// Timeout of one query.
    pub timeout: Time,
    /// Flags.
    pub flags: DnsFlags,
    /// Most MX records used for a domain.
    pub mx_max: u32,
    /// Most addresses used per MX host.
    pub a_per_mx_max: u32,
    /// Most addresses used for a domain in all.
    pub a_max: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            nameservers: Vec::new(),
            retries: 2,
            timeout: Time::secs(5),
            flags: DnsFlags::default(),
            mx_max: 16,
            a_per_mx_max: 8,
            a_max: 32,
        }
    }
}

impl DnsConfig {
    /// Whether resolv.conf is read: the flag if named explicitly, else only
    /// when no nameservers are configured (seed 3.9.2 item 4d).
    pub fn use_resolvconf(&self) -> bool {
        if self.flags.explicitly_set("use_resolvconf") {
            self.flags.use_resolvconf
        } else {
            self.nameservers.is_empty()
        }
    }
}

impl Section for DnsConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "nameservers",
            "Nameservers to query (at most 4); when set, resolv.conf is not read unless use_resolvconf is given.",
            &mut self.nameservers,
        );
        v.option(
            "retries",
            "Retries after the first query (0: one query only).",
            &mut self.retries,
        );
        v.option("timeout", "Timeout for one DNS query.", &mut self.timeout);
        v.option("flags", "DNS flags.", &mut self.flags);
        v.option(
            "MX_max",
            "Most MX records used for one domain (MTA_DNS_MX_MAX).",
            &mut self.mx_max,
        );
        v.option(
            "A_per_MX_max",
            "Most addresses used for one MX host (MTA_DNS_A_PER_MX_MAX).",
            &mut self.a_per_mx_max,
        );
        v.option(
            "A_max",
            "Most addresses used for one domain after MX lookups (MTA_DNS_A_MAX).",
            &mut self.a_max,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.nameservers.len() > MAX_NAMESERVERS {
            c.error(
                &["nameservers"],
                format!(
                    "at most {MAX_NAMESERVERS} nameservers are allowed, found {}",
                    self.nameservers.len()
                ),
            );
        }
        if !self.use_resolvconf() && self.nameservers.is_empty() {
            c.error(
                &["flags"],
                "no nameservers: set nameservers or keep use_resolvconf".into(),
            );
        }
        check_nonzero_time(c, "timeout", self.timeout);
        if self.retries > 10 {
            c.error(&["retries"], "retries must be at most 10".into());
        }
        for (name, v) in [
            ("MX_max", self.mx_max),
            ("A_per_MX_max", self.a_per_mx_max),
            ("A_max", self.a_max),
        ] {
            if v == 0 || v > 1000 {
                c.error(&[name], format!("{name} must be between 1 and 1000"));
            }
        }
    }
}

/// `dnsbl { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DnsblConfig {
    /// The DNS zone of the list.
    pub domain: String,
    /// Access map tag for its results.
    pub tag: String,
}

impl Section for DnsblConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "domain",
            "DNS zone of the blacklist, e.g. dnsbl.example.",
            &mut self.domain,
        );
        v.option(
            "tag",
            "Access map tag for its results (TAG:127.0.0.2, TAG:temp, TAG:perm).",
            &mut self.tag,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.domain.is_empty() {
            c.error(
                &["domain"],
                format!("{}: domain is required", c.section_desc()),
            );
        }
        if self.tag.is_empty() {
            c.error(&["tag"], format!("{}: tag is required", c.section_desc()));
        }
    }
}

/// `greylisting { ... }` (seed 3.9.2 item 6, 3.9.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistingConfig {
    /// Time before a greylisted entry can be confirmed.
    pub grey_wait: Time,
    /// Greylisted entries that did not confirm within this time expire.
    pub grey_expire: Time,
    /// Whitelisted entries expire after this time if necessary.
    pub white_expire: Time,
    /// Whitelisted entries must reconfirm after this time.
    pub white_timeout: Time,
    /// Main database file.
    pub main_db_name: PathBuf,
    /// Secondary database file.
    pub secondary_db_name: PathBuf,
    /// Entries are expired above this count.
    pub expire_limit: u32,
    /// Netmask applied to client IPv4 addresses.
    pub netmask: u32,
}

impl Default for GreylistingConfig {
    fn default() -> Self {
        GreylistingConfig {
            grey_wait: Time::mins(5),
            grey_expire: Time::days(1),
            white_expire: Time::days(36),
            white_timeout: Time::days(7),
            main_db_name: PathBuf::from("grey_grey_m.db"),
            secondary_db_name: PathBuf::from("grey_grey_s.db"),
            expire_limit: 100_000,
            netmask: 0xFFFF_FFFF,
        }
    }
}

impl Section for GreylistingConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "grey_wait",
            "How long before a greylisted client can be confirmed.",
            &mut self.grey_wait,
        );
        v.option(
            "grey_expire",
            "Greylisted entries not confirmed within this time expire.",
            &mut self.grey_expire,
        );
        v.option(
            "white_expire",
            "Whitelisted entries expire after this time if necessary.",
            &mut self.white_expire,
        );
        v.option(
            "white_timeout",
            "Whitelisted entries must reconfirm after this time.",
            &mut self.white_timeout,
        );
        v.option(
            "main_DB_name",
            "Main greylisting database.",
            &mut self.main_db_name,
        );
        v.option(
            "secondary_DB_name",
            "Secondary index database.",
            &mut self.secondary_db_name,
        );
        v.option(
            "expire_limit",
            "Try to expire entries when this many exist.",
            &mut self.expire_limit,
        );
        v.option(
            "netmask",
            "Netmask applied to the client IPv4 address, e.g. 0xFFFFFF00 for server farms.",
            &mut self.netmask,
        );
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.grey_wait >= self.grey_expire {
            c.error(
                &["grey_wait"],
                "grey_wait must be shorter than grey_expire".into(),
            );
        }
        if self.netmask.leading_ones() + self.netmask.trailing_zeros() != 32 {
            c.error(
                &["netmask"],
                format!(
                    "netmask 0x{:08X} is not a contiguous prefix mask",
                    self.netmask
                ),
            );
        }
    }
}

conf_flags! {
    /// Flags of the local user map.
    pub struct LocalUserFlags {
        /// user@host also matches user+detail@host.
        implicitly_match_detail: "implicitly_match_detail" = false,
    }
}

/// `local_user_map { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalUserMap {
    /// Name of a declared map.
    pub name: String,
    /// Flags.
    pub flags: LocalUserFlags,
}

impl Section for LocalUserMap {
    fn visit(&mut self, v: &mut dyn Visitor) {
        v.option(
            "name",
            "Name of a declared map of valid local addresses.",
            &mut self.name,
        );
        v.option("flags", "Flags.", &mut self.flags);
    }

    fn check(&self, c: &mut Checker<'_>) {
        if self.name.is_empty() {
            c.error(
                &["name"],
                "local_user_map needs the name of a declared map".into(),
            );
        }
    }
}

/// `mailertable { ... }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailertableConfig {
    /// Where the map comes from.
    pub map: MapRef,
    /// Lookup steps.
    pub flags: LookupFlags,
}

impl Default for MailertableConfig {
    fn default() -> Self {
        let mut flags = LookupFlags::default();
        flags.full_address = false;
        flags.detail_plus = false;
        flags.detail_star = false;
        flags.star = false;
        MailertableConfig {
            map: MapRef::file("mt"),
            flags,
        }
    }
}

impl Section for MailertableConfig {
    fn visit(&mut self, v: &mut dyn Visitor) {
        self.map.visit_fields(v);
        v.option(
            "flags",
            "Lookup steps (seed 3.12.1); default domain, dotsubdomain, dot.",
            &mut self.flags,
        );
    }
    fn check(&self, c: &mut Checker<'_>) {
        self.map.check_fields(c);
    }
}
