//! Strategies and constraints, on instances that all have room.

use std::collections::BTreeMap;

use super::*;
use crate::domain::placement::{ConstraintSpec, StrategySpec};

fn inst(id: &str, zone: &str) -> Candidate {
    Candidate {
        instance_id: id.into(),
        instance_arn: format!("arn:{id}"),
        connected: true,
        active: true,
        network_modes: vec!["bridge".into()],
        registered: Needs {
            cpu: 4096,
            memory: 4096,
        },
        attributes: vec![("ecs.availability-zone".into(), zone.into())],
        ..Default::default()
    }
}

fn strategy(kind: &str, field: Option<&str>) -> StrategySpec {
    StrategySpec {
        kind: kind.into(),
        field: field.map(Into::into),
    }
}

fn member_of(expression: &str) -> ConstraintSpec {
    ConstraintSpec {
        kind: "memberOf".into(),
        expression: Some(expression.into()),
    }
}

fn distinct() -> ConstraintSpec {
    ConstraintSpec {
        kind: "distinctInstance".into(),
        expression: None,
    }
}

const SMALL: Needs = Needs {
    cpu: 128,
    memory: 256,
};

fn run(
    placement: &Placement,
    count: usize,
    cands: &[Candidate],
    seed: u64,
) -> Vec<Result<String, PlacementFailure>> {
    place(
        &Request {
            needs: SMALL,
            ports: &[],
            network_mode: "bridge",
            required_attributes: &[],
            count,
            group: "service:web",
            task_definition_arn: "td",
            placement,
            seed,
        },
        cands,
    )
}

fn counts(r: &[Result<String, PlacementFailure>]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for id in r.iter().flatten() {
        *m.entry(id.clone()).or_default() += 1;
    }
    m
}

fn service_default() -> Placement {
    Placement::new(&[], &[], &[], true).unwrap()
}

#[test]
fn the_service_default_spreads_over_zones_then_instances() {
    let three = [inst("a", "z1"), inst("b", "z2"), inst("c", "z3")];
    for seed in 0..20 {
        let r = run(&service_default(), 9, &three, seed);
        assert_eq!(
            counts(&r).values().copied().collect::<Vec<_>>(),
            vec![3, 3, 3],
            "seed {seed}: {r:?}"
        );
    }
    // Two instances in z1, one in z2: the zones get 3 and 3, z1's two instances 2 and 1.
    let uneven = [inst("a", "z1"), inst("b", "z1"), inst("c", "z2")];
    let r = run(&service_default(), 6, &uneven, 3);
    let c = counts(&r);
    assert_eq!(c["c"], 3, "{c:?}");
    assert_eq!(c["a"] + c["b"], 3);
    assert!(c["a"].abs_diff(c["b"]) <= 1, "{c:?}");
}

#[test]
fn spread_counts_the_groups_tasks_already_running() {
    let mut a = inst("a", "z1");
    a.groups.insert("service:web".into(), 2);
    // Another group's tasks do not count.
    let mut b = inst("b", "z2");
    b.groups.insert("service:other".into(), 5);
    let r = run(&service_default(), 4, &[a, b, inst("c", "z3")], 1);
    let c = counts(&r);
    assert_eq!(c.get("a"), None, "{c:?}");
    assert_eq!((c["b"], c["c"]), (2, 2));
}

#[test]
fn spread_on_a_custom_attribute_counts_instances_without_it_as_one_value() {
    let mut a = inst("a", "z1");
    a.attributes.push(("rack".into(), "r1".into()));
    let mut b = inst("b", "z1");
    b.attributes.push(("rack".into(), "r1".into()));
    let c = inst("c", "z1");
    let p = Placement::new(
        &[strategy("spread", Some("attribute:rack"))],
        &[],
        &[],
        false,
    )
    .unwrap();
    let r = run(&p, 4, &[a, b, c], 9);
    let n = counts(&r);
    assert_eq!(n["c"], 2, "the value-less bucket gets half: {n:?}");
    assert_eq!(n.get("a").unwrap_or(&0) + n.get("b").unwrap_or(&0), 2);
}

#[test]
fn binpack_memory_fills_one_instance_first() {
    let mut fuller = inst("b", "z1");
    fuller.used.memory = 1024;
    let p = Placement::new(&[strategy("binpack", Some("memory"))], &[], &[], false).unwrap();
    // 3072 MiB left on b: 12 copies of 256 fill it, the 13th goes elsewhere.
    let r = run(&p, 13, &[inst("a", "z1"), fuller, inst("c", "z1")], 5);
    let c = counts(&r);
    assert_eq!(c["b"], 12, "{c:?}");
    assert_eq!(c.values().sum::<usize>(), 13);
    let p = Placement::new(&[strategy("binpack", Some("cpu"))], &[], &[], false).unwrap();
    let mut busy = inst("c", "z1");
    busy.used.cpu = 3968;
    let r = run(&p, 2, &[inst("a", "z1"), busy], 5);
    assert_eq!(r[0].as_deref(), Ok("c"), "the one CPU slot left on c first");
    assert_eq!(r[1].as_deref(), Ok("a"));
}

