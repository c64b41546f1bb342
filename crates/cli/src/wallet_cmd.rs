//! `parabit wallet create|import|list|show|remove`: named signing keys in the encrypted
//! keystore of `parabit-wallet`, plus the helpers the `tx` and `query` commands use to find a
//! key or an address by name.
//!
//! Invariants:
//! - The password never comes from a command-line argument (shell history): it is read from
//!   `PARABIT_PASSWORD` or prompted for on the terminal without echo. An imported secret is
//!   read from a hidden prompt or from stdin, never from the arguments.
//! - A refused command (wrong password, taken name, bad secret) leaves the keystore file
//!   untouched: mutations are saved only after they all succeed, and saving is atomic.
//! - `list` and `show` (without `--secret`) need no password; they read the authenticated
//!   public header.
//! - With `--json` exactly one JSON document goes to stdout; prompts and notes go to stderr.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use parabit_primitives::{Address, Network, SigningKey};
use parabit_wallet::{default_keystore_path, list_addresses, KdfParams, Keystore};
use serde_json::json;

/// The environment variable holding the keystore password (for scripts).
pub const PASSWORD_ENV: &str = "PARABIT_PASSWORD";

/// Where the keystore is.
#[derive(Debug, Clone, Args)]
pub struct KeystoreArgs {
    /// The keystore file (default: `$PARABIT_KEYSTORE`, else the user's data directory,
    /// e.g. `~/.local/share/parabit/keystore.json`).
    #[arg(long, value_name = "PATH", global = true)]
    pub keystore: Option<PathBuf>,
}

impl KeystoreArgs {
    /// The keystore path to use.
    pub fn path(&self) -> Result<PathBuf> {
        match &self.keystore {
            Some(p) => Ok(p.clone()),
            None => default_keystore_path().context("cannot choose a keystore path"),
        }
    }
}

/// The address format shown by the offline wallet commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkArg {
    /// `pbrt1…` (devnet, regtest).
    Regtest,
    /// `pb1…`.
    Mainnet,
}

impl From<NetworkArg> for Network {
    fn from(n: NetworkArg) -> Network {
        match n {
            NetworkArg::Regtest => Network::Regtest,
            NetworkArg::Mainnet => Network::Mainnet,
        }
    }
}

/// `parabit wallet`.
#[derive(Debug, Args)]
pub struct WalletArgs {
    #[command(flatten)]
    keystore: KeystoreArgs,
    /// Address format to show.
    #[arg(
        long,
        value_enum,
        env = "PARABIT_NETWORK",
        default_value = "regtest",
        global = true
    )]
    network: NetworkArg,
    /// Print one JSON document on stdout.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: WalletCommand,
}

