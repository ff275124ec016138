//! What the driver reads about certflow's service processes: whether they
//! still run, and how much memory they used at most.

use certflow_e2e::services::Services;

/// Fails with the log tail of the first service whose process has exited,
/// so a crashed service ends the run at once instead of at its timeout.
pub fn ensure_running(services: &mut Services) -> anyhow::Result<()> {
    for service in services.all_mut() {
        // The error names the process and carries its exit status and log tail.
        service
            .process
            .check_running()
            .map_err(|err| anyhow::anyhow!("a certflow service stopped: {err}"))?;
    }
    Ok(())
}

/// Peak resident set size of process `pid` in bytes (`VmHWM` in
/// `/proc/<pid>/status`): the most memory it has held at once since it
/// started, whenever that was.
pub fn peak_rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path)?;
    parse_vm_hwm(&status).ok_or_else(|| anyhow::anyhow!("{path} has no VmHWM line"))
}

/// The peak RSS of every running service, by process name (`watcher`,
/// `signer-0`, `reporter-0`, …).
pub fn peak_rss_of(services: &Services) -> anyhow::Result<Vec<(String, u64)>> {
    services
        .all()
        .map(|service| {
            let name = service.process.name().to_owned();
            let pid = service
                .process
                .pid()
                .ok_or_else(|| anyhow::anyhow!("{name} is not running"))?;
            Ok((name, peak_rss_bytes(pid)?))
        })
        .collect()
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_peak_rss_is_read_from_vm_hwm_in_kibibytes() {
        let status = "Name:\tcertflow-watcher\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(51200 * 1024));
        assert_eq!(parse_vm_hwm("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_a_peak_rss() {
        assert!(peak_rss_bytes(std::process::id()).is_ok_and(|bytes| bytes > 0));
    }
}
