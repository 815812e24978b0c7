//! `sagactl keys generate`: a new event key set in a directory, as `EVENT_KEYS` reads it
//! (docs/security.md): `verify.keys` for every process, `data.keys` for every process,
//! `{service}.signing.key` for that service alone. Secret files are created owner-only.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret;
use shared::events::PRODUCERS;
use shared::seal::keys::generate;

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Write a new key set: one signing key per producing service, their verification keys,
    /// and one data key.
    Generate {
        /// The directory to write to (created if missing); existing key files are not
        /// overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Part of every key id, to tell key generations apart during a rotation (default:
        /// today's date).
        #[arg(long)]
        label: Option<String>,
    },
}

pub fn run(args: KeysArgs) -> anyhow::Result<()> {
    match args.command {
        KeysCommand::Generate { out, label } => {
            let label = label.unwrap_or_else(|| chrono::Utc::now().format("%Y%m%d").to_string());
            generate_into(&out, &label)
        }
    }
}

fn generate_into(dir: &Path, label: &str) -> anyhow::Result<()> {
    let set = generate(PRODUCERS, label)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = vec![("verify.keys".to_owned(), set.verifying.clone(), false)];
    files.push((
        "data.keys".to_owned(),
        set.data.expose_secret().to_owned(),
        true,
    ));
    for (service, entry) in &set.signing {
        files.push((
            format!("{service}.signing.key"),
            entry.expose_secret().to_owned(),
            true,
        ));
    }
    for (name, _, _) in &files {
        let path = dir.join(name);
        if path.exists() {
            bail!(
                "{} exists: a key set is never overwritten (choose another --out)",
                path.display()
            );
        }
    }
    for (name, text, secret) in &files {
        write_new(&dir.join(name), text, *secret)?;
    }
    println!(
        "wrote a key set labelled {label} to {}:\n  verify.keys      every process (public)\n  \
         data.keys        every process (secret)\n  <service>.signing.key  that service only \
         (secret)\nrun with EVENT_KEYS={}",
        dir.display(),
        dir.display()
    );
    Ok(())
}

fn write_new(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}
