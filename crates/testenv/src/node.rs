//! A local node that runs real Pods: containerd and a kubelet registered
//! with a [`TestEnv`]'s API server.
//!
//! Observes the Pods the API server binds to the node (the kubelet does);
//! writes everything under the node's own directory in the environment's:
//! containerd's root, state and socket, runc's state, the kubelet's root
//! directory, Pod logs, and configuration. On the host it adds only what it
//! must and takes it away again on drop: a bridge interface `cfn<pid>n<n>`
//! holding the node's private IPv4 address (the kubelet refuses a loopback
//! node IP), the cgroups under `/kubepods`, the kubelet's kernel tunables
//! (saved and restored), and the few paths the kubelet and containerd do not
//! let a caller move (`/var/lib/kubelet/device-plugins`,
//! `/var/log/containers`, `/run/containerd/s`, removed when this node
//! created them). It never touches another interface, iptables, or the
//! host's DNS: Pods get the node's own `resolv.conf`.
//!
//! Dropping a `Node` stops kube-scheduler and the kubelet, removes every
//! container through containerd, stops containerd, closes the API
//! forwarder, and then sweeps what could survive that:
//! shims (they escape the parent-death signal), processes in Pod cgroups,
//! mounts under the node's directory (Secret tmpfs, overlay root
//! filesystems, network namespaces), the `/kubepods` cgroups, and the
//! interface. [`Footprint::leftovers`] lists anything still there, so a test
//! can check the sweep. A test process killed before its node was dropped
//! leaves shims, containers and mounts behind; the next `Node::start`
//! sweeps the nodes of processes that are gone. One node at a time per
//! host: the kubelet's cgroup tree `/kubepods` is the host's.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node as NodeObject;
use kube::api::Api;

use crate::error::{Error, Result, io};
use crate::forward::Forwarder;
use crate::process::{ManagedProcess, free_ports};
use crate::tools::{NodeImage, NodeTools};
use crate::{TestEnv, kubeconfig};

/// How long the node may take to register and become Ready.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);
/// The kubelet's kernel tunables (`setupKernelTunables`), which it sets when
/// `protectKernelDefaults` is false and refuses to start over when true.
const KERNEL_TUNABLES: [&str; 6] = [
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
];
/// Host paths the kubelet or containerd write whatever their configuration
/// says: the device-plugin socket, the `/var/log/containers` links, the
/// shims' sockets. Removed on drop when this node created them.
const FIXED_HOST_DIRS: [&str; 3] = ["/var/lib/kubelet", "/var/log/containers", "/run/containerd"];

/// A running containerd and kubelet, registered as node [`Node::name`].
#[derive(Debug)]
pub struct Node {
    name: String,
    ip: Ipv4Addr,
    tools: NodeTools,
    footprint: Footprint,
    api_forwarder: Option<Forwarder>,
    scheduler: Option<ManagedProcess>,
    kubelet: Option<ManagedProcess>,
    containerd: Option<ManagedProcess>,
    host_changes: HostChanges,
}

/// What the node changed on the host outside its directory and interface,
/// to undo on drop, and also written to `<dir>/host-changes` so that the
/// sweep of a killed test's node can undo it too.
#[derive(Debug, Default, PartialEq)]
struct HostChanges {
    /// Kernel tunables (`/proc/sys/...`) and their values before the kubelet.
    tunables: Vec<(PathBuf, String)>,
    /// Host directories that did not exist before the node.
    created_dirs: Vec<PathBuf>,
}

impl HostChanges {
    const FILE: &str = "host-changes";

    /// What the host is like now, before the node changes it.
    fn record() -> Self {
        Self {
            tunables: KERNEL_TUNABLES
                .iter()
                .map(|key| Path::new("/proc/sys").join(key))
                .filter_map(|path| {
                    let value = std::fs::read_to_string(&path).ok()?;
                    Some((path, value.trim().to_owned()))
                })
                .collect(),
            created_dirs: FIXED_HOST_DIRS
                .iter()
                .map(PathBuf::from)
                .filter(|path| !path.exists())
                .collect(),
        }
    }