#[test]
fn strategies_apply_in_order_each_breaking_the_previous_ties() {
    // Spread over zones, then binpack memory within a zone.
    let mut a = inst("a", "z1");
    a.used.memory = 2048;
    let p = Placement::new(
        &[
            strategy("spread", Some("attribute:ecs.availability-zone")),
            strategy("binpack", Some("memory")),
        ],
        &[],
        &[],
        false,
    )
    .unwrap();
    let r = run(&p, 4, &[inst("b", "z1"), a, inst("c", "z2")], 2);
    let c = counts(&r);
    assert_eq!(c["c"], 2, "{c:?}");
    assert_eq!(c["a"], 2, "within z1 the fuller instance: {c:?}");
}

#[test]
fn random_is_reproducible_from_its_seed_and_uses_every_instance() {
    let cands: Vec<Candidate> = (0..5).map(|i| inst(&format!("i{i}"), "z1")).collect();
    let p = Placement::new(&[], &[], &[], false).unwrap();
    assert_eq!(run(&p, 10, &cands, 42), run(&p, 10, &cands, 42));
    let differs = (0..10).any(|seed| run(&p, 10, &cands, seed) != run(&p, 10, &cands, 42));
    assert!(differs);
    let spread = counts(&run(&p, 10, &cands, 42));
    assert!(
        spread.len() >= 3,
        "random uses several instances: {spread:?}"
    );
}

#[test]
fn distinct_instance_refuses_a_fourth_task_on_three_instances() {
    let three = [inst("a", "z1"), inst("b", "z2"), inst("c", "z3")];
    let p = Placement::new(&[], &[distinct()], &[], true).unwrap();
    let r = run(&p, 4, &three, 0);
    assert_eq!(counts(&r).len(), 3);
    let f = r[3].as_ref().unwrap_err();
    assert_eq!(f.reason, DISTINCT_INSTANCE_UNSATISFIED);
    assert!(f.arn.starts_with("arn:"), "{f:?}");
}

#[test]
fn member_of_a_custom_attribute_and_of_a_task_group() {
    let mut gpu = inst("g", "z1");
    gpu.attributes.push(("gpu".into(), "yes".into()));
    let cands = [inst("a", "z1"), gpu.clone(), inst("b", "z2")];
    let p = Placement::new(&[], &[member_of("attribute:gpu == yes")], &[], false).unwrap();
    let r = run(&p, 3, &cands, 0);
    assert_eq!(counts(&r)["g"], 3);

    // Affinity: only where a task of service:db runs.
    let mut db = inst("b", "z2");
    db.groups.insert("service:db".into(), 1);
    let p = Placement::new(&[], &[member_of("task:group == service:db")], &[], true).unwrap();
    let r = run(&p, 2, &[inst("a", "z1"), db.clone()], 0);
    assert_eq!(counts(&r)["b"], 2);
    // Anti-affinity with the group being placed: each copy sees the previous ones.
    let p = Placement::new(
        &[],
        &[member_of("not(task:group == service:web)")],
        &[],
        false,
    )
    .unwrap();
    let r = run(&p, 3, &[inst("a", "z1"), db], 0);
    assert_eq!(counts(&r).len(), 2);
    let f = r[2].as_ref().unwrap_err();
    assert_eq!(f.reason, MEMBER_OF_UNSATISFIED);
    assert!(f.detail.contains("task:group == service:web"), "{f:?}");
}

#[test]
fn task_definition_constraints_apply_with_the_requests() {
    let mut gpu = inst("g", "z1");
    gpu.attributes.push(("gpu".into(), "yes".into()));
    let p = Placement::new(
        &[],
        &[distinct()],
        &[member_of("attribute:gpu exists")],
        false,
    )
    .unwrap();
    let r = run(&p, 2, &[inst("a", "z1"), gpu], 0);
    assert_eq!(r[0].as_deref(), Ok("g"));
    // The request's distinctInstance leaves a, which the definition's memberOf excludes.
    assert_eq!(r[1].as_ref().unwrap_err().reason, MEMBER_OF_UNSATISFIED);
}

#[test]
fn resources_are_checked_before_constraints() {
    let mut small = inst("a", "z1");
    small.registered.memory = 100;
    let p = Placement::new(&[], &[member_of("attribute:none exists")], &[], false).unwrap();
    let r = run(&p, 1, &[small], 0);
    assert_eq!(r[0].as_ref().unwrap_err().reason, "RESOURCE:MEMORY");
}

#[test]
fn queries_see_agent_version_registration_and_task_count() {
    let mut old = inst("old", "z1");
    old.agent_version = "0.1.0".into();
    old.registered_at_ms = 0;
    old.running_tasks = 4;
    let mut new = inst("new", "z1");
    new.agent_version = "0.2.0".into();
    new.registered_at_ms = 1_700_000_000_000;
    for (q, want) in [
        ("agentVersion >= 0.2.0", "new"),
        ("registeredAt < 2000-01-01", "old"),
        ("runningTasksCount == 0", "new"),
        ("agentConnected == true and runningTasksCount > 3", "old"),
        (
            "ec2InstanceId != i-123 and registeredAt > 2020-01-01",
            "new",
        ),
    ] {
        let p = Placement::new(&[], &[member_of(q)], &[], false).unwrap();
        let r = run(&p, 1, &[old.clone(), new.clone()], 0);
        assert_eq!(r[0].as_deref(), Ok(want), "{q}");
    }
}
