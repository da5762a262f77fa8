//! From the platform's readings (`sysinfo`) to events: one event per
//! reading, `kind` `system.<family>.<reading>`, the reading in `value` with
//! its `unit`, and the mount, interface or sensor as an attribute.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sysinfo::{Components, Disks, Networks, System};

use super::MAX_PER_FAMILY;
use crate::plugin::{AttrValue, Attribute, Event, EventId};

/// One family of readings a `system` input can take (`metrics = [...]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// `system.cpu.utilization`: all CPUs, percent busy since the last
    /// collection.
    Cpu,
    /// `system.memory.{total,used,available,utilization}` and
    /// `system.swap.{total,used}`.
    Memory,
    /// `system.load.{1m,5m,15m}`.
    Load,
    /// `system.uptime`, seconds since boot.
    Uptime,
    /// `system.disk.{total,used,available,utilization}` per mount.
    Disk,
    /// `system.network.{rx_bytes,tx_bytes,rx_packets,tx_packets}` per
    /// interface, totals since boot (counters).
    Network,
    /// `system.temperature` per sensor, degrees Celsius.
    Temperature,
}

impl Metric {
    /// Every family, in the order events are emitted.
    pub const ALL: [Metric; 7] = [
        Metric::Cpu,
        Metric::Memory,
        Metric::Load,
        Metric::Uptime,
        Metric::Disk,
        Metric::Network,
        Metric::Temperature,
    ];
}

/// What one `system` input reads.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    /// The families to read.
    pub metrics: Vec<Metric>,
    /// Only these mount points (all when empty).
    pub mounts: Vec<String>,
    /// Only these interfaces (all when empty).
    pub interfaces: Vec<String>,
    /// The `source` of every event (the host id unless configured).
    pub source: String,
}

/// The platform handles, kept between collections (CPU utilisation is a
/// difference between two reads).
pub struct Collector {
    selection: Selection,
    system: System,
    disks: Option<Disks>,
    networks: Option<Networks>,
    components: Option<Components>,
}

impl Collector {
    /// Opens the platform reads `selection` needs and takes a first CPU
    /// reading.
    pub fn new(selection: Selection) -> Result<Collector, sysinfo::Error> {
        let wants = |m| selection.metrics.contains(&m);
        let mut system = System::new()?;
        if wants(Metric::Cpu) {
            system.refresh_cpu_usage();
        }
        Ok(Collector {
            disks: wants(Metric::Disk)
                .then(Disks::new_with_refreshed_list)
                .transpose()?,
            networks: wants(Metric::Network)
                .then(Networks::new_with_refreshed_list)
                .transpose()?,
            components: wants(Metric::Temperature)
                .then(Components::new_with_refreshed_list)
                .transpose()?,
            system,
            selection,
        })
    }

    /// One collection: every selected reading, stamped now.
    pub fn collect(&mut self) -> Vec<Event> {
        let time_ns = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        let mut out = Readings {
            time_ns,
            source: self.selection.source.clone(),
            events: Vec::new(),
        };
        for metric in Metric::ALL {
            if self.selection.metrics.contains(&metric) {
                self.read(metric, &mut out);
            }
        }
        out.events
    }

    fn read(&mut self, metric: Metric, out: &mut Readings) {
        match metric {
            Metric::Cpu => {
                self.system.refresh_cpu_usage();
                let busy = f64::from(self.system.global_cpu_usage());
                out.push("system.cpu.utilization", busy, "percent", vec![]);
            }
            Metric::Memory => {
                self.system.refresh_memory();
                let s = &self.system;
                let (total, used) = (s.total_memory(), s.used_memory());
                out.push("system.memory.total", total as f64, "bytes", vec![]);
                out.push("system.memory.used", used as f64, "bytes", vec![]);
                out.push(
                    "system.memory.available",
                    s.available_memory() as f64,
                    "bytes",
                    vec![],
                );
                out.push(
                    "system.memory.utilization",
                    percent(used, total),
                    "percent",
                    vec![],
                );
                out.push("system.swap.total", s.total_swap() as f64, "bytes", vec![]);
                out.push("system.swap.used", s.used_swap() as f64, "bytes", vec![]);
            }
            Metric::Load => {
                if let Ok(load) = System::load_average() {
                    out.push_plain("system.load.1m", load.one);
                    out.push_plain("system.load.5m", load.five);
                    out.push_plain("system.load.15m", load.fifteen);
                }
            }
            Metric::Uptime => {
                if let Ok(up) = System::uptime() {
                    out.push("system.uptime", up as f64, "seconds", vec![]);
                }
            }
            Metric::Disk => self.read_disks(out),
            Metric::Network => self.read_networks(out),
            Metric::Temperature => {
                let Some(components) = &mut self.components else {
                    return;
                };
                components.refresh(true);
                for c in components.iter().take(MAX_PER_FAMILY) {
                    if let Some(t) = c.temperature().filter(|t| t.is_finite()) {
                        let sensor = attr("sensor", c.label());
                        out.push("system.temperature", f64::from(t), "celsius", vec![sensor]);
                    }
                }
            }
        }
    }

