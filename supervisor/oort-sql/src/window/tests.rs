//! The windows' state machines: boundaries, emission, late rows, checkpoints.
use super::*;

fn slots() -> Vec<AggSlot> {
    vec![AggSlot { func: AggFn::Count, ignore_null: false }, AggSlot { func: AggFn::Sum, ignore_null: false }]
}

fn row(key: &str, x: i64) -> WindowRow {
    WindowRow::new(
        Record::from_fields([("k".to_string(), Value::from(key))].into_iter().collect()),
        vec![Value::from(key)],
        vec![Value::Int(x), Value::Int(x)],
    )
}

fn summary(results: &[GroupResult]) -> Vec<(String, i64, i64, i64, i64)> {
    results
        .iter()
        .map(|g| {
            let k = g.first.fields["k"].as_str().unwrap().to_string();
            let (Value::Int(c), Value::Int(s)) = (&g.aggregates[0], &g.aggregates[1]) else { panic!("{g:?}") };
            (k, *c, *s, g.window_start, g.window_end)
        })
        .collect()
}

#[test]
fn a_tumbling_window_emits_aligned_windows_per_group_in_order() {
    let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 10_000 }, slots());
    assert_eq!(w.next_end(), None, "nothing to emit before the first row");
    w.add(vec![row("a", 1), row("b", 2)], 10_500);
    w.add(vec![row("a", 3)], 19_999);
    assert_eq!(w.next_end(), Some(20_000));
    assert!(w.due(19_999).0.is_empty(), "the window is still open");
    w.add(vec![row("b", 5)], 20_000);
    let (out, errors) = w.due(20_000);
    assert!(errors.is_empty());
    assert_eq!(summary(&out), [("a".into(), 2, 4, 10_000, 20_000), ("b".into(), 1, 2, 10_000, 20_000)]);
    // The next window holds only the row of 20 000; an empty window emits nothing.
    let (out, _) = w.due(45_000);
    assert_eq!(summary(&out), [("b".into(), 1, 5, 20_000, 30_000)]);
    assert_eq!(w.next_end(), None);
}

#[test]
fn a_hopping_window_covers_its_panes_and_every_row_lands_in_length_over_hop_windows() {
    let mut w = WindowState::new(WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 }, slots());
    w.add(vec![row("a", 1)], 1_000);
    w.add(vec![row("a", 10)], 6_000);
    w.add(vec![row("a", 100)], 11_000);
    let (out, _) = w.due(20_000);
    assert_eq!(
        summary(&out),
        [
            ("a".into(), 1, 1, -5_000, 5_000),
            ("a".into(), 2, 11, 0, 10_000),
            ("a".into(), 2, 110, 5_000, 15_000),
            ("a".into(), 1, 100, 10_000, 20_000),
        ]
    );
    assert_eq!(out.iter().map(|g| g.window).collect::<Vec<_>>(), [0, 1, 2, 3]);
    assert!(w.panes.is_empty(), "every pane is released once no window covers it");
}

#[test]
fn a_count_window_emits_every_interval_rows_the_last_size_rows() {
    let mut w = WindowState::new(WindowSpec::Count { size: 4, interval: 2 }, slots());
    let (out, _) = w.add((1..=3).map(|x| row("a", x)).collect(), 0);
    assert!(out.is_empty(), "fewer rows than the window holds");
    let (out, _) = w.add((4..=8).map(|x| row("a", x)).collect(), 0);
    // After rows 4, 6 and 8: 1..=4, 3..=6, 5..=8.
    let sums: Vec<i64> = summary(&out).into_iter().map(|s| s.2).collect();
    assert_eq!(sums, [10, 18, 26]);
    let mut tumbling = WindowState::new(WindowSpec::Count { size: 2, interval: 2 }, slots());
    let (out, _) = tumbling.add((1..=5).map(|x| row(if x % 2 == 0 { "e" } else { "o" }, x)).collect(), 0);
    assert_eq!(
        summary(&out).into_iter().map(|s| (s.0, s.2)).collect::<Vec<_>>(),
        [("o".to_string(), 1), ("e".to_string(), 2), ("o".to_string(), 3), ("e".to_string(), 4)]
    );
    // Two windows ended by one batch are two emissions, told apart by their
    // number (their bounds are the same processing time).
    assert_eq!(out.iter().map(|g| g.window).collect::<Vec<_>>(), [0, 0, 1, 1]);
}

