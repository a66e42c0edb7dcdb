//! Cases from the Kubernetes HPA documentation (the algorithm and the `behavior` examples)
//! and from kube-controller-manager's source (tolerance edges, ready pods, event periods).

use super::*;

fn avg(usage_milli: i64, target_milli: i64) -> Metric {
    Metric {
        metric_type: MetricType::AverageValue,
        usage_milli,
        target_milli,
    }
}

fn value(usage_milli: i64, target_milli: i64) -> Metric {
    Metric {
        metric_type: MetricType::Value,
        usage_milli,
        target_milli,
    }
}

fn rules(
    window: Option<u32>,
    select: SelectPolicy,
    policies: &[(PolicyType, i32, u32)],
) -> ScalingRules {
    ScalingRules {
        stabilization_window_seconds: window,
        select_policy: Some(select),
        policies: Some(
            policies
                .iter()
                .map(|(k, v, p)| policy(*k, *v, *p))
                .collect(),
        ),
    }
}

#[test]
fn docs_ratio_example_doubles_and_halves() {
    // "if the current metric value is 200m, and the desired value is 100m, the number of
    // replicas will be doubled ... if the current value is instead 50m, you'll halve".
    assert_eq!(proposal(value(200, 100), 3, 3, 3), 6);
    assert_eq!(proposal(value(50, 100), 4, 4, 4), 2);
    // Rounded up: 3 * 0.5 = 1.5 -> 2.
    assert_eq!(proposal(value(50, 100), 3, 3, 3), 2);
}

#[test]
fn tolerance_keeps_the_count_up_to_and_including_ten_percent() {
    assert_eq!(proposal(value(1100, 1000), 3, 3, 3), 3);
    assert_eq!(proposal(value(1101, 1000), 3, 3, 3), 4);
    assert_eq!(proposal(value(950, 1000), 5, 5, 5), 5);
    assert_eq!(proposal(value(800, 1000), 5, 5, 5), 4);
    // AverageValue tests the per-pod average against the target: 4200/4 = 1050 is within.
    assert_eq!(proposal(avg(4200, 1000), 4, 4, 4), 4);
    assert_eq!(proposal(avg(4500, 1000), 4, 4, 4), 5);
}

#[test]
fn value_multiplies_by_ready_pods_and_average_value_ignores_readiness() {
    // Two of four pods still load the model: a doubled Value ratio proposes 2 * 2 = 4, no
    // scale-up, while AverageValue proposes ceil(total / target) whatever is ready.
    assert_eq!(proposal(value(2000, 1000), 4, 4, 2), 4);
    assert_eq!(proposal(avg(8000, 1000), 4, 4, 2), 8);
    // No pod ready: a Value proposal collapses to zero.
    assert_eq!(proposal(value(3000, 1000), 2, 2, 0), 0);
}

#[test]
fn default_scale_up_is_four_pods_or_double_per_fifteen_seconds() {
    let mut h = Hpa::new(1, 100, Some(&Behavior::default()), DOWNSCALE_STABILIZATION);
    let d = h.sync(0.0, 1, 1, 1, &[avg(40_000, 1000)]);
    assert_eq!(
        d,
        Decision {
            proposal: Some(40),
            desired: 5,
            rescale: true
        }
    );
    // Inside the same 15 s period the +4 already used the budget.
    let d = h.sync(5.0, 5, 5, 1, &[avg(40_000, 1000)]);
    assert_eq!((d.desired, d.rescale), (5, false));
    // A period later: max(5 + 4, 5 * 2) = 10.
    let d = h.sync(15.0, 5, 5, 5, &[avg(40_000, 1000)]);
    assert_eq!(d.desired, 10);
    let d = h.sync(30.0, 10, 10, 10, &[avg(40_000, 1000)]);
    assert_eq!(d.desired, 20);
}

