//! A container's CPU and memory counters read straight from its cgroup — cgroup v2, or v1's
//! `cpuacct` and `memory` controllers — the way `docker stats` computes them, without a call
//! to the engine: three small reads of kernel pseudo-files per container and sample, where
//! the engine's stats API costs an HTTP round trip and the daemon's own work for each.
//!
//! The container's cgroup is found once, from `/proc/<pid>/cgroup` of its init process, and
//! is used only when its path names the container's id: a pid seen from another pid or
//! cgroup namespace (an agent in a container of its own) then finds nothing, and the caller
//! falls back to the engine. This module only reads; it must never write a cgroup file.

use crate::runtime::ContainerUsage;
use std::path::{Path, PathBuf};

/// Where a container's counters live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cgroup {
    /// The unified hierarchy: `cpu.stat`, `memory.current`, `memory.stat` in one directory.
    V2(PathBuf),
    /// Two v1 controllers: `cpuacct.usage` in one, `memory.usage_in_bytes` and `memory.stat`
    /// in the other.
    V1 { cpuacct: PathBuf, memory: PathBuf },
}

/// The cgroup of the container `id` from its process's `/proc/<pid>/cgroup` text, with the
/// cgroup file systems mounted under `root` (`/sys/fs/cgroup`); `None` when its files are
/// not there or the path does not name the container.
pub(crate) fn find(root: &Path, proc_cgroup: &str, id: &str) -> Option<Cgroup> {
    let mut unified = None;
    let (mut cpuacct, mut memory) = (None, None);
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
        if id.is_empty() || !path.contains(id) {
            continue;
        }
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            unified = Some(rel);
        }
        for c in controllers.split(',') {
            match c {
                "cpuacct" => cpuacct = Some((controllers, rel)),
                "memory" => memory = Some((controllers, rel)),
                _ => {}
            }
        }
    }
    // A host on cgroup v1 also lists the (controller-less) unified hierarchy: v1's
    // controllers come first when both are there.
    if let (Some((cpu_mount, cpu_rel)), Some((mem_mount, mem_rel))) = (cpuacct, memory) {
        let cpu = [root.join("cpuacct").join(cpu_rel), root.join(cpu_mount).join(cpu_rel)]
            .into_iter()
            .find(|d| d.join("cpuacct.usage").is_file());
        let mem = [root.join("memory").join(mem_rel), root.join(mem_mount).join(mem_rel)]
            .into_iter()
            .find(|d| d.join("memory.usage_in_bytes").is_file());
        if let (Some(cpuacct), Some(memory)) = (cpu, mem) {
            return Some(Cgroup::V1 { cpuacct, memory });
        }
    }
    let dir = root.join(unified?);
    (dir.join("cpu.stat").is_file() && dir.join("memory.current").is_file()).then_some(Cgroup::V2(dir))
}

/// Reads the counters now.
pub(crate) fn read(cg: &Cgroup) -> std::io::Result<ContainerUsage> {
    let text = |dir: &Path, file: &str| std::fs::read_to_string(dir.join(file));
    let parsed = match cg {
        Cgroup::V2(dir) => parse_v2(&text(dir, "cpu.stat")?, &text(dir, "memory.current")?, &text(dir, "memory.stat")?),
        Cgroup::V1 { cpuacct, memory } => parse_v1(
            &text(cpuacct, "cpuacct.usage")?,
            &text(memory, "memory.usage_in_bytes")?,
            &text(memory, "memory.stat")?,
        ),
    };
    parsed.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable cgroup counters"))
}

/// The value of `key` in a flat-keyed cgroup file (`key value` lines).
fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

fn parse_v2(cpu_stat: &str, memory_current: &str, memory_stat: &str) -> Option<ContainerUsage> {
    let cpu_nanos = field(cpu_stat, "usage_usec")?.saturating_mul(1000);
    let usage: u64 = memory_current.trim().parse().ok()?;
    let inactive = field(memory_stat, "inactive_file").unwrap_or(0);
    Some(ContainerUsage { cpu_nanos, memory_bytes: usage.saturating_sub(inactive) })
}

fn parse_v1(cpuacct_usage: &str, usage_in_bytes: &str, memory_stat: &str) -> Option<ContainerUsage> {
    let cpu_nanos = cpuacct_usage.trim().parse().ok()?;
    let usage: u64 = usage_in_bytes.trim().parse().ok()?;
    // Docker's CLI subtracts the hierarchy's inactive file cache (`total_inactive_file`),
    // or the group's own when the total is missing.
    let inactive =
        field(memory_stat, "total_inactive_file").or_else(|| field(memory_stat, "inactive_file")).unwrap_or(0);
    Some(ContainerUsage { cpu_nanos, memory_bytes: usage.saturating_sub(inactive) })
}