#[test]
fn a_restored_window_carries_on_as_if_never_interrupted() {
    let spec = WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 };
    let mut slots = slots();
    slots.push(AggSlot { func: AggFn::Avg, ignore_null: false });
    let row3 = |k: &str, x: i64| {
        let mut r = row(k, x);
        r.args.push(Value::Int(x));
        r
    };
    let feed = |w: &mut WindowState, from: usize| {
        let mut out = Vec::new();
        for (i, x) in [1, 10, 100, 1000].iter().enumerate().skip(from) {
            w.add(vec![row3(if i % 2 == 0 { "a" } else { "b" }, *x)], 1_000 + 4_000 * i as i64);
            out.extend(w.due(1_000 + 4_000 * i as i64).0);
        }
        out.extend(w.due(60_000).0);
        out
    };
    let mut straight = WindowState::new(spec, slots.clone());
    let expected = feed(&mut straight, 0);
    let mut before = WindowState::new(spec, slots.clone());
    let mut got = Vec::new();
    for (i, x) in [1, 10].iter().enumerate() {
        before.add(vec![row3(if i % 2 == 0 { "a" } else { "b" }, *x)], 1_000 + 4_000 * i as i64);
        got.extend(before.due(1_000 + 4_000 * i as i64).0);
    }
    let mut after = WindowState::restore(WindowState::new(spec, slots.clone()), &before.snapshot()).unwrap();
    assert_eq!(after.snapshot(), before.snapshot());
    got.extend(feed(&mut after, 2));
    assert_eq!(got, expected);
    // A snapshot of another rule's window is refused, not misread.
    let err = WindowState::restore(WindowState::new(spec, vec![slots[0]]), &before.snapshot()).unwrap_err();
    assert_eq!(err, "3 aggregates where the rule has 1");
    assert!(WindowState::restore(WindowState::new(spec, slots), &Value::from("junk")).is_err());
}

#[test]
fn a_group_whose_only_row_is_bad_is_not_emitted() {
    let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 1_000 }, slots());
    let mut bad = row("b", 1);
    bad.args[1] = Value::from("x");
    let (_, errors) = w.add(vec![row("a", 1), bad], 0);
    assert_eq!(errors.len(), 1);
    assert_eq!(summary(&w.due(1_000).0), [("a".into(), 1, 1, 0, 1_000)]);
}

#[test]
fn a_row_with_a_bad_argument_is_reported_and_left_out() {
    let mut w = WindowState::new(WindowSpec::Tumbling { length_ms: 1_000 }, slots());
    let mut bad = row("a", 1);
    bad.args[1] = Value::from("x");
    let (_, errors) = w.add(vec![row("a", 1), bad, row("a", 2)], 0);
    assert_eq!(errors, ["sum expects numbers, got string"]);
    let (out, _) = w.due(1_000);
    assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 1_000)]);
}

fn at(key: &str, x: i64, t: i64) -> WindowRow {
    let mut r = row(key, x);
    r.record.timestamp_ms = t;
    r
}

#[test]
fn event_time_windows_end_on_the_watermark_and_drop_late_rows() {
    let rows = || {
        vec![
            at("a", 1, 1_000),
            at("b", 2, 9_000),
            at("a", 3, 10_500),
            // Behind the newest (10 500) but within the tolerance: counts.
            at("a", 4, 9_600),
            at("a", 5, 12_000),
            // The watermark is 11 000: late, dropped and counted.
            at("b", 6, 9_900),
            at("a", 7, 21_000),
        ]
    };
    let window = || WindowState::new(WindowSpec::Tumbling { length_ms: 10_000 }, slots()).on_event_time(1_000);
    let mut w = window();
    // The clock does not matter on event time.
    let (out, errors) = w.add(rows(), 999_999_999);
    assert!(errors.is_empty());
    assert_eq!(
        summary(&out),
        [("a".into(), 2, 5, 0, 10_000), ("b".into(), 1, 2, 0, 10_000), ("a".into(), 2, 8, 10_000, 20_000)]
    );
    assert_eq!(w.take_late(), 1);
    assert_eq!(w.take_late(), 0, "taken once");
    assert_eq!(w.watermark(), Some(20_000));
    assert_eq!(w.next_end(), None, "no timer on event time");
    assert!(w.due(i64::MAX).0.is_empty(), "nor does the clock emit");
    // Row by row, the same windows: the output does not depend on batches.
    let mut one_by_one = window();
    let mut got = Vec::new();
    for r in rows() {
        got.extend(one_by_one.add(vec![r], 0).0);
    }
    // (Window numbers count within one call.)
    assert_eq!(summary(&got), summary(&out));
}

