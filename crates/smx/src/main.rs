//! `smx`: the one binary of the smx mail transfer agent.
//!
//! Subcommands dispatch to the component crates; this file only parses the
//! command line, loads the configuration and maps errors to exit codes
//! (sysexits.h: 0 success and --help, 64 usage, 65 bad data, 66 no input,
//! 69 unavailable, 73 cannot create, 78 configuration).

mod component;
mod mapcheck;
mod paths;

use clap::{ArgAction, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit code for a command-line usage error (EX_USAGE).
const EX_USAGE: u8 = 64;
/// Exit code for bad input data (EX_DATAERR).
const EX_DATAERR: u8 = 65;
/// Exit code for an output file that cannot be created (EX_CANTCREAT).
const EX_CANTCREAT: u8 = 73;
/// Exit code for a configuration error (EX_CONFIG).
pub(crate) const EX_CONFIG: u8 = 78;
/// Exit code for an unreadable input file (EX_NOINPUT).
const EX_NOINPUT: u8 = 66;

#[derive(Debug, Parser)]
#[command(
    name = "smx",
    version,
    about = "smx: a secure, fast, modular mail transfer agent",
    long_about = None
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run smx in the foreground: the supervisor and all components.
    Run {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Check a configuration file and optionally print the effective
    /// configuration (-VVVVV) with every default.
    ConfCheck {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// More detail: -V version, -VVVVV the effective configuration.
        #[arg(short = 'V', action = ArgAction::Count)]
        verbose: u8,
        /// Print the Markdown reference of every option instead.
        #[arg(long, hide = true)]
        reference: bool,
        /// Check the directories, modes and owners of the queue (seed 2.4.1)
        /// instead; exit status 78 when something is wrong.
        #[arg(long)]
        paths: bool,
        /// With --paths: create what is missing and fix modes (and owners,
        /// as root), then check again. Implies --paths.
        #[arg(long)]
        fix: bool,
    },
    /// Start smx in the background (`smx run`, pid in QUEUE/smx.pid, output
    /// appended to QUEUE/smx.log).
    Start {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Stop smx started by `smx start`.
    Stop {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The SMTP server (started by `smx run`).
    Smtps {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The smtps section to run (`smtps NAME { ... }`); default: the first.
        #[arg(long)]
        name: Option<String>,
        /// Allow running as root (tests, containers).
        #[arg(long)]
        allow_root: bool,
    },
    /// The queue manager (started by `smx run`).
    Qmgr {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Allow running as root (tests, containers).
        #[arg(long)]
        allow_root: bool,
    },
    /// The delivery agent (started by `smx run`).
    Smtpc {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Allow running as root (tests, containers).
        #[arg(long)]
        allow_root: bool,
    },
    /// The address resolver (started by `smx run`).
    Smar {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Allow running as root (tests, containers).
        #[arg(long)]
        allow_root: bool,
    },
    /// The local delivery agent, an LMTP server (started by `smx run`).
    Lda {
        /// Configuration file; default: the embedded configuration.
        #[arg(short = 'f', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// Allow running as root (tests, containers).
        #[arg(long)]
        allow_root: bool,
    },
    /// Build a cdb map from a text map (the seed's createmap): one
    /// `KEY VALUE` per line, `#` comments; keys are lower-cased; the first of
    /// duplicate keys wins. The output is replaced atomically.
    Makemap {
        /// The text map; `-` or nothing reads standard input.
        input: Option<PathBuf>,
        /// The cdb file to write; default: INPUT.cdb.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Check every value for this kind of map first.
        #[arg(long, value_enum, default_value = "none")]
        kind: mapcheck::MapKind,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            // --help and --version are not errors; everything else is a
            // usage error (EX_USAGE: mcp does not restart a component that
            // exits with it).
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => EX_USAGE,
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Run { config } => match load(config.as_deref()) {
            Ok(c) => component::run(c, config.as_deref()),
            Err(code) => code,
        },
        Command::Start { config } => match load(config.as_deref()) {
            Ok(c) => component::start(c, config.as_deref()),
            Err(code) => code,
        },
        Command::Stop { config } => match load(config.as_deref()) {
            Ok(c) => component::stop(c),
            Err(code) => code,
        },
        Command::Smtps {
            config,
            name,
            allow_root,
        } => match load(config.as_deref()) {
            Ok(c) => component::smtps(c, name, allow_root),
            Err(code) => code,
        },
        Command::Qmgr { config, allow_root } => match load(config.as_deref()) {
            Ok(c) => component::qmgr(c, config.as_deref(), allow_root),
            Err(code) => code,
        },
        Command::Smtpc { config, allow_root } => match load(config.as_deref()) {
            Ok(c) => component::smtpc(c, allow_root),
            Err(code) => code,
        },
        Command::Smar { config, allow_root } => match load(config.as_deref()) {
            Ok(c) => component::smar(c, config.as_deref(), allow_root),
            Err(code) => code,
        },
        Command::Lda { config, allow_root } => match load(config.as_deref()) {
            Ok(c) => component::lda(c, config.as_deref(), allow_root),
            Err(code) => code,
        },
        Command::ConfCheck {
            config,
            verbose,
            reference,
            paths,
            fix,
        } => {
            if reference {
                print!("{}", smx_conf::reference());
                return ExitCode::SUCCESS;
            }
            if paths || fix {
                return match load(config.as_deref()) {
                    Ok(c) => paths::conf_check(&c, fix, config.as_deref()),
                    Err(code) => code,
                };
            }
            conf_check(config.as_deref(), verbose)
        }
        Command::Makemap {
            input,
            output,
            kind,
        } => makemap(input.as_deref(), output.as_deref(), kind),
    }
}

fn makemap(input: Option<&Path>, output: Option<&Path>, kind: mapcheck::MapKind) -> ExitCode {
    use std::io::Read;
    let input = input.filter(|p| p.as_os_str() != "-");
    let output = match (output, input) {
        (Some(o), _) => o.to_path_buf(),
        (None, Some(i)) => {
            let mut o = i.as_os_str().to_owned();
            o.push(".cdb");
            PathBuf::from(o)
        }
        (None, None) => {
            eprintln!("smx makemap: reading standard input needs -o FILE");
            return ExitCode::from(EX_USAGE);
        }
    };
    let mut bytes = Vec::new();
    let read = match input {
        Some(p) => std::fs::File::open(p).and_then(|mut f| f.read_to_end(&mut bytes)),
        None => std::io::stdin().lock().read_to_end(&mut bytes),
    };
    let name = input
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "<stdin>".to_owned());
    if let Err(e) = read {
        eprintln!("smx makemap: cannot read {name}: {e}");
        return ExitCode::from(EX_NOINPUT);
    }
    let bad = mapcheck::check(kind, &bytes);
    if !bad.is_empty() {
        for (line, problem) in &bad {
            eprintln!("{name}:{line}: {problem}");
        }
        eprintln!(
            "smx makemap: {} bad value(s), {} not written",
            bad.len(),
            output.display()
        );
        return ExitCode::from(EX_DATAERR);
    }
    match smx_maps::makemap::build(&bytes, input, &output) {
        Ok(report) => {
            for line in &report.duplicates {
                eprintln!("{name}:{line}: duplicate key ignored (the first one wins)");
            }
            println!("{} entries written to {}", report.entries, output.display());
            ExitCode::SUCCESS
        }
        Err(smx_maps::MapError::Syntax { errors, .. }) => {
            for e in &errors {
                eprintln!("{name}:{}: {}", e.line, e.reason);
            }
            eprintln!(
                "smx makemap: {} bad line(s), {} not written",
                errors.len(),
                output.display()
            );
            ExitCode::from(EX_DATAERR)
        }
        Err(e) => {
            eprintln!("smx makemap: {e}");
            ExitCode::from(EX_CANTCREAT)
        }
    }
}

/// Loads the configuration from `path` or the embedded default, printing
/// every error to stderr. Returns the exit code on failure.
fn load(path: Option<&Path>) -> Result<smx_conf::Config, ExitCode> {
    let result = match path {
        Some(p) => smx_conf::load_file(p),
        None => {
            let home = std::env::var_os(smx_conf::HOME_ENV).map(PathBuf::from);
            smx_conf::embedded_default(home.as_deref()).map_err(smx_conf::LoadError::Invalid)
        }
    };
    match result {
        Ok(mut c) => {
            if let Some(q) = std::env::var_os(component::ENV_QUEUE_DIRECTORY) {
                c.queue_directory = PathBuf::from(q);
            }
            Ok(c)
        }
        Err(smx_conf::LoadError::Invalid(errors)) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            let n = errors.0.len();
            eprintln!("{n} error{}", if n == 1 { "" } else { "s" });
            Err(ExitCode::from(EX_CONFIG))
        }
        Err(e @ smx_conf::LoadError::Io { .. }) => {
            eprintln!("smx: {e}");
            Err(ExitCode::from(EX_NOINPUT))
        }
        Err(e) => {
            eprintln!("smx: {e}");
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

fn conf_check(path: Option<&Path>, verbose: u8) -> ExitCode {
    if verbose >= 1 {
        println!("# smx {}", env!("CARGO_PKG_VERSION"));
    }
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let source = path
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| smx_conf::EMBEDDED_NAME.to_owned());
    if verbose >= 2 {
        println!("# configuration: {source}");
    }
    if verbose >= 5 {
        // The configuration goes to stdout so that it can be saved and
        // loaded again; the verdict goes to stderr.
        print!("{}", smx_conf::print(&config));
        eprintln!("OK");
    } else {
        println!("OK");
    }
    ExitCode::SUCCESS
}
