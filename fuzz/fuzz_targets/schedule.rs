//! A schedule file for `chaos --replay`: read, checked against the reference topology and,
//! when accepted, turned into a scenario the compiler takes; never a panic (hand-edited
//! times, names and kinds included), and a refusal names the file.
#![no_main]

use std::path::Path;

use etcd_drill::chaos::schedule::Schedule;
use etcd_drill::topology::Topology;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(schedule) = serde_json::from_slice::<Schedule>(data) else { return };
    let path = Path::new("fuzz/schedule.json");
    match schedule.validate(&Topology::reference(), path) {
        Err(e) => assert!(e.to_string().contains("fuzz/schedule.json"), "the error does not name the file: {e}"),
        Ok(()) => {
            let raw = schedule.to_scenario(&etcd_drill::scenario::RawScenario::default());
            if let Err(e) = etcd_drill::scenario::compile(raw, path) {
                panic!("an accepted schedule makes a scenario the compiler refuses: {e}");
            }
        }
    }
});