    fn to_text(&self) -> String {
        let tunables = self
            .tunables
            .iter()
            .map(|(path, value)| format!("tunable\t{}\t{value}\n", path.display()));
        let dirs = self
            .created_dirs
            .iter()
            .map(|path| format!("created\t{}\n", path.display()));
        tunables.chain(dirs).collect()
    }

    fn from_text(text: &str) -> Self {
        let mut changes = Self::default();
        for line in text.lines() {
            match line.split('\t').collect::<Vec<_>>()[..] {
                ["tunable", path, value] => {
                    changes.tunables.push((path.into(), value.to_owned()));
                }
                ["created", path] => changes.created_dirs.push(path.into()),
                _ => {}
            }
        }
        changes
    }

    fn undo(&self) {
        for (path, value) in &self.tunables {
            if let Err(err) = std::fs::write(path, value) {
                tracing::warn!(path = %path.display(), %err, "restoring a kernel tunable");
            }
        }
        for dir in &self.created_dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Where a node lives on the host, kept after the node is dropped so a test
/// can check that nothing is left ([`Footprint::leftovers`]).
#[derive(Debug, Clone)]
pub struct Footprint {
    dir: PathBuf,
    bin_dir: PathBuf,
    link: String,
}

impl Node {
    /// Starts a node in `<env dir>/node-<pid>-<n>`: creates its interface,
    /// starts containerd, imports the pause, busybox and NATS images, starts
    /// the kubelet with a `system:node:<name>` client certificate from the
    /// environment's client CA, waits until the Node object is Ready, then
    /// starts kube-scheduler and forwards the node's address to the API
    /// server ([`Node::api_address`]).
    /// Fails, leaving nothing behind, when a tool or image is missing (the
    /// error names the command that builds it) or a step fails.
    pub async fn start(env: &TestEnv) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let tools = NodeTools::locate()?;
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("node-{pid}-{n}");
        let dir = env.dir().join(&name);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        sweep_nodes_of_dead_processes(&tools.bin_dir);
        let host_changes = HostChanges::record();
        write(&dir.join(HostChanges::FILE), &host_changes.to_text())?;
        // From here on a failure drops `node`, which undoes every step taken.
        let mut node = Self {
            name,
            ip: Ipv4Addr::UNSPECIFIED,
            footprint: Footprint {
                dir,
                bin_dir: tools.bin_dir.clone(),
                link: format!("cfn{pid}n{n}"),
            },
            tools,
            api_forwarder: None,
            scheduler: None,
            kubelet: None,
            containerd: None,
            host_changes,
        };
        node.ip = create_link(&node.footprint.link)?;
        node.start_containerd().await?;
        node.import_images(&[
            &node.tools.pause_image,
            &node.tools.busybox_image,
            &node.tools.nats_image,
        ])?;
        node.start_kubelet(env)?;
        node.wait_until_ready(env).await?;
        node.start_scheduler(env)?;
        node.api_forwarder = Some(Forwarder::start(
            SocketAddrV4::new(node.ip, env.api_port()).into(),
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, env.api_port()).into(),
        )?);
        tracing::info!(node = %node.name, ip = %node.ip, dir = %node.dir().display(), "node ready");
        Ok(node)
    }

    /// The Node object's name, for `spec.nodeName`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's private IPv4 address, on its own interface.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// Where Pods on the node's bridge reach the API server: this address
    /// forwards to its loopback port. The serving certificate names
    /// `kubernetes.default.svc`, not this IP, so a Pod maps that name here
    /// (`hostAliases`) and sets `KUBERNETES_SERVICE_HOST` to it.
    pub fn api_address(&self) -> SocketAddrV4 {
        SocketAddrV4::new(
            self.ip,
            self.api_forwarder.as_ref().map_or(0, |f| f.addr().port()),
        )
    }