/// The same counters from the engine's stats document (`GET /containers/<id>/stats`), for a
/// container whose cgroup cannot be read.
pub(crate) fn from_engine_stats(stats: &serde_json::Value) -> Option<ContainerUsage> {
    let cpu_nanos = stats.pointer("/cpu_stats/cpu_usage/total_usage")?.as_u64()?;
    let usage = stats.pointer("/memory_stats/usage").and_then(serde_json::Value::as_u64).unwrap_or(0);
    let inner = stats.pointer("/memory_stats/stats");
    let stat = |k: &str| inner.and_then(|s| s.get(k)).and_then(serde_json::Value::as_u64);
    let inactive = stat("total_inactive_file").or_else(|| stat("inactive_file")).unwrap_or(0);
    Some(ContainerUsage { cpu_nanos, memory_bytes: usage.saturating_sub(inactive) })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ID: &str = "bb0ebc299fc30696479dc70307ed2ffc103327306d89b970965951332359803f";

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn finds_and_reads_a_v1_container() {
        let root = tempfile::tempdir().unwrap();
        let rel = format!("docker/{ID}");
        write(&root.path().join("cpuacct").join(&rel), "cpuacct.usage", "18052299\n");
        let mem = root.path().join("memory").join(&rel);
        write(&mem, "memory.usage_in_bytes", "2195456\n");
        write(
            &mem,
            "memory.stat",
            "cache 1500000\ninactive_file 1503232\ntotal_cache 9\ntotal_inactive_file 1503232\n",
        );
        // As a cgroup v1 host with the unified hierarchy beside it lists it.
        let proc = format!("4:memory:/{rel}\n2:cpuacct:/{rel}\n1:cpu:/{rel}\n0::/{rel}\n");
        let cg = find(root.path(), &proc, ID).unwrap();
        assert!(matches!(cg, Cgroup::V1 { .. }), "{cg:?}");
        // `docker stats` showed 676KiB for this container.
        assert_eq!(read(&cg).unwrap(), ContainerUsage { cpu_nanos: 18_052_299, memory_bytes: 676 * 1024 });
    }

    #[test]
    fn finds_and_reads_a_v2_container_under_systemd() {
        let root = tempfile::tempdir().unwrap();
        let rel = format!("system.slice/docker-{ID}.scope");
        let dir = root.path().join(&rel);
        write(&dir, "cpu.stat", "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n");
        write(&dir, "memory.current", "10485760\n");
        write(&dir, "memory.stat", "anon 4096\nfile 8192\nactive_file 100\ninactive_file 4194304\n");
        let cg = find(root.path(), &format!("0::/{rel}\n"), ID).unwrap();
        assert_eq!(cg, Cgroup::V2(dir));
        assert_eq!(read(&cg).unwrap(), ContainerUsage { cpu_nanos: 2_500_000, memory_bytes: 6 * 1024 * 1024 });
    }

    #[test]
    fn a_path_that_does_not_name_the_container_is_not_trusted() {
        let root = tempfile::tempdir().unwrap();
        write(&root.path().join("init.scope"), "cpu.stat", "usage_usec 1\n");
        write(&root.path().join("init.scope"), "memory.current", "1\n");
        // Another namespace's pid, or the agent's own cgroup namespace ("/").
        assert_eq!(find(root.path(), "0::/init.scope\n", ID), None);
        assert_eq!(find(root.path(), "0::/\n", ID), None);
        // The right name but no files (the container is gone): nothing either.
        assert_eq!(find(root.path(), &format!("0::/docker/{ID}\n"), ID), None);
    }

    #[test]
    fn engine_stats_count_memory_as_docker_does() {
        let v1 = serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 123_456_789u64}},
            "memory_stats": {"usage": 10_000_000u64, "stats": {"total_inactive_file": 4_000_000u64, "inactive_file": 1}},
        });
        assert_eq!(from_engine_stats(&v1), Some(ContainerUsage { cpu_nanos: 123_456_789, memory_bytes: 6_000_000 }));
        let v2 = serde_json::json!({
            "cpu_stats": {"cpu_usage": {"total_usage": 5u64}},
            "memory_stats": {"usage": 300u64, "stats": {"inactive_file": 100u64}},
        });
        assert_eq!(from_engine_stats(&v2), Some(ContainerUsage { cpu_nanos: 5, memory_bytes: 200 }));
        // A stopped container's stats carry no counters.
        assert_eq!(from_engine_stats(&serde_json::json!({"cpu_stats": {}})), None);
    }
}
