//! The program a host agent runs as workers: named by its path on the
//! controller's host and its SHA-256, so an agent runs the same file, or is
//! sent its bytes.

use std::io::Read;
use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::Bytes;

/// A program for an agent to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ProgramSpec {
    /// Its path on the controller's host (often the same on every host of a
    /// cluster: a shared file system, the same container image).
    pub(crate) path: String,
    /// The hex SHA-256 of its bytes.
    pub(crate) sha256: String,
    /// Its bytes, when the agent does not have it.
    pub(crate) bytes: Option<Bytes>,
}

impl ProgramSpec {
    /// This program, hashed once per process.
    pub(crate) fn this_program() -> std::io::Result<ProgramSpec> {
        static THIS: OnceLock<(String, String)> = OnceLock::new();
        if let Some((path, sha256)) = THIS.get() {
            return Ok(ProgramSpec {
                path: path.clone(),
                sha256: sha256.clone(),
                bytes: None,
            });
        }
        let exe = std::env::current_exe()?;
        let sha256 = sha256_of_file(&exe)?;
        let (path, sha256) = THIS.get_or_init(|| (exe.display().to_string(), sha256));
        Ok(ProgramSpec {
            path: path.clone(),
            sha256: sha256.clone(),
            bytes: None,
        })
    }

    /// The same program, carrying its bytes.
    pub(crate) fn with_bytes(&self) -> std::io::Result<ProgramSpec> {
        let bytes = std::fs::read(&self.path)?;
        if sha256_hex(&bytes) != self.sha256 {
            return Err(std::io::Error::other(format!(
                "{} changed since it started",
                self.path
            )));
        }
        Ok(ProgramSpec {
            bytes: Some(Bytes::from(bytes)),
            ..self.clone()
        })
    }
}

/// The hex SHA-256 of the file at `path`.
pub(crate) fn sha256_of_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        context.update(&buffer[..n]);
    }
    Ok(hex(context.finish().as_ref()))
}

/// The hex SHA-256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_bytes_hash_alike() {
        let path = std::env::temp_dir().join(format!("monarch-hash-{}", std::process::id()));
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_of_file(&path).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(sha256_hex(b"abc"), sha256_of_file(&path).unwrap());
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn this_program_carries_its_own_bytes() {
        let spec = ProgramSpec::this_program().unwrap();
        let sent = spec.with_bytes().unwrap();
        assert_eq!(sha256_hex(sent.bytes.as_ref().unwrap()), spec.sha256);
    }
}