#[test]
fn an_event_time_window_restored_keeps_its_watermark() {
    let spec = WindowSpec::Hopping { length_ms: 10_000, hop_ms: 5_000 };
    let mut w = WindowState::new(spec, slots()).on_event_time(0);
    let (out, _) = w.add(vec![at("a", 1, 1_000), at("a", 2, 7_000)], 0);
    assert_eq!(summary(&out), [("a".into(), 1, 1, -5_000, 5_000)]);
    let mut restored = WindowState::restore(WindowState::new(spec, slots()).on_event_time(0), &w.snapshot()).unwrap();
    assert_eq!(restored.watermark(), Some(7_000));
    let (out, _) = restored.add(vec![at("a", 4, 6_000), at("a", 8, 15_000)], 0);
    assert_eq!(restored.take_late(), 1, "6 000 is behind the restored watermark");
    assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 10_000), ("a".into(), 1, 2, 5_000, 15_000)]);
}

#[test]
fn a_session_window_closes_after_its_timeout_or_at_a_multiple_of_its_maximum() {
    let spec = WindowSpec::Session { timeout_ms: 1_000, max_ms: 10_000 };
    let mut w = WindowState::new(spec, slots());
    assert_eq!(w.next_end(), None, "no session before a row");
    w.add(vec![row("a", 1)], 2_000);
    w.add(vec![row("b", 2)], 2_900);
    assert_eq!(w.next_end(), Some(3_900), "timeout after the last row");
    assert!(w.due(3_899).0.is_empty());
    let (out, _) = w.due(3_900);
    assert_eq!(summary(&out), [("a".into(), 1, 1, 2_000, 3_900), ("b".into(), 1, 2, 2_000, 3_900)]);
    // A session that keeps going is cut at the next multiple of 10 s.
    for t in (8_000..=10_500).step_by(500) {
        w.add(vec![row("a", 1)], t);
    }
    let (out, _) = w.add(vec![row("a", 100)], 10_900);
    assert!(out.is_empty(), "the row of 10 000 already began the next session");
    let first: Vec<_> = summary(&w.clone().due(20_000).0);
    assert_eq!(first, [("a".into(), 3, 102, 10_000, 11_900)]);
    // A row arriving after the timeout closes the session before opening one.
    let mut w = WindowState::new(spec, slots());
    w.add(vec![row("a", 1)], 0);
    let (out, _) = w.add(vec![row("a", 2)], 5_000);
    assert_eq!(summary(&out), [("a".into(), 1, 1, 0, 1_000)]);
}

#[test]
fn a_state_window_runs_from_a_begin_row_to_an_end_row() {
    let flagged = |x: i64, begin: bool, end: bool| {
        let mut r = row("a", x);
        (r.begin, r.end) = (begin, end);
        r
    };
    let mut w = WindowState::new(WindowSpec::State, slots());
    let (out, _) = w.add(
        vec![
            flagged(1, false, false), // before any begin: not kept
            flagged(2, true, false),
            flagged(4, false, false),
            flagged(8, true, true), // ends the window it is in
            flagged(16, false, true),
            flagged(32, true, true), // begins and ends its own
        ],
        7,
    );
    assert_eq!(summary(&out), [("a".into(), 3, 14, 7, 7), ("a".into(), 1, 32, 7, 7)]);
    assert_eq!(w.next_end(), None, "a state window has no timer");
}

