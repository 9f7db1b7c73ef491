//! aserti3-2d: all 14,000 cases of the twelve published runs.

use cairn_consensus::asert::{next_target, AsertAnchor, AsertParams};
use cairn_consensus::pow::CompactTarget;

use crate::support::{hex_u32, read_vector_text};

#[test]
fn all_asert_runs() {
    let pow_limit = CompactTarget::from_consensus(0x1d00_ffff).to_target().expect("valid limit");
    let params = AsertParams { spacing: 600, half_life: 172_800, pow_limit };
    let mut total = 0;
    for run in 1..=12 {
        let name = format!("asert/run{run:02}");
        let text = read_vector_text(&name);
        let header = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix("##").and_then(|l| l.trim().strip_prefix(key)))
                .unwrap_or_else(|| panic!("{name}: no {key}"))
                .trim()
                .to_owned()
        };
        let anchor = AsertAnchor {
            height: header("anchor height:").parse().expect("height"),
            parent_time: header("anchor parent time:").parse().expect("time"),
            target: CompactTarget::from_consensus(hex_u32(&header("anchor nBits:")))
                .to_target()
                .expect("anchor target"),
        };
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let height: u64 = fields[1].parse().expect("height");
            let time: i64 = fields[2].parse().expect("time");
            let expected = hex_u32(fields[3]);
            let got = next_target(&anchor, &params, height, time).to_consensus();
            assert_eq!(got, expected, "{name} line {line:?}: got {got:#010x}");
            total += 1;
        }
    }
    assert_eq!(total, 14_000, "every aserti3-2d case was checked");
}
