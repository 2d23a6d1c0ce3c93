//! `epic-fhir keygen`: a signing key pair with what app registration asks for.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use epic_fhir::auth::{Algorithm, RsaBits, SigningKey};
use serde_json::json;

use crate::Failure;

/// The files `keygen` writes, by name.
pub(crate) const PRIVATE_PEM: &str = "private.pem";
pub(crate) const PUBLIC_PEM: &str = "public.pem";
pub(crate) const CERT_PEM: &str = "cert.pem";
pub(crate) const JWKS_JSON: &str = "jwks.json";

/// How long the self-signed certificate is valid.
const CERT_VALIDITY_DAYS: i64 = 3 * 365;

/// Flags of `epic-fhir keygen`.
#[derive(Debug, Args)]
pub(crate) struct KeygenArgs {
    /// Directory to write private.pem, public.pem, cert.pem and jwks.json to (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Signing algorithm: RS384 (RSA) or ES384 (EC P-384).
    #[arg(long, default_value = "RS384", value_parser = parse_alg)]
    alg: Algorithm,
    /// RSA key size: 2048, 3072 or 4096 (RS384 only).
    #[arg(long)]
    bits: Option<usize>,
    /// The key id to put in the JWK Set (default: the RFC 7638 thumbprint).
    #[arg(long)]
    kid: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

fn parse_alg(text: &str) -> Result<Algorithm, String> {
    text.parse()
}

/// Paths of the files written for one key.
#[derive(Debug, Clone)]
pub(crate) struct KeyFiles {
    pub(crate) private_pem: PathBuf,
    pub(crate) public_pem: PathBuf,
    pub(crate) cert_pem: PathBuf,
    pub(crate) jwks_json: PathBuf,
}

/// A fresh temporary directory for a throwaway key, removed with everything in it (the private
/// key included) when dropped, however the command that made it ends.
pub(crate) struct TempKeyDir(PathBuf);

impl TempKeyDir {
    /// Creates `<temp>/<prefix>-<pid>-<nanoseconds>`, failing rather than reusing one that exists.
    pub(crate) fn create(prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("{prefix}-{}-{nanos:09}", std::process::id()));
        std::fs::create_dir(&path)
            .with_context(|| format!("cannot create the key directory {}", path.display()))?;
        Ok(TempKeyDir(path))
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempKeyDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Generates a key of `alg` (and `bits` for RSA), with `kid` if given.
pub(crate) fn generate(
    alg: Algorithm,
    bits: Option<usize>,
    kid: Option<&str>,
) -> anyhow::Result<SigningKey> {
    let key = match (alg, bits) {
        (Algorithm::RS384, bits) => {
            let bits = RsaBits::try_from(bits.unwrap_or(2048)).map_err(|e| anyhow!(e))?;
            SigningKey::generate_rsa(bits)?
        }
        (Algorithm::ES384, None) => SigningKey::generate_ec_p384()?,
        (Algorithm::ES384, Some(_)) => {
            bail!("--bits applies to RSA keys only: an ES384 key is always P-384")
        }
    };
    Ok(match kid {
        Some(kid) => key.with_kid(kid),
        None => key,
    })
}

/// A self-signed X.509 certificate for the key, as older Epic app registrations ask for.
pub(crate) fn self_signed_certificate(key: &SigningKey) -> anyhow::Result<String> {
    let algorithm = match key.algorithm() {
        Algorithm::RS384 => &rcgen::PKCS_RSA_SHA384,
        Algorithm::ES384 => &rcgen::PKCS_ECDSA_P384_SHA384,
    };
    let pem = key.to_pkcs8_pem()?;
    let key_pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(pem.expose_secret(), algorithm)
        .context("cannot load the new key into the certificate builder")?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("epic-fhir client key {}", key.kid()),
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(CERT_VALIDITY_DAYS);
    let cert = params
        .self_signed(&key_pair)
        .context("cannot sign the certificate")?;
    Ok(cert.pem())
}

/// Writes the four files for `key` into `dir`, refusing to overwrite unless `force`.
pub(crate) fn write_files(dir: &Path, key: &SigningKey, force: bool) -> anyhow::Result<KeyFiles> {
    let files = KeyFiles {
        private_pem: dir.join(PRIVATE_PEM),
        public_pem: dir.join(PUBLIC_PEM),
        cert_pem: dir.join(CERT_PEM),
        jwks_json: dir.join(JWKS_JSON),
    };
    let all = [
        &files.private_pem,
        &files.public_pem,
        &files.cert_pem,
        &files.jwks_json,
    ];
    if !force {
        let existing: Vec<String> = all
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            bail!(
                "refusing to overwrite {}: pass --force to replace them",
                existing.join(", ")
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = key.to_pkcs8_pem()?;
    write_private(&files.private_pem, private.expose_secret())?;
    write_public(&files.public_pem, &key.public_key_pem()?)?;
    write_public(&files.cert_pem, &self_signed_certificate(key)?)?;
    let jwks = serde_json::to_string_pretty(&key.jwk_set())? + "\n";
    write_public(&files.jwks_json, &jwks)?;
    Ok(files)
}

fn write_public(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the private key readable by its owner only (mode 0600 on Unix), also when an existing
/// file with wider permissions is overwritten.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    }
    file.write_all(contents.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub(crate) fn run(args: KeygenArgs) -> Result<(), Failure> {
    let key = generate(args.alg, args.bits, args.kid.as_deref()).map_err(Failure::usage)?;
    let files = write_files(&args.out, &key, args.force).map_err(Failure::usage)?;
    let summary = json!({
        "alg": key.algorithm().as_str(),
        "kid": key.kid(),
        "bits": key.rsa_bits(),
        "files": {
            "private_key": files.private_pem,
            "public_key": files.public_pem,
            "certificate": files.cert_pem,
            "jwks": files.jwks_json,
        },
        "jwks": key.jwk_set(),
    });
    crate::output::print_json(&summary)?;
    eprintln!(
        "Register {} (or host {} at your JWK Set URL) with the app; keep {} secret.",
        files.cert_pem.display(),
        files.jwks_json.display(),
        files.private_pem.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_key_directory_goes_with_its_private_key() {
        let dir = TempKeyDir::create("epic-fhir-keygen-test").expect("created");
        let path = dir.path().to_path_buf();
        let key = generate(Algorithm::ES384, None, Some("temp")).expect("key");
        let files = write_files(&path, &key, false).expect("written");
        assert!(files.private_pem.is_file());
        drop(dir);
        assert!(!path.exists(), "{} is left behind", path.display());
    }
}