#[derive(Debug, Subcommand)]
enum WalletCommand {
    /// Generates a new key under NAME (creating the keystore if needed) and prints its address.
    Create {
        /// The key's name (letters, digits, '-', '_', '.').
        name: String,
        /// When creating the keystore file: a fast, weak key derivation (64 KiB, 1 pass) for
        /// throwaway devnet keys and tests. Never for real funds.
        #[arg(long)]
        insecure_fast_kdf: bool,
    },
    /// Imports a secret key (64 hex digits) under NAME, read from a hidden prompt or stdin.
    Import {
        /// The key's name.
        name: String,
        /// When creating the keystore file: a fast, weak key derivation (see `create`).
        #[arg(long)]
        insecure_fast_kdf: bool,
    },
    /// Lists the stored keys' names and addresses (no password needed).
    List,
    /// Shows one key's address and public key.
    Show {
        /// The key's name.
        name: String,
        /// Also print the secret key (asks for the password). Anyone who sees it owns the funds.
        #[arg(long)]
        secret: bool,
    },
    /// Deletes a key from the keystore (asks for the password).
    Remove {
        /// The key's name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// Reads the keystore password: `PARABIT_PASSWORD`, or a hidden prompt (twice when
/// `confirm`).
pub fn password(prompt: &str, confirm: bool) -> Result<String> {
    if let Some(p) = std::env::var_os(PASSWORD_ENV) {
        let p = p
            .into_string()
            .map_err(|_| anyhow!("{PASSWORD_ENV} is not valid UTF-8"))?;
        if p.is_empty() {
            bail!("{PASSWORD_ENV} is set but empty");
        }
        return Ok(p);
    }
    let first = rpassword::prompt_password(prompt).with_context(|| {
        format!("cannot read the password: set {PASSWORD_ENV} or run in a terminal")
    })?;
    if confirm {
        let again = rpassword::prompt_password("Repeat the password: ")
            .context("cannot read the password")?;
        if again != first {
            bail!("the passwords do not match");
        }
    }
    if first.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(first)
}

fn no_keystore(path: &Path) -> anyhow::Error {
    anyhow!(
        "no keystore at {} (create one with `parabit wallet create NAME`, or pass --keystore)",
        path.display()
    )
}

/// Opens the keystore at `path`, asking for its password.
pub fn open(path: &Path) -> Result<Keystore> {
    if !path.exists() {
        return Err(no_keystore(path));
    }
    let pw = password("Keystore password: ", false)?;
    Keystore::open(path, &pw)
        .with_context(|| format!("cannot open the keystore {}", path.display()))
}

/// The signing key named `from` (or whose address is `from`) in the keystore at `path`.
pub fn signing_key(path: &Path, from: &str) -> Result<SigningKey> {
    let ks = open(path)?;
    if let Ok(addr) = from.parse::<Address>() {
        if let Some(name) = ks.name_of(&addr) {
            return ks.get(name).map_err(Into::into);
        }
        bail!("no key for address {from} in {}", path.display());
    }
    ks.get(from).with_context(|| {
        format!(
            "--from {from:?}: not in {} (see `parabit wallet list`)",
            path.display()
        )
    })
}

/// An address given as bech32m or as the name of a keystore key (no password needed).
pub fn resolve_address(text: &str, keystore: &KeystoreArgs) -> Result<Address> {
    match Address::parse(text.trim()) {
        Ok((_, a)) => Ok(a),
        Err(parse_err) => {
            let looks_like_address = text.starts_with("pb1") || text.starts_with("pbrt1");
            if looks_like_address {
                return Err(anyhow!("invalid address {text:?}: {parse_err}"));
            }
            let path = keystore.path()?;
            if !path.exists() {
                bail!("{text:?} is not an address ({parse_err}) and there is no keystore at {} to look it up as a name", path.display());
            }
            let keys = list_addresses(&path)
                .with_context(|| format!("cannot read the keystore {}", path.display()))?;
            keys.iter()
                .find(|k| k.name == text)
                .map(|k| k.address)
                .ok_or_else(|| {
                    anyhow!(
                        "{text:?} is neither an address ({parse_err}) nor a key name in {}",
                        path.display()
                    )
                })
        }
    }
}

fn kdf(insecure_fast: bool) -> KdfParams {
    if insecure_fast {
        KdfParams::insecure_fast()
    } else {
        KdfParams::production()
    }
}

/// Opens the keystore, or creates it (asking for a new password twice) if missing.
fn open_or_create(path: &Path, insecure_fast_kdf: bool) -> Result<(Keystore, bool)> {
    if path.exists() {
        return Ok((open(path)?, false));
    }
    eprintln!("creating a new keystore at {}", path.display());
    let pw = password("New keystore password: ", true)?;
    let ks = Keystore::create(path, &pw, kdf(insecure_fast_kdf))
        .with_context(|| format!("cannot create the keystore {}", path.display()))?;
    Ok((ks, true))
}

fn read_secret() -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return rpassword::prompt_password("Secret key (64 hex digits): ")
            .context("cannot read the secret key");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the secret key from stdin")?;
    Ok(line.trim().to_string())
}

fn confirm(question: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        bail!("refusing to delete without confirmation: pass --yes");
    }
    eprint!("{question} [y/N] ");
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes"))
}