    /// Imports OCI image layout tars into the node's containerd, where the
    /// kubelet finds them (`imagePullPolicy: IfNotPresent` or `Never`).
    pub fn import_images(&self, images: &[&NodeImage]) -> Result<()> {
        for image in images {
            self.ctr(&["images", "import", &image.tar.display().to_string()])?;
        }
        Ok(())
    }

    /// The name of the imported busybox image (never pulled: `IfNotPresent`
    /// finds it).
    pub fn busybox_image(&self) -> &str {
        &self.tools.busybox_image.name
    }

    /// The directory holding the node's state, configuration and logs.
    pub fn dir(&self) -> &Path {
        &self.footprint.dir
    }

    /// What to check after the node is dropped.
    pub fn footprint(&self) -> Footprint {
        self.footprint.clone()
    }

    fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// Runs `ctr` in containerd's `k8s.io` namespace (the CRI's) and returns
    /// its stdout.
    fn ctr(&self, args: &[&str]) -> Result<String> {
        let socket = self.socket().display().to_string();
        let mut command = Command::new(&self.tools.ctr);
        command
            .args(["--address", &socket, "--namespace", "k8s.io"])
            .args(args);
        run(command)
    }

    async fn start_containerd(&mut self) -> Result<()> {
        let dir = self.dir().to_owned();
        for sub in ["cni/net.d", "containerd"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(io(format!("creating {}", dir.join(sub).display())))?;
        }
        write(
            &dir.join("cni/net.d/10-certflow.conflist"),
            &self.cni_config(),
        )?;
        let config = dir.join("containerd.toml");
        write(&config, &self.containerd_config())?;
        let process = ManagedProcess::start_with_env(
            "containerd",
            &self.tools.containerd,
            vec![format!("--config={}", config.display())],
            vec![("PATH".into(), path_with(&self.tools.bin_dir))],
            dir.join("containerd.log"),
        )?;
        let socket = self.socket();
        let process = self.containerd.insert(process);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            process.check_running()?;
            if socket.exists() {
                break;
            }
            if Instant::now() > deadline {
                return Err(Error::NotReady {
                    process: "containerd".into(),
                    seconds: READY_TIMEOUT.as_secs(),
                    log: process.log_path().to_owned(),
                    tail: process.tail(30),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        self.ctr(&["version"]).map(drop)
    }

    /// containerd's configuration: every path in the node's directory, the
    /// local pause image as the sandbox image (never pulled), runc with
    /// cgroupfs, CNI from the node's own directories. NRI is off: it would
    /// listen on `/var/run/nri`. The OOM score is kept at or above
    /// containerd's own, because this machine's root lacks
    /// `CAP_SYS_RESOURCE` and runc fails to lower it to the kubelet's -998
    /// for the sandbox ("failed to update /proc/self/oom_score_adj:
    /// Permission denied"). Version 3, although containerd 2.4 writes 4 and
    /// logs that it migrated this one: under `version = 4` the `[grpc]`
    /// address below is ignored and containerd listens on
    /// `/run/containerd/containerd.sock`.
    fn containerd_config(&self) -> String {
        let dir = self.dir().display().to_string();
        let bin = self.tools.bin_dir.display();
        let pause = &self.tools.pause_image.name;
        let runc = self.tools.runc.display();
        format!(
            r#"version = 3
root = "{dir}/containerd/root"
state = "{dir}/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri"]

[grpc]
  address = "{dir}/containerd.sock"

[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{dir}/containerd/opt"

[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{pause}"

[plugins."io.containerd.cri.v1.runtime"]
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = true
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        Root = "{dir}/runc"
        SystemdCgroup = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bin}"]
    conf_dir = "{dir}/cni/net.d"
    use_internal_loopback = true
"#
        )
    }

    /// The Pod network: the bridge plugin on the node's own interface, with
    /// addresses from its /24, no gateway route and no masquerading, so a
    /// Pod reaches nothing but the node. Host-network Pods never use it; the
    /// kubelet needs a network configuration to call the node Ready.
    fn cni_config(&self) -> String {
        let octets = self.ip.octets();
        let subnet = format!("{}.{}.{}.0/24", octets[0], octets[1], octets[2]);
        serde_json::json!({
            "cniVersion": "1.0.0",
            "name": "certflow",
            "plugins": [{
                "type": "bridge",
                "bridge": self.footprint.link,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": subnet, "gateway": self.ip.to_string() }]],
                    "dataDir": self.dir().join("cni/ipam"),
                },
            }],
        })
        .to_string()
    }

    fn start_kubelet(&mut self, env: &TestEnv) -> Result<()> {
        let dir = self.dir().to_owned();
        let (cert, key) = env
            .pki()
            .client_certificate(&format!("system:node:{}", self.name), "system:nodes")?;
        let kubeconfig = dir.join("kubelet.kubeconfig");
        kubeconfig::write(
            &kubeconfig,
            env.api_url(),
            env.serving_ca_pem(),
            &format!("system:node:{}", self.name),
            kubeconfig::Credentials::ClientCertificate {
                cert_pem: &cert,
                key_pem: &key,
            },
        )?;
        // Pods get this, never the host's resolv.conf: nothing here resolves
        // names, and no query should leave the machine.
        write(&dir.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
        let [port, healthz_port] = free_ports()?;
        let config = dir.join("kubelet.yaml");
        write(
            &config,
            &self.kubelet_config(&env.pki().client_ca, port, healthz_port),
        )?;
        let root = dir.join("kubelet");
        let process = ManagedProcess::start_with_env(
            "kubelet",
            &self.tools.kubelet,
            vec![
                format!("--config={}", config.display()),
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--root-dir={}", root.display()),
                format!("--cert-dir={}", root.join("pki").display()),
                format!("--hostname-override={}", self.name),
                format!("--node-ip={}", self.ip),
                "--v=2".into(),
            ],
            vec![("PATH".into(), path_with(&self.tools.bin_dir))],
            dir.join("kubelet.log"),
        )?;
        self.kubelet = Some(process);
        Ok(())
    }

    /// kube-scheduler with the environment's admin credentials: Pods of
    /// Deployments and StatefulSets name no node. No serving port and no
    /// leader election: one scheduler per node, one node per environment.
    fn start_scheduler(&mut self, env: &TestEnv) -> Result<()> {
        let process = ManagedProcess::start(
            "kube-scheduler",
            &self.tools.kube_scheduler,
            vec![
                format!("--kubeconfig={}", env.kubeconfig().display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
            self.dir().join("kube-scheduler.log"),
        )?;
        self.scheduler = Some(process);
        Ok(())
    }

    /// The kubelet's configuration (`kubelet.config.k8s.io/v1beta1`). cgroup
    /// v1 and cgroupfs, because the host has no cgroup v2 controllers and
    /// no systemd; the kubelet's API on the node's address only, for
    /// clients of the environment's client CA; eviction and image garbage
    /// collection as good as off, so a busy disk never evicts a test's Pod.
    fn kubelet_config(&self, client_ca: &Path, port: u16, healthz_port: u16) -> String {
        let dir = self.dir().display().to_string();
        let socket = self.socket().display().to_string();
        let client_ca = client_ca.display();
        let ip = self.ip;
        format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://{socket}
resolvConf: {dir}/resolv.conf
podLogsDir: {dir}/pod-logs
volumePluginDir: {dir}/volume-plugins
address: {ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: {client_ca}
authorization:
  mode: Webhook
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
failSwapOn: false
serializeImagePulls: false
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
"#
        )
    }

    async fn wait_until_ready(&mut self, env: &TestEnv) -> Result<()> {
        let nodes: Api<NodeObject> = Api::all(env.client().await?);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            for process in [&mut self.containerd, &mut self.kubelet]
                .into_iter()
                .flatten()
            {
                process.check_running()?;
            }
            let ready = nodes.get_opt(&self.name).await?.is_some_and(|node| {
                node.status
                    .and_then(|status| status.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True")
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let kubelet = self.kubelet.as_ref().expect("the kubelet was started");
                return Err(Error::NotReady {
                    process: format!("kubelet (node {} Ready)", self.name),
                    seconds: READY_TIMEOUT.as_secs(),
                    log: kubelet.log_path().to_owned(),
                    tail: kubelet.tail(40),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes every container and sandbox through containerd, so each shim
    /// unmounts its root filesystems and exits on its own.
    fn remove_containers(&self) {
        let Ok(tasks) = self.ctr(&["tasks", "list", "--quiet"]) else {
            return;
        };
        for task in tasks.split_whitespace() {
            let _ = self.ctr(&["tasks", "delete", "--force", task]);
        }
        if let Ok(containers) = self.ctr(&["containers", "list", "--quiet"]) {
            for container in containers.split_whitespace() {
                let _ = self.ctr(&["containers", "delete", container]);
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut scheduler) = self.scheduler.take() {
            scheduler.terminate(Duration::from_secs(5));
        }
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.terminate(Duration::from_secs(5));
        }
        if self.containerd.is_some() {
            self.remove_containers();
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.terminate(Duration::from_secs(5));
        }
        // After the containers: a Pod's open watch ends with its container.
        drop(self.api_forwarder.take());
        self.footprint.sweep();
        remove_pod_log_links(&self.footprint.dir);
        self.host_changes.undo();
        let _ = std::fs::remove_file(self.footprint.dir.join(HostChanges::FILE));
    }
}

impl Footprint {
    /// Everything of this node still on the host, one line each: processes
    /// (the node's binaries working for this node, and anything in a Pod
    /// cgroup), mounts under its directory, the `/kubepods` cgroups, its
    /// interface, and `/var/log/containers` links into its directory.
    /// Empty once the node is dropped.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self
            .processes()
            .into_iter()
            .map(|(pid, what)| format!("process {pid}: {what}"))
            .collect();
        found.extend(
            mounts_under(&self.dir)
                .into_iter()
                .map(|path| format!("mount {}", path.display())),
        );
        found.extend(
            pod_cgroups()
                .into_iter()
                .map(|path| format!("cgroup {}", path.display())),
        );
        if Path::new("/sys/class/net").join(&self.link).exists() {
            found.push(format!("interface {}", self.link));
        }
        found.extend(
            pod_log_links(&self.dir)
                .into_iter()
                .map(|path| format!("link {}", path.display())),
        );
        found
    }

    /// Kills what escaped the orderly shutdown, unmounts, removes the Pod
    /// cgroups and the interface.
    fn sweep(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let processes = self.processes();
            if processes.is_empty() || Instant::now() > deadline {
                break;
            }
            for (pid, _) in processes {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Deepest first, so a mount inside another comes off before it.
        let mut mounts = mounts_under(&self.dir);
        mounts.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        for mount in mounts {
            let unmounted = Command::new("umount")
                .arg(&mount)
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|status| status.success());
            if !unmounted {
                let _ = Command::new("umount").arg("--lazy").arg(&mount).status();
            }
        }
        let mut cgroups = pod_cgroups();
        cgroups.sort_by_key(|path| std::cmp::Reverse(path.components().count()));
        for cgroup in cgroups {
            if let Err(err) = std::fs::remove_dir(&cgroup) {
                tracing::warn!(cgroup = %cgroup.display(), %err, "removing a Pod cgroup");
            }
        }
        if Path::new("/sys/class/net").join(&self.link).exists() {
            let _ = Command::new("ip")
                .args(["link", "delete", &self.link])
                .status();
        }
    }

    /// This node's processes: the node's binaries whose command line names
    /// its directory (kubelet, containerd, shims, runc), and every process in
    /// a Pod cgroup.
    fn processes(&self) -> Vec<(u32, String)> {
        let dir = self.dir.display().to_string();
        let in_pod_cgroup = pids_in_pod_cgroups();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| *pid != std::process::id())
            .filter_map(|pid| {
                let proc = PathBuf::from(format!("/proc/{pid}"));
                let cmdline = std::fs::read(proc.join("cmdline")).ok()?;
                let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                let exe = std::fs::read_link(proc.join("exe")).unwrap_or_default();
                let ours = exe.starts_with(&self.bin_dir) && cmdline.contains(&dir);
                (ours || in_pod_cgroup.contains(&pid)).then(|| (pid, cmdline.trim().to_owned()))
            })
            .collect()
    }
}

/// `PATH` for containerd and the kubelet: the node's binaries first (the
/// shim, runc, the CNI plugins), then the system's (`mount`, `umount`).
fn path_with(bin_dir: &Path) -> String {
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin_dir.display()
    )
}

fn write(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(io(format!("writing {}", path.display())))
}

/// Runs `command`, returning its stdout, or an error with its stderr.
fn run(mut command: Command) -> Result<String> {
    let what = format!("{command:?}");
    let output = command.output().map_err(io(format!("running {what}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(Error::Other(format!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

fn ip(args: &[&str]) -> Result<String> {
    let mut command = Command::new("ip");
    command.args(args);
    run(command)
}

/// Creates bridge `link` with the first free 10.213.<k>.1/24 (a /24 no
/// interface on the host has an address in) and returns that address.
fn create_link(link: &str) -> Result<Ipv4Addr> {
    let in_use: HashSet<[u8; 3]> = ip(&["-4", "-o", "address", "show"])?
        .lines()
        .filter_map(|line| {
            let address = line
                .split_whitespace()
                .skip_while(|w| *w != "inet")
                .nth(1)?;
            let ip: Ipv4Addr = address.split('/').next()?.parse().ok()?;
            let [a, b, c, _] = ip.octets();
            Some([a, b, c])
        })
        .collect();
    let third = (0..=255u8)
        .find(|k| !in_use.contains(&[10, 213, *k]))
        .ok_or_else(|| Error::Other("every 10.213.<k>.0/24 is in use on this host".into()))?;
    let address = Ipv4Addr::new(10, 213, third, 1);
    ip(&["link", "add", link, "type", "bridge"])?;
    ip(&["address", "add", &format!("{address}/24"), "dev", link])?;
    ip(&["link", "set", link, "up"])?;
    Ok(address)
}

/// Sweeps the nodes of test processes that are gone (killed before their
/// nodes were dropped): their shims, containers, mounts and interfaces,
/// found by the `node-<pid>-<n>` directory in mount points and command lines
/// and by the `cfn<pid>n<n>` interface names.
fn sweep_nodes_of_dead_processes(bin_dir: &Path) {
    let dead = |pid: u32| !Path::new(&format!("/proc/{pid}")).exists();
    let mut stale: HashSet<(PathBuf, u32, u32)> = HashSet::new();
    let mut candidates: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_mount_path))
        .collect();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let proc = entry.path();
            if std::fs::read_link(proc.join("exe")).is_ok_and(|exe| exe.starts_with(bin_dir))
                && let Ok(cmdline) = std::fs::read(proc.join("cmdline"))
            {
                candidates.extend(
                    String::from_utf8_lossy(&cmdline)
                        .split('\0')
                        .map(str::to_owned),
                );
            }
        }
    }
    for candidate in candidates {
        if let Some((dir, pid, n)) = node_dir_in(Path::new(&candidate))
            && dead(pid)
        {
            stale.insert((dir, pid, n));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/sys/class/net") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((pid, _)) = link_owner(&name)
                && dead(pid)
            {
                let _ = ip(&["link", "delete", &name]);
            }
        }
    }
    for (dir, pid, n) in stale {
        tracing::warn!(dir = %dir.display(), "sweeping the node of a test process that is gone");
        Footprint {
            dir: dir.clone(),
            bin_dir: bin_dir.to_owned(),
            link: format!("cfn{pid}n{n}"),
        }
        .sweep();
        remove_pod_log_links(&dir);
        let file = dir.join(HostChanges::FILE);
        if let Ok(text) = std::fs::read_to_string(&file) {
            HostChanges::from_text(&text).undo();
            let _ = std::fs::remove_file(file);
        }
    }
}

/// The node directory (`…/node-<pid>-<n>`) `path` lies in, with its pid and n.
fn node_dir_in(path: &Path) -> Option<(PathBuf, u32, u32)> {
    let mut dir = PathBuf::new();
    for component in path.components() {
        dir.push(component);
        let name = component.as_os_str().to_str()?;
        if let Some(rest) = name.strip_prefix("node-")
            && let Some((pid, n)) = rest.split_once('-')
            && let (Ok(pid), Ok(n)) = (pid.parse(), n.parse())
        {
            return Some((dir, pid, n));
        }
    }
    None
}

/// The pid and n of interface `cfn<pid>n<n>`.
fn link_owner(name: &str) -> Option<(u32, u32)> {
    let (pid, n) = name.strip_prefix("cfn")?.split_once('n')?;
    Some((pid.parse().ok()?, n.parse().ok()?))
}

/// Mount points at or under `dir`, from `/proc/self/mountinfo`.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_path(field)))
        .filter(|path| path.starts_with(dir))
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mount_path(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Every `kubepods` cgroup directory (and those below it) in every cgroup
/// hierarchy.
fn pod_cgroups() -> Vec<PathBuf> {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for hierarchy in hierarchies.flatten() {
        let root = hierarchy.path().join("kubepods");
        if root.is_dir() {
            collect_dirs(&root, &mut found);
        }
    }
    found
}

fn collect_dirs(dir: &Path, found: &mut Vec<PathBuf>) {
    found.push(dir.to_owned());
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                collect_dirs(&entry.path(), found);
            }
        }
    }
}

fn pids_in_pod_cgroups() -> HashSet<u32> {
    pod_cgroups()
        .iter()
        .filter_map(|cgroup| std::fs::read_to_string(cgroup.join("cgroup.procs")).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| line.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// The kubelet's `/var/log/containers/*.log` links into `dir`.
fn pod_log_links(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/var/log/containers") else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| std::fs::read_link(path).is_ok_and(|target| target.starts_with(dir)))
        .collect()
}

fn remove_pod_log_links(dir: &Path) {
    for link in pod_log_links(dir) {
        let _ = std::fs::remove_file(link);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_directory_is_found_in_paths_below_it() {
        assert_eq!(
            node_dir_in(Path::new("/t/env-1-0/node-42-3/kubelet/pods/x")),
            Some((PathBuf::from("/t/env-1-0/node-42-3"), 42, 3))
        );
        assert_eq!(node_dir_in(Path::new("/t/env-1-0/nodes/x")), None);
        assert_eq!(link_owner("cfn42n3"), Some((42, 3)));
        assert_eq!(link_owner("cfnx"), None);
        assert_eq!(link_owner("eth0"), None);
    }

    #[test]
    fn host_changes_survive_their_file() {
        let changes = HostChanges {
            tunables: vec![("/proc/sys/kernel/panic".into(), "1".into())],
            created_dirs: vec!["/run/containerd".into()],
        };
        assert_eq!(HostChanges::from_text(&changes.to_text()), changes);
    }

    #[test]
    fn mount_paths_with_spaces_are_unescaped() {
        assert_eq!(unescape_mount_path("/a\\040b/c\\134d"), "/a b/c\\d");
    }
}