    fn read_disks(&mut self, out: &mut Readings) {
        let Some(disks) = &mut self.disks else {
            return;
        };
        // The list too: a mount can come and go (a USB stick).
        disks.refresh(true);
        let mounts = &self.selection.mounts;
        let chosen = disks.iter().filter(|d| {
            mounts.is_empty()
                || mounts
                    .iter()
                    .any(|m| d.mount_point().as_os_str() == m.as_str())
        });
        for d in chosen.take(MAX_PER_FAMILY) {
            let labels = || {
                vec![
                    attr("mount", &d.mount_point().to_string_lossy()),
                    attr("device", &d.name().to_string_lossy()),
                    attr("fs", &d.file_system().to_string_lossy()),
                ]
            };
            let (total, free) = (d.total_space(), d.available_space());
            let used = total.saturating_sub(free);
            out.push("system.disk.total", total as f64, "bytes", labels());
            out.push("system.disk.used", used as f64, "bytes", labels());
            out.push("system.disk.available", free as f64, "bytes", labels());
            out.push(
                "system.disk.utilization",
                percent(used, total),
                "percent",
                labels(),
            );
        }
    }

    fn read_networks(&mut self, out: &mut Readings) {
        let Some(networks) = &mut self.networks else {
            return;
        };
        networks.refresh(true);
        let wanted = &self.selection.interfaces;
        let mut names: Vec<_> = networks
            .iter()
            .filter(|(name, _)| {
                wanted.is_empty() || wanted.iter().any(|w| name.as_os_str() == w.as_str())
            })
            .collect();
        // Stable order between collections (the map's is not).
        names.sort_by(|a, b| a.0.cmp(b.0));
        for (name, data) in names.into_iter().take(MAX_PER_FAMILY) {
            let label = || vec![attr("interface", &name.to_string_lossy())];
            let readings = [
                ("system.network.rx_bytes", data.total_received(), "bytes"),
                ("system.network.tx_bytes", data.total_transmitted(), "bytes"),
                (
                    "system.network.rx_packets",
                    data.total_packets_received(),
                    "packets",
                ),
                (
                    "system.network.tx_packets",
                    data.total_packets_transmitted(),
                    "packets",
                ),
            ];
            for (kind, value, unit) in readings {
                out.push(kind, value as f64, unit, label());
            }
        }
    }
}

/// The events of one collection.
struct Readings {
    time_ns: i64,
    source: String,
    events: Vec<Event>,
}

impl Readings {
    fn push(&mut self, kind: &str, value: f64, unit: &str, attributes: Vec<Attribute>) {
        self.events.push(Event {
            id: EventId { hi: 0, lo: 0 },
            time_ns: self.time_ns,
            source: self.source.clone(),
            kind: kind.to_string(),
            value: Some(value),
            unit: Some(unit.to_string()),
            attributes,
            body: None,
        });
    }

    /// A reading without a unit (load averages).
    fn push_plain(&mut self, kind: &str, value: f64) {
        self.push(kind, value, "", vec![]);
        if let Some(e) = self.events.last_mut() {
            e.unit = None;
        }
    }
}

fn attr(key: &str, value: &str) -> Attribute {
    Attribute {
        key: key.to_string(),
        value: AttrValue::Str(value.to_string()),
    }
}

/// `part` of `whole` in percent; 0 when `whole` is 0.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selection(metrics: Vec<Metric>) -> Selection {
        Selection {
            metrics,
            mounts: vec![],
            interfaces: vec![],
            source: "dev-1".into(),
        }
    }

    #[test]
    fn memory_load_uptime_give_exactly_ten_readings_sharing_one_time() {
        let mut c = Collector::new(selection(vec![
            Metric::Memory,
            Metric::Load,
            Metric::Uptime,
        ]))
        .unwrap();
        let events = c.collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "system.memory.total",
                "system.memory.used",
                "system.memory.available",
                "system.memory.utilization",
                "system.swap.total",
                "system.swap.used",
                "system.load.1m",
                "system.load.5m",
                "system.load.15m",
                "system.uptime",
            ]
        );
        assert!(events.iter().all(|e| e.time_ns == events[0].time_ns));
        assert!(events.iter().all(|e| e.source == "dev-1"));
        assert!(events[0].value.unwrap() > 0.0, "total memory");
    }

    #[test]
    fn only_the_chosen_mount_and_interface() {
        let mut s = selection(vec![Metric::Disk, Metric::Network]);
        s.mounts = vec!["/".into()];
        s.interfaces = vec!["lo".into()];
        let events = Collector::new(s).unwrap().collect();
        let of = |prefix: &str| events.iter().filter(|e| e.kind.starts_with(prefix)).count();
        assert_eq!(of("system.network."), 4, "{events:?}");
        assert!(
            events
                .iter()
                .filter(|e| e.kind.starts_with("system.network."))
                .all(|e| e
                    .attributes
                    .iter()
                    .any(|a| a.key == "interface" && a.value == AttrValue::Str("lo".into())))
        );
        // "/" is a mount on every Linux machine the tests run on.
        assert_eq!(of("system.disk."), 4, "{events:?}");
    }
}
