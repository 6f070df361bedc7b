//! How busy this machine's CPUs were over an interval, from `/proc/stat`:
//! work that already fills every core cannot be sped up by overlapping it.

/// The machine's cumulative CPU time, busy and in all, in clock ticks, and
/// how many CPUs it sums.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuTimes {
    busy: u64,
    total: u64,
    cpus: usize,
}

impl CpuTimes {
    /// The counters now; `None` where `/proc/stat` cannot be read (not
    /// Linux).
    pub(crate) fn now() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let cpus = stat
            .lines()
            .filter(|line| {
                line.strip_prefix("cpu")
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
            })
            .count();
        let fields: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        // user nice system idle iowait irq softirq steal (guest time is
        // already counted in user).
        let [user, nice, system, idle, iowait, irq, softirq, steal] = *fields.get(..8)? else {
            return None;
        };
        let busy = user + nice + system + irq + softirq + steal;
        Some(CpuTimes {
            busy,
            total: busy + idle + iowait,
            cpus,
        })
    }

    /// How busy the machine's CPUs were from `self` to `later`.
    pub(crate) fn busy_until(&self, later: &CpuTimes) -> CpuBusy {
        let total = later.total.saturating_sub(self.total);
        CpuBusy {
            fraction: later.busy.saturating_sub(self.busy) as f64 / total.max(1) as f64,
            cpus: later.cpus,
        }
    }
}

/// The share of the machine's CPU time that was busy over an interval, and
/// over how many CPUs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuBusy {
    pub(crate) fraction: f64,
    pub(crate) cpus: usize,
}
