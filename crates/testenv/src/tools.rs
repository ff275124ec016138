//! Where the binaries built by `scripts/install-tools.sh` live.
//!
//! The versions are read from `scripts/tool-versions.env`, the one place they
//! are pinned, so this path always agrees with the installer's cache layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binaries of the local control plane, resolved and checked to exist.
#[derive(Debug, Clone)]
pub struct Tools {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kubectl: PathBuf,
    pub nats_server: PathBuf,
    pub bin_dir: PathBuf,
}

impl Tools {
    /// Finds the tools in `CERTFLOW_TOOLS_BIN` when set, else in the
    /// installer's per-version cache directory. A missing binary is an error
    /// that names the command which builds it.
    pub fn locate() -> Result<Self> {
        let bin_dir = match std::env::var_os("CERTFLOW_TOOLS_BIN") {
            Some(dir) => PathBuf::from(dir),
            None => cache_bin_dir()?,
        };
        let find = |tool: &'static str| -> Result<PathBuf> {
            let path = bin_dir.join(tool);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::ToolMissing { tool, path })
            }
        };
        Ok(Self {
            etcd: find("etcd")?,
            kube_apiserver: find("kube-apiserver")?,
            kube_controller_manager: find("kube-controller-manager")?,
            kubectl: find("kubectl")?,
            nats_server: find("nats-server")?,
            bin_dir,
        })
    }
}

/// The kube-apiserver and kubectl of one Kubernetes release, with the
/// version `scripts/tool-versions.env` pins for it.
#[derive(Debug, Clone)]
pub struct KubeRelease {
    /// The pinned version, such as `v1.31.14`.
    pub version: String,
    pub kube_apiserver: PathBuf,
    pub kubectl: PathBuf,
}

impl KubeRelease {
    /// The release the local control plane runs (`KUBERNETES_VERSION`),
    /// from the same directory as [`Tools::locate`].
    pub fn current() -> Result<Self> {
        let tools = Tools::locate()?;
        Ok(Self {
            version: pinned_version("KUBERNETES_VERSION")?,
            kube_apiserver: tools.kube_apiserver,
            kubectl: tools.kubectl,
        })
    }

    /// The oldest Kubernetes release the docs claim (`KUBE_OLDEST_VERSION`).
    pub fn oldest() -> Result<Self> {
        Self::extra("KUBE_OLDEST_VERSION")
    }

    /// The newest Kubernetes release on the Go module proxy when it was
    /// pinned (`KUBE_NEWEST_VERSION`).
    pub fn newest() -> Result<Self> {
        Self::extra("KUBE_NEWEST_VERSION")
    }

    /// A release pinned under `key` of which `scripts/install-tools.sh`
    /// builds only kube-apiserver and kubectl, under
    /// `.../certflow/tools/kubernetes-<version>/bin`.
    fn extra(key: &str) -> Result<Self> {
        let version = pinned_version(key)?;
        let bin_dir = cache_root()
            .join(format!("kubernetes-{version}"))
            .join("bin");
        let find = |tool: &'static str| -> Result<PathBuf> {
            let path = bin_dir.join(tool);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::ToolMissing { tool, path })
            }
        };
        Ok(Self {
            kube_apiserver: find("kube-apiserver")?,
            kubectl: find("kubectl")?,
            version,
        })
    }
}

/// The version `scripts/tool-versions.env` pins under `key`, such as
/// `KUBERNETES_VERSION`.
pub fn pinned_version(key: &str) -> Result<String> {
    pinned_versions()?
        .remove(key)
        .ok_or_else(|| Error::Other(format!("scripts/tool-versions.env pins no {key}")))
}

fn pinned_versions() -> Result<HashMap<String, String>> {
    let path = repo_root().join("scripts/tool-versions.env");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Versions {
        path: path.clone(),
        source,
    })?;
    Ok(parse_env(&text))
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/certflow/tools`, as in the installer.
fn cache_root() -> PathBuf {
    let cache = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache"),
    };
    cache.join("certflow/tools")
}

/// Mirrors the cache layout of `scripts/install-tools.sh`.
fn cache_bin_dir() -> Result<PathBuf> {
    let path = repo_root().join("scripts/tool-versions.env");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Versions {
        path: path.clone(),
        source,
    })?;
    let versions = parse_env(&text);
    let get = |key: &str| versions.get(key).map(String::as_str).unwrap_or("unknown");
    let tag = format!(
        "k8s-{}_etcd-{}_nats-{}",
        get("KUBERNETES_VERSION"),
        get("ETCD_VERSION"),
        get("NATS_SERVER_VERSION")
    );
    Ok(cache_root().join(tag).join("bin"))
}

fn parse_env(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_versions_file_names_every_tool() {
        let text = std::fs::read_to_string(repo_root().join("scripts/tool-versions.env"))
            .expect("tool-versions.env is readable");
        let versions = parse_env(&text);
        for key in [
            "KUBERNETES_VERSION",
            "KUBE_OLDEST_VERSION",
            "KUBE_NEWEST_VERSION",
            "ETCD_VERSION",
            "NATS_SERVER_VERSION",
        ] {
            let value = versions
                .get(key)
                .unwrap_or_else(|| panic!("{key} is pinned"));
            assert!(value.starts_with('v'), "{key}={value} looks like a version");
        }
    }

    #[test]
    fn a_missing_tool_names_the_install_command() {
        let err = Error::ToolMissing {
            tool: "etcd",
            path: PathBuf::from("/nowhere/etcd"),
        };
        assert!(err.to_string().contains("scripts/install-tools.sh"));
    }
}
