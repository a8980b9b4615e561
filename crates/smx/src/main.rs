//! `smx`: the one binary of the smx mail transfer agent.
//!
//! Subcommands dispatch to the component crates; this file only parses the
//! command line, loads the configuration and maps errors to exit codes
//! (sysexits.h: 0 success and --help, 64 usage, 65 bad data, 66 no input,
//! 69 unavailable, 73 cannot create, 78 configuration).

use anyhow::Context;
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
const EX_CONFIG: u8 = 78;
/// Exit code for an unreadable input file (EX_NOINPUT).
const EX_NOINPUT: u8 = 66;
/// Exit code for a service that is not available (EX_UNAVAILABLE).
const EX_UNAVAILABLE: u8 = 69;

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
        Command::Run { config } => run(config.as_deref()),
        Command::ConfCheck {
            config,
            verbose,
            reference,
        } => {
            if reference {
                print!("{}", smx_conf::reference());
                return ExitCode::SUCCESS;
            }
            conf_check(config.as_deref(), verbose)
        }
        Command::Makemap { input, output } => makemap(input.as_deref(), output.as_deref()),
    }
}

fn makemap(input: Option<&Path>, output: Option<&Path>) -> ExitCode {
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
        Ok(c) => Ok(c),
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

fn run(path: Option<&Path>) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match start(&config) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("smx run: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn start(config: &smx_conf::Config) -> anyhow::Result<ExitCode> {
    // The supervisor has no section of its own; it logs at the recommended
    // level (seed 3.5).
    let _log = smx_log::init(&smx_log::LogSettings {
        component: "mcp".into(),
        level: 9,
        destination: smx_log::Destination::Stderr,
    })
    .context("cannot start logging")?;
    std::fs::create_dir_all(&config.queue_directory).with_context(|| {
        format!(
            "cannot create queue directory {}",
            config.queue_directory.display()
        )
    })?;
    tracing::info!(
        func = "run",
        queue_directory = %config.queue_directory.display(),
        "configuration loaded"
    );
    tracing::error!(
        func = "run",
        "the supervisor (mcp) is not part of this build yet; no component can be started"
    );
    Ok(ExitCode::from(EX_UNAVAILABLE))
}