#[test]
fn a_sliding_window_emits_per_trigger_over_the_length_before_and_the_delay_after() {
    let mut w = WindowState::new(WindowSpec::Sliding { length_ms: 1_000, delay_ms: 0 }, slots());
    w.add(vec![row("a", 1)], 100);
    let (out, _) = w.add(vec![row("a", 2)], 900);
    assert_eq!(summary(&out).last().cloned(), Some(("a".into(), 2, 3, -100, 900)));
    let mut quiet = row("a", 4);
    quiet.trigger = false; // OVER (WHEN …) false: kept, no window
    let (out, _) = w.add(vec![quiet], 1_050);
    assert!(out.is_empty());
    let (out, _) = w.add(vec![row("a", 8)], 1_100);
    // (100, 1 100]: the row of 100 is out.
    assert_eq!(summary(&out), [("a".into(), 3, 14, 100, 1_100)]);
    assert!(w.recent.len() <= 3, "rows no window can hold are dropped");

    let mut delayed = WindowState::new(WindowSpec::Sliding { length_ms: 1_000, delay_ms: 500 }, slots());
    let (out, _) = delayed.add(vec![row("a", 1)], 1_000);
    assert!(out.is_empty(), "it waits for its delay");
    assert_eq!(delayed.next_end(), Some(1_500));
    delayed.add(vec![row("a", 2)], 1_400);
    let (out, _) = delayed.due(1_500);
    assert_eq!(summary(&out), [("a".into(), 2, 3, 0, 1_500)]);
}

#[test]
fn session_state_and_sliding_windows_survive_a_checkpoint() {
    let specs = [
        WindowSpec::Session { timeout_ms: 1_000, max_ms: 60_000 },
        WindowSpec::Sliding { length_ms: 2_000, delay_ms: 500 },
        WindowSpec::State,
    ];
    for spec in specs {
        let rows = |from: i64| -> Vec<(WindowRow, i64)> {
            (from..6)
                .map(|i| {
                    let mut r = row(if i % 2 == 0 { "a" } else { "b" }, i);
                    (r.begin, r.end) = (i == 1, i == 4);
                    (r, 1_000 + 400 * i)
                })
                .collect()
        };
        let run = |w: &mut WindowState, rows: Vec<(WindowRow, i64)>| {
            let mut out = Vec::new();
            for (r, t) in rows {
                out.extend(w.add(vec![r], t).0);
                out.extend(w.due(t).0);
            }
            out
        };
        let mut straight = WindowState::new(spec, slots());
        let mut expected = run(&mut straight, rows(0));
        expected.extend(straight.due(100_000).0);
        let mut before = WindowState::new(spec, slots());
        let mut got = run(&mut before, rows(0).into_iter().take(3).collect());
        let mut after = WindowState::restore(WindowState::new(spec, slots()), &before.snapshot()).unwrap();
        assert_eq!(after.snapshot(), before.snapshot(), "{spec:?}");
        got.extend(run(&mut after, rows(3)));
        got.extend(after.due(100_000).0);
        assert!(!expected.is_empty(), "{spec:?}");
        assert_eq!(got, expected, "{spec:?}");
    }
}

#[test]
fn hops_and_intervals_that_do_not_divide_the_window_work_on_finer_panes() {
    // HOPPINGWINDOW(ms, 10, 4): windows end at multiples of 4 and hold the 10 ms before.
    let spec = WindowSpec::Hopping { length_ms: 10, hop_ms: 4 };
    assert_eq!((spec.pane(), spec.panes()), (2, 5));
    let mut w = WindowState::new(spec, slots());
    for t in 0..20 {
        w.add(vec![row("a", t)], t);
    }
    let (out, _) = w.due(20);
    let got: Vec<(i64, i64, i64)> = summary(&out).into_iter().map(|(_, _, s, ws, we)| (ws, we, s)).collect();
    let expected: Vec<(i64, i64, i64)> =
        (1..=5).map(|k| 4 * k).map(|end| (end - 10, end, ((end - 10).max(0)..end).sum())).collect();
    assert_eq!(got, expected);
    // COUNTWINDOW(5, 2): after rows 5, 7, 9 …, the last 5 rows.
    let mut w = WindowState::new(WindowSpec::Count { size: 5, interval: 2 }, slots());
    let (out, _) = w.add((1..=11).map(|x| row("a", x)).collect(), 0);
    let sums: Vec<i64> = summary(&out).into_iter().map(|s| s.2).collect();
    assert_eq!(sums, [15, 25, 35, 45]);
    assert!(w.panes.len() <= 5, "only the panes the next window needs are kept");
}