/// Runs `parabit wallet …`.
pub fn run(args: &WalletArgs) -> Result<()> {
    let path = args.keystore.path()?;
    let net: Network = args.network.into();
    match &args.command {
        WalletCommand::Create {
            name,
            insecure_fast_kdf,
        } => {
            let (mut ks, created) = open_or_create(&path, *insecure_fast_kdf)?;
            let address = ks.generate(name).context("cannot create the key")?;
            ks.save().context("cannot save the keystore")?;
            let shown = address.to_bech32(net);
            if args.json {
                println!(
                    "{}",
                    json!({"name": name, "address": shown, "keystore": path, "created_keystore": created})
                );
            } else {
                eprintln!("created key {name:?} in {}", path.display());
                println!("{shown}");
            }
        }
        WalletCommand::Import {
            name,
            insecure_fast_kdf,
        } => {
            // Read the secret first, so a bad one fails before any password prompt or file.
            let secret = read_secret()?;
            let key = parabit_wallet::parse_secret_hex(&secret)?;
            let (mut ks, created) = open_or_create(&path, *insecure_fast_kdf)?;
            let address = ks.import(name, key).context("cannot import the key")?;
            ks.save().context("cannot save the keystore")?;
            let shown = address.to_bech32(net);
            if args.json {
                println!(
                    "{}",
                    json!({"name": name, "address": shown, "keystore": path, "created_keystore": created})
                );
            } else {
                eprintln!("imported key {name:?} into {}", path.display());
                println!("{shown}");
            }
        }
        WalletCommand::List => {
            let keys = if path.exists() {
                list_addresses(&path)
                    .with_context(|| format!("cannot read the keystore {}", path.display()))?
            } else {
                Vec::new()
            };
            if args.json {
                let keys: Vec<_> = keys
                    .iter()
                    .map(|k| json!({"name": k.name, "address": k.address.to_bech32(net)}))
                    .collect();
                println!("{}", json!({"keystore": path, "keys": keys}));
            } else if keys.is_empty() {
                eprintln!(
                    "no keys in {} (create one with `parabit wallet create NAME`)",
                    path.display()
                );
            } else {
                let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(0);
                for k in &keys {
                    println!("{:width$}  {}", k.name, k.address.to_bech32(net));
                }
            }
        }
        WalletCommand::Show { name, secret } => {
            let (address, secret_hex) = if *secret {
                let ks = open(&path)?;
                let key = ks.get(name)?;
                (key.address(), Some(hex::encode(key.secret_bytes())))
            } else {
                if !path.exists() {
                    return Err(no_keystore(&path));
                }
                let keys = list_addresses(&path)
                    .with_context(|| format!("cannot read the keystore {}", path.display()))?;
                let k = keys
                    .iter()
                    .find(|k| &k.name == name)
                    .ok_or_else(|| anyhow!("no key named {name:?} in {}", path.display()))?;
                (k.address, None)
            };
            let shown = address.to_bech32(net);
            let pubkey = hex::encode(address.as_bytes());
            if args.json {
                let mut out = json!({"name": name, "address": shown, "public_key": pubkey});
                if let Some(s) = &secret_hex {
                    out["secret_key"] = json!(s);
                }
                println!("{out}");
            } else {
                println!("name:       {name}");
                println!("address:    {shown}");
                println!("public key: {pubkey}");
                if let Some(s) = &secret_hex {
                    println!("secret key: {s}");
                }
            }
        }
        WalletCommand::Remove { name, yes } => {
            let mut ks = open(&path)?;
            let address = ks.remove(name)?;
            if !*yes
                && !confirm(&format!(
                    "delete key {name:?} ({})? Funds are lost without a backup of its secret.",
                    address.to_bech32(net)
                ))?
            {
                bail!("not deleted");
            }
            ks.save().context("cannot save the keystore")?;
            let shown = address.to_bech32(net);
            if args.json {
                println!(
                    "{}",
                    json!({"name": name, "address": shown, "removed": true})
                );
            } else {
                println!("removed key {name:?} ({shown})");
            }
        }
    }
    Ok(())
}