#[test]
fn default_scale_down_waits_for_the_300_second_window() {
    let mut h = Hpa::new(1, 10, Some(&Behavior::default()), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 10, 10, 10, &[avg(10_000, 1000)]).desired, 10);
    let mut t = 15.0;
    while t < 300.0 {
        let d = h.sync(t, 10, 10, 10, &[avg(2000, 1000)]);
        assert_eq!((d.proposal, d.desired), (Some(2), 10), "t={t}");
        t += 15.0;
    }
    // The recommendation of 10 made at t=0 leaves the window at t=300 (strictly after).
    let d = h.sync(300.0, 10, 10, 10, &[avg(2000, 1000)]);
    assert_eq!(d.desired, 2);
}

#[test]
fn docs_scale_down_policies_pick_the_largest_change_unless_min() {
    // Docs: Pods 4 per 60 s and Percent 10 per 60 s; with 80 replicas the percent policy
    // removes 8.
    let down = rules(
        Some(0),
        SelectPolicy::Max,
        &[(PolicyType::Pods, 4, 60), (PolicyType::Percent, 10, 60)],
    );
    let b = Behavior {
        scale_up: None,
        scale_down: Some(down.clone()),
    };
    let mut h = Hpa::new(1, 100, Some(&b), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 80, 80, 80, &[avg(10_000, 1000)]).desired, 72);
    // Within the same minute nothing more may go.
    assert_eq!(h.sync(15.0, 72, 72, 72, &[avg(10_000, 1000)]).desired, 72);
    // Below 40 replicas the pods policy allows more: 30 -> 26, not 27.
    let mut h = Hpa::new(1, 100, Some(&b), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 30, 30, 30, &[avg(1000, 1000)]).desired, 26);

    let min = Behavior {
        scale_up: None,
        scale_down: Some(ScalingRules {
            select_policy: Some(SelectPolicy::Min),
            ..down
        }),
    };
    let mut h = Hpa::new(1, 100, Some(&min), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 80, 80, 80, &[avg(10_000, 1000)]).desired, 76);
}

#[test]
fn disabled_direction_never_moves() {
    let b = Behavior {
        scale_up: Some(rules(None, SelectPolicy::Disabled, &[])),
        scale_down: Some(rules(Some(0), SelectPolicy::Disabled, &[])),
    };
    let mut h = Hpa::new(1, 10, Some(&b), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 3, 3, 3, &[avg(9000, 1000)]).desired, 3);
    assert_eq!(h.sync(15.0, 3, 3, 3, &[avg(1000, 1000)]).desired, 3);
}

#[test]
fn percent_scale_up_rounds_up() {
    let b = Behavior {
        scale_up: Some(rules(
            None,
            SelectPolicy::Max,
            &[(PolicyType::Percent, 50, 60)],
        )),
        scale_down: None,
    };
    let mut h = Hpa::new(1, 10, Some(&b), DOWNSCALE_STABILIZATION);
    assert_eq!(h.sync(0.0, 3, 3, 3, &[avg(9000, 1000)]).desired, 5);
}

#[test]
fn scale_up_window_takes_the_smallest_recent_recommendation() {
    let b = Behavior {
        scale_up: Some(rules(
            Some(60),
            SelectPolicy::Max,
            &[(PolicyType::Pods, 100, 15)],
        )),
        scale_down: None,
    };
    let mut h = Hpa::new(1, 20, Some(&b), DOWNSCALE_STABILIZATION);
    // The initial recommendation (the current 2) holds the count for a minute.
    assert_eq!(h.sync(0.0, 2, 2, 2, &[avg(8000, 1000)]).desired, 2);
    assert_eq!(h.sync(45.0, 2, 2, 2, &[avg(8000, 1000)]).desired, 2);
    assert_eq!(h.sync(60.0, 2, 2, 2, &[avg(8000, 1000)]).desired, 8);
}

#[test]
fn the_largest_metric_proposal_wins() {
    let mut h = Hpa::new(1, 10, Some(&Behavior::default()), DOWNSCALE_STABILIZATION);
    let d = h.sync(
        0.0,
        2,
        2,
        2,
        &[avg(3000, 1000), value(2500, 1000), avg(0, 1000)],
    );
    assert_eq!((d.proposal, d.desired), (Some(5), 5));
}

