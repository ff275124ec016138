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

/// The binaries of the local node, built by `scripts/install-node-tools.sh`,
/// and the images `scripts/build-node-images.sh` builds for it.
#[derive(Debug, Clone)]
pub struct NodeTools {
    /// containerd, its runc shim, ctr, runc, kubelet, kube-scheduler and the
    /// CNI plugins, all in one directory (containerd finds the shim and the
    /// CNI plugins there).
    pub bin_dir: PathBuf,
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub runc: PathBuf,
    pub kubelet: PathBuf,
    pub kube_scheduler: PathBuf,
    /// OCI image layout tars and the image names they carry.
    pub pause_image: NodeImage,
    pub busybox_image: NodeImage,
    /// nats-server of `NATS_SERVER_VERSION`, for deploy/overlays/local-node.
    pub nats_image: NodeImage,
}

/// One image tar from `scripts/build-node-images.sh`.
#[derive(Debug, Clone)]
pub struct NodeImage {
    pub tar: PathBuf,
    /// The name in its `io.containerd.image.name` annotation, what Pods name.
    pub name: String,
}

const NODE_TOOLS_COMMAND: &str = "scripts/install-node-tools.sh";
const NODE_IMAGES_COMMAND: &str = "scripts/build-node-images.sh";

impl NodeTools {
    /// Finds the node's binaries and images in the installers' cache
    /// directories. A missing one is an error naming the command that
    /// builds it.
    pub fn locate() -> Result<Self> {
        let versions = pinned_versions()?;
        let get = |key: &str| versions.get(key).map(String::as_str).unwrap_or("unknown");
        let bin_dir = cache_root()
            .join(format!(
                "node-k8s-{}_containerd-{}_runc-{}_cni-{}",
                get("KUBERNETES_VERSION"),
                get("CONTAINERD_VERSION"),
                get("RUNC_VERSION"),
                get("CNI_PLUGINS_VERSION"),
            ))
            .join("bin");
        let find = |tool: &str| -> Result<PathBuf> {
            let path = bin_dir.join(tool);
            if path.is_file() {
                Ok(path)
            } else {
                Err(Error::NodeToolMissing {
                    what: tool.to_owned(),
                    path,
                    command: NODE_TOOLS_COMMAND,
                })
            }
        };
        for tool in [
            "containerd-shim-runc-v2",
            "bridge",
            "host-local",
            "loopback",
            "portmap",
        ] {
            find(tool)?;
        }
        let images_dir = cache_root().join(format!("node-images-{}", get("KUBERNETES_VERSION")));
        let images = ImageList::read(&images_dir, NODE_IMAGES_COMMAND)?;
        let image = |prefix: &str| images.find(prefix);
        Ok(Self {
            containerd: find("containerd")?,
            ctr: find("ctr")?,
            runc: find("runc")?,
            kubelet: find("kubelet")?,
            kube_scheduler: find("kube-scheduler")?,
            pause_image: image("pause")?,
            busybox_image: image("busybox")?,
            nats_image: image("nats")?,
            bin_dir,
        })
    }
}

/// certflow's own images, built from this checkout's binaries by
/// `scripts/build-images.sh` (`make images`) into `target/images/`.
#[derive(Debug, Clone)]
pub struct ProjectImages {
    /// certflow-watcher, certflow-signer and certflow-reporter.
    pub certflow: NodeImage,
    /// The demo's TLS server and client (`crates/example-app`).
    pub example_app: NodeImage,
}

const PROJECT_IMAGES_COMMAND: &str = "scripts/build-images.sh (make images)";

impl ProjectImages {
    /// Finds the images in `$CERTFLOW_IMAGES_DIR` when set, else in the
    /// repository's `target/images/`. A missing one is an error naming the
    /// command that builds it.
    pub fn locate() -> Result<Self> {
        let dir = std::env::var_os("CERTFLOW_IMAGES_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join("target/images"));
        let images = ImageList::read(&dir, PROJECT_IMAGES_COMMAND)?;
        Ok(Self {
            certflow: images.find("certflow.tar")?,
            example_app: images.find("example-app.tar")?,
        })
    }
}

/// An `images.txt` (one `<file> <image name>` a line) and its directory.
struct ImageList {
    dir: PathBuf,
    list: PathBuf,
    entries: Vec<(String, String)>,
    command: &'static str,
}

impl ImageList {
    fn read(dir: &Path, command: &'static str) -> Result<Self> {
        let list = dir.join("images.txt");
        let text = std::fs::read_to_string(&list).map_err(|_| Error::NodeToolMissing {
            what: "the image list".to_owned(),
            path: list.clone(),
            command,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            list,
            entries: parse_image_list(&text),
            command,
        })
    }

    /// The image whose file name starts with `prefix`, checked to exist.
    fn find(&self, prefix: &str) -> Result<NodeImage> {
        let missing = |path: PathBuf| Error::NodeToolMissing {
            what: format!("the {prefix} image"),
            path,
            command: self.command,
        };
        let (file, name) = self
            .entries
            .iter()
            .find(|(file, _)| file.starts_with(prefix))
            .ok_or_else(|| missing(self.list.clone()))?;
        let tar = self.dir.join(file);
        if !tar.is_file() {
            return Err(missing(tar));
        }
        Ok(NodeImage {
            tar,
            name: name.clone(),
        })
    }
}

/// `images.txt`: one `<file> <image name>` a line.
fn parse_image_list(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.trim().split_once(' '))
        .map(|(file, name)| (file.to_owned(), name.trim().to_owned()))
        .collect()
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
            "CONTAINERD_VERSION",
            "RUNC_VERSION",
            "CNI_PLUGINS_VERSION",
        ] {
            let value = versions
                .get(key)
                .unwrap_or_else(|| panic!("{key} is pinned"));
            assert!(value.starts_with('v'), "{key}={value} looks like a version");
        }
    }

    #[test]
    fn the_image_list_pairs_each_tar_with_its_image_name() {
        let images = parse_image_list(
            "pause.tar certflow.local/pause:v1.36.3\nbusybox-1.35.0.tar certflow.local/busybox:1.35.0\n",
        );
        assert_eq!(
            images,
            [
                (
                    "pause.tar".to_owned(),
                    "certflow.local/pause:v1.36.3".to_owned()
                ),
                (
                    "busybox-1.35.0.tar".to_owned(),
                    "certflow.local/busybox:1.35.0".to_owned()
                ),
            ]
        );
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
