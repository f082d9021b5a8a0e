//! The process's resident memory, for the loader's reports.

/// Resident set size of this process, from `/proc/self/status` (Linux).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentMemory {
    /// Bytes resident now (`VmRSS`).
    pub current: u64,
    /// Most bytes resident at any time so far (`VmHWM`).
    pub peak: u64,
}

impl ResidentMemory {
    /// Reads the figures, or `None` where `/proc/self/status` is missing or lacks them.
    pub fn read() -> Option<Self> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&status)
    }

    fn parse(status: &str) -> Option<Self> {
        let field = |name: &str| -> Option<u64> {
            let line = status.lines().find(|line| line.starts_with(name))?;
            let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
            Some(kib * 1024)
        };
        Some(ResidentMemory { current: field("VmRSS:")?, peak: field("VmHWM:")? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kib_lines() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\nThreads:\t3\n";
        assert_eq!(
            ResidentMemory::parse(status),
            Some(ResidentMemory { current: 1024 * 1024, peak: 2048 * 1024 })
        );
        assert_eq!(ResidentMemory::parse("VmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn reads_this_process() {
        if let Some(memory) = ResidentMemory::read() {
            assert!(memory.current > 0, "{memory:?}");
            assert!(memory.peak >= memory.current, "{memory:?}");
        }
    }
}