#[test]
fn bounds_are_applied_without_metrics_and_zero_is_left_to_keda() {
    let mut h = Hpa::new(2, 4, Some(&Behavior::default()), DOWNSCALE_STABILIZATION);
    let d = h.sync(0.0, 7, 7, 7, &[avg(0, 1000)]);
    assert_eq!(
        d,
        Decision {
            proposal: None,
            desired: 4,
            rescale: true
        }
    );
    let d = h.sync(15.0, 1, 1, 1, &[avg(100_000, 1000)]);
    assert_eq!(
        d,
        Decision {
            proposal: None,
            desired: 2,
            rescale: true
        }
    );
    let d = h.sync(30.0, 0, 0, 0, &[avg(100_000, 1000)]);
    assert_eq!(
        d,
        Decision {
            proposal: None,
            desired: 0,
            rescale: false
        }
    );
    // A zero proposal stops at min.
    let mut h = Hpa::new(
        2,
        4,
        Some(&Behavior {
            scale_up: None,
            scale_down: Some(rules(
                Some(0),
                SelectPolicy::Max,
                &[(PolicyType::Percent, 100, 15)],
            )),
        }),
        DOWNSCALE_STABILIZATION,
    );
    assert_eq!(h.sync(0.0, 4, 4, 4, &[avg(0, 1000)]).desired, 2);
}

#[test]
fn keda_values_become_rounded_up_milli_quantities() {
    assert_eq!(to_milli(0.7), 700);
    assert_eq!(to_milli(0.0001), 1);
    assert_eq!(to_milli(12.3456), 12_346);
    assert_eq!(to_milli(f64::NAN), 0);
    assert_eq!(to_milli(-3.0), 0);
    assert_eq!(to_milli(f64::INFINITY), 0);
}

#[test]
fn without_behavior_scale_up_is_double_or_four_per_sync_with_no_period_memory() {
    // horizontal.go normalizeDesiredReplicas / calculateScaleUpLimit: max(2 x current, 4),
    // again at every sync, however recent the last scale-up.
    let mut h = Hpa::new(1, 100, None, DOWNSCALE_STABILIZATION);
    let mut current = 1;
    let mut seen = Vec::new();
    for i in 0..5 {
        let d = h.sync(
            f64::from(i) * 15.0,
            current,
            current,
            current,
            &[avg(40_000, 1000)],
        );
        current = d.desired;
        seen.push(current);
    }
    assert_eq!(seen, [4, 8, 16, 32, 40]);
    // The same HPA with an (empty) behavior is held to 100 % or 4 pods per 15 s.
    let mut b = Hpa::new(1, 100, Some(&Behavior::default()), DOWNSCALE_STABILIZATION);
    assert_eq!(b.sync(0.0, 1, 1, 1, &[avg(40_000, 1000)]).desired, 5);
}

#[test]
fn without_behavior_scale_down_takes_the_highest_recommendation_of_the_flag_window() {
    let mut h = Hpa::new(1, 10, None, 60);
    assert_eq!(h.sync(0.0, 1, 1, 1, &[avg(8000, 1000)]).desired, 4);
    assert_eq!(h.sync(15.0, 4, 4, 4, &[avg(8000, 1000)]).desired, 8);
    // The 8 recorded at 15 s holds until it is older than the 60 s window; no rate limit then.
    assert_eq!(h.sync(30.0, 8, 8, 8, &[avg(1000, 1000)]).desired, 8);
    assert_eq!(h.sync(75.0, 8, 8, 8, &[avg(1000, 1000)]).desired, 8);
    let d = h.sync(90.0, 8, 8, 8, &[avg(1000, 1000)]);
    assert_eq!((d.proposal, d.desired), (Some(1), 1));
    // A zero proposal stops at min.
    assert_eq!(h.sync(200.0, 3, 3, 3, &[avg(0, 1000)]).desired, 1);
}
