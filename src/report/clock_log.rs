//! nvidia-smi's clock log beside the device check's gathers: for each gather
//! `scripts/device-check` ran (`gather.times`: its start and its arguments),
//! the SM clock, utilisation and power states the log (`nvidia-smi-log.csv`,
//! a row every 200 ms) recorded until the next one started — the card's
//! state over the whole bench, where a record's `sm_clock_mhz` holds only the
//! readings between its samples.

use std::fmt::Write;

/// One row of the log.
#[derive(Clone, Debug, PartialEq)]
struct Row {
    /// `YYYY/MM/DD HH:MM:SS.mmm`, as nvidia-smi and `date` both write it, so
    /// that order of the text is order in time.
    at: String,
    pstate: String,
    sm_mhz: Option<f64>,
    busy_pct: Option<f64>,
}

/// The leading number of a field such as `1980 MHz` or `95 %`.
fn number(field: &str) -> Option<f64> {
    field.split_whitespace().next()?.parse().ok()
}

/// The log's rows (header and unreadable lines left out). Its columns are
/// the script's query: timestamp, pstate, clocks.sm, clocks.mem, power.draw,
/// utilization.gpu, ...
fn parse_log(text: &str) -> Vec<Row> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').map(str::trim).collect();
            let at = f.first()?;
            // A row begins with its date (the header with "timestamp").
            if !at.starts_with(|c: char| c.is_ascii_digit()) || f.len() < 6 {
                return None;
            }
            Some(Row {
                at: at.to_string(),
                pstate: f[1].to_string(),
                sm_mhz: number(f[2]),
                busy_pct: number(f[5]),
            })
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    (!v.is_empty()).then(|| v[v.len() / 2])
}

/// The table of each gather's window, or `None` when either file is empty
/// (no NVIDIA driver, or no gather ran).
pub fn render(times: &str, log: &str) -> Option<String> {
    let rows = parse_log(log);
    let starts: Vec<(&str, &str)> = times
        .lines()
        .filter_map(|l| {
            // "YYYY/MM/DD HH:MM:SS.mmm ARGS": the stamp is the first two words.
            let mut cut = l.splitn(3, ' ');
            let (d, t, args) = (cut.next()?, cut.next()?, cut.next().unwrap_or(""));
            Some((&l[..d.len() + 1 + t.len()], args))
        })
        .collect();
    if rows.is_empty() || starts.is_empty() {
        return None;
    }
    let mut md = String::from(
        "\n## The card's clock while each gather ran (`nvidia-smi-log.csv`, `gather.times`)\n\nnvidia-smi's rows (every 200 ms) from each gather's start to the next one's: the whole bench (inputs, verification, samples, energy window).\n\n| gather | log rows | SM clock MHz, min-max (median) | GPU busy %, median | power states |\n|---|---:|---|---:|---|\n",
    );
    for (i, (start, args)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map(|s| s.0);
        let window: Vec<&Row> = rows
            .iter()
            .filter(|r| r.at.as_str() >= *start && end.is_none_or(|e| r.at.as_str() < e))
            .collect();
        let sm: Vec<f64> = window.iter().filter_map(|r| r.sm_mhz).collect();
        let clock = match (
            sm.iter().copied().reduce(f64::min),
            sm.iter().copied().reduce(f64::max),
            median(sm.clone()),
        ) {
            (Some(lo), Some(hi), Some(mid)) => format!("{lo:.0}-{hi:.0} ({mid:.0})"),
            _ => "—".into(),
        };
        let busy = median(window.iter().filter_map(|r| r.busy_pct).collect())
            .map_or("—".into(), |b| format!("{b:.0}"));
        let mut states: Vec<&str> = window.iter().map(|r| r.pstate.as_str()).collect();
        states.sort_unstable();
        states.dedup();
        let _ = writeln!(
            md,
            "| `{args}` | {} | {clock} | {busy} | {} |",
            window.len(),
            if states.is_empty() {
                "—".to_string()
            } else {
                states.join(", ")
            }
        );
    }
    Some(md)
}

#[cfg(test)]
mod tests {
    use super::render;

    const LOG: &str = "timestamp, pstate, clocks.current.sm [MHz], clocks.current.memory [MHz], power.draw [W], utilization.gpu [%], temperature.gpu, clocks_event_reasons.active
2026/11/28 03:00:00.000, P0, 1980 MHz, 3201 MHz, 431.50 W, 100 %, 47, 0x0000000000000000
2026/11/28 03:00:00.200, P0, 345 MHz, 3201 MHz, 120.10 W, 20 %, 46, 0x0000000000000001
2026/11/28 03:00:00.400, P8, 345 MHz, 3201 MHz, 90.00 W, 0 %, 46, 0x0000000000000001
2026/11/28 03:00:00.600, P0, 1755 MHz, 3201 MHz, 500.00 W, 100 %, 47, 0x0000000000000000
2026/11/28 03:00:00.800, P0, 1980 MHz, 3201 MHz, 520.00 W, 100 %, 48, 0x0000000000000000
";

    /// Each gather gets the rows from its start to the next one's; the last
    /// runs to the end of the log. Planted: windows closed at their own start
    /// (no rows) -> fails.
    #[test]
    fn each_gather_gets_the_rows_until_the_next_starts() {
        let times = "2026/11/28 03:00:00.150 --precision f16 --dim 1024\n2026/11/28 03:00:00.500 --precision f32 --dim 512\n";
        let md = render(times, LOG).unwrap();
        assert!(
            md.contains("| `--precision f16 --dim 1024` | 2 | 345-345 (345) | 20 | P0, P8 |"),
            "{md}"
        );
        assert!(
            md.contains("| `--precision f32 --dim 512` | 2 | 1755-1980 (1980) | 100 | P0 |"),
            "{md}"
        );
        // The logger killed mid-row leaves a short last line: skipped. Six
        // fields (up to the utilisation) are enough.
        let cut = "2026/11/28 03:00:00.300, P0, 1410 MHz, 3201 MHz, 431.50 W, 97 %\n2026/11/28 03:00:00.400, P0, 1980 MHz, 3201 MHz, 4";
        assert!(
            render(times, cut)
                .unwrap()
                .contains("| `--precision f16 --dim 1024` | 1 | 1410-1410 (1410) | 97 | P0 |"),
            "{}",
            render(times, cut).unwrap()
        );
        assert_eq!(render("", LOG), None, "no gathers");
        // Windows to the millisecond: a row 30 ms before the first start is
        // no part of it; a row stamped exactly at the second start belongs
        // to the second.
        let row = |at: &str, mhz: u32| {
            format!("2026/11/28 03:00:00.{at}, P0, {mhz} MHz, 3201 MHz, 400.00 W, 50 %, 40, 0x0\n")
        };
        let log = [
            row("120", 100),
            row("160", 1500),
            row("440", 1600),
            row("450", 1900),
        ]
        .concat();
        let md = render(
            "2026/11/28 03:00:00.150 a\n2026/11/28 03:00:00.450 b\n",
            &log,
        )
        .unwrap();
        assert!(md.contains("| `a` | 2 | 1500-1600 (1600) |"), "{md}");
        assert!(md.contains("| `b` | 1 | 1900-1900 (1900) |"), "{md}");
        assert_eq!(render(times, "timestamp, pstate\n"), None, "no log rows");
    }
}
