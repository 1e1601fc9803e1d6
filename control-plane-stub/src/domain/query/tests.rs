use super::values::parse_time;
use super::*;

#[derive(Default)]
struct Inst {
    connected: bool,
    version: Option<&'static str>,
    attributes: Vec<(&'static str, &'static str)>,
    ec2: Option<&'static str>,
    registered_at_ms: i64,
    running: u64,
    groups: Vec<&'static str>,
}

impl Facts for Inst {
    fn agent_connected(&self) -> bool {
        self.connected
    }
    fn agent_version(&self) -> Option<&str> {
        self.version
    }
    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
    fn ec2_instance_id(&self) -> Option<&str> {
        self.ec2
    }
    fn registered_at_ms(&self) -> i64 {
        self.registered_at_ms
    }
    fn running_tasks_count(&self) -> u64 {
        self.running
    }
    fn any_task_group(&self, pred: &mut dyn FnMut(&str) -> bool) -> bool {
        self.groups.iter().any(|g| pred(g))
    }
}

fn yes(q: &str, i: &Inst) -> bool {
    parse(q).unwrap_or_else(|e| panic!("{q}: {e}")).matches(i)
}

fn err(q: &str) -> QueryError {
    match parse(q) {
        Ok(e) => panic!("{q} parsed as {e}"),
        Err(e) => e,
    }
}

fn t2_small_in_1a() -> Inst {
    Inst {
        connected: true,
        version: Some("1.14.4"),
        attributes: vec![
            ("ecs.instance-type", "t2.small"),
            ("ecs.availability-zone", "us-east-1a"),
        ],
        registered_at_ms: parse_time("2018-02-12T10:00:00Z").unwrap().0,
        running: 1,
        groups: vec!["service:production"],
        ..Default::default()
    }
}

#[test]
fn every_example_of_the_developer_guide() {
    let a = t2_small_in_1a();
    let g2 = Inst {
        attributes: vec![
            ("ecs.instance-type", "g2.2xlarge"),
            ("ecs.availability-zone", "us-east-1d"),
        ],
        ec2: Some("i-abcd1234"),
        version: Some("1.20.0"),
        registered_at_ms: parse_time("2018-02-13").unwrap().0,
        groups: vec!["database"],
        running: 2,
        ..Default::default()
    };
    assert!(yes("attribute:ecs.instance-type == t2.small", &a));
    assert!(!yes("attribute:ecs.instance-type == t2.small", &g2));
    let zones = "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]";
    assert!(yes(zones, &a) && !yes(zones, &g2));
    let compound =
        "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d";
    assert!(!yes(compound, &g2) && !yes(compound, &a));
    let g2_in_1b = Inst {
        attributes: vec![
            ("ecs.instance-type", "g2.8xlarge"),
            ("ecs.availability-zone", "us-east-1b"),
        ],
        ..Default::default()
    };
    assert!(yes(compound, &g2_in_1b));
    assert!(yes("task:group == service:production", &a));
    assert!(!yes("task:group == service:production", &g2));
    assert!(yes("not(task:group == database)", &a));
    assert!(!yes("not(task:group == database)", &g2));
    assert!(yes("runningTasksCount == 1", &a) && !yes("runningTasksCount == 1", &g2));
    assert!(yes("agentVersion < 1.14.5", &a) && !yes("agentVersion < 1.14.5", &g2));
    assert!(yes("registeredAt < 2018-02-13", &a) && !yes("registeredAt < 2018-02-13", &g2));
    let ids = "ec2InstanceId in ['i-abcd1234', 'i-wxyx7890']";
    assert!(yes(ids, &g2) && !yes(ids, &a));
    assert!(yes("(attribute:ecs.instance-type == t2.small or runningTasksCount > 5) and agentConnected == true", &a));
}

#[test]
fn word_operators_and_symbols_are_the_same() {
    let a = t2_small_in_1a();
    for (word, symbol) in [
        ("equals", "=="),
        ("not_equals", "!="),
        ("greater_than", ">"),
        ("greater_than_equal", ">="),
        ("less_than", "<"),
        ("less_than_equal", "<="),
    ] {
        for v in ["0", "1", "2"] {
            assert_eq!(
                yes(&format!("runningTasksCount {word} {v}"), &a),
                yes(&format!("runningTasksCount {symbol} {v}"), &a),
                "{word} {v}"
            );
        }
    }
    assert!(yes("attribute:ecs.instance-type matches t2\\..*", &a));
    assert!(yes("attribute:ecs.instance-type not_matches g2.*", &a));
    assert!(yes("attribute:ecs.instance-type exists", &a));
    assert!(yes("attribute:custom not_exists", &a));
    assert!(yes("attribute:custom !exists", &a));
    assert!(yes(
        "attribute:ecs.availability-zone not_in [us-east-1b]",
        &a
    ));
    assert!(yes("attribute:ecs.availability-zone !in [us-east-1b]", &a));
    assert!(yes("attribute:ecs.instance-type !~ g2.*", &a));
    assert!(yes(
        "attribute:custom !exists AND NOT runningTasksCount == 0",
        &a
    ));
}

#[test]
fn boolean_precedence_not_binds_tighter_than_and_than_or() {
    let a = t2_small_in_1a();
    // or(false, and(true, true))
    assert!(yes(
        "runningTasksCount == 9 or runningTasksCount == 1 && agentConnected == true",
        &a
    ));
    // and(or(false, true), false)
    assert!(!yes(
        "(runningTasksCount == 9 || runningTasksCount == 1) and agentConnected == false",
        &a
    ));
    assert!(yes("!runningTasksCount == 9", &a));
    assert!(yes("not not runningTasksCount == 1", &a));
    assert!(yes("!(!(runningTasksCount == 1))", &a));
    let e = parse("a_is_not_a_subject == 1 or x").unwrap_err();
    assert_eq!(e.position, 1);
}

#[test]
fn absent_values_fail_positive_operators_and_pass_negative_ones() {
    let bare = Inst::default();
    assert!(!yes("attribute:zone == a", &bare));
    assert!(yes("attribute:zone != a", &bare));
    assert!(yes("attribute:zone !in [a, b]", &bare));
    assert!(!yes("attribute:zone > 1", &bare));
    assert!(!yes("ec2InstanceId =~ i-.*", &bare));
    assert!(yes("ec2InstanceId !~ i-.*", &bare));
    assert!(!yes("task:group exists", &bare));
    assert!(yes("task:group != database", &bare));
}

#[test]
fn task_group_means_any_task_on_the_instance() {
    let i = Inst {
        groups: vec!["service:web", "family:batch"],
        ..Default::default()
    };
    assert!(yes("task:group == family:batch", &i));
    assert!(yes("task:group =~ service:.*", &i));
    assert!(yes("task:group in [service:api, service:web]", &i));
    assert!(
        !yes("task:group != service:web", &i),
        "it does hold a web task"
    );
    assert!(yes("task:group exists", &i));
}

#[test]
fn comparisons_are_numeric_for_numbers_and_by_part_for_versions() {
    let i = Inst {
        version: Some("1.9.0"),
        attributes: vec![("weight", "10"), ("kernel", "6.1.0"), ("name", "beta")],
        ..Default::default()
    };
    assert!(yes("attribute:weight > 9", &i), "10 > 9 as numbers");
    assert!(yes("attribute:weight <= 10.0", &i));
    assert!(
        yes("attribute:kernel >= 5.10.2", &i),
        "6.1.0 > 5.10.2 by part"
    );
    assert!(yes("agentVersion < 1.14.5", &i));
    assert!(yes("agentVersion >= 1.9", &i));
    assert!(yes("attribute:name > alpha", &i), "strings otherwise");
}

#[test]
fn registered_at_takes_the_four_documented_formats() {
    let i = Inst {
        registered_at_ms: parse_time("2018-06-18T22:28:28Z").unwrap().0,
        ..Default::default()
    };
    assert!(yes("registeredAt == 2018-06-18T22:28:28+00:00", &i));
    assert!(yes("registeredAt == 2018-06-18T22:28:28Z", &i));
    assert!(yes("registeredAt == 2018-06-18T22:28:28", &i));
    assert!(
        yes("registeredAt == 2018-06-18", &i),
        "a date compares by day"
    );
    assert!(yes("registeredAt == 2018-06-19T00:28:28+02:00", &i));
    assert!(yes("registeredAt > 2018-06-17", &i));
    assert!(yes("registeredAt < 2018-06-18T22:28:29Z", &i));
    for bad in [
        "2018-13-01",
        "2018-02-30",
        "18-06-18",
        "2018-06-18T25:00:00",
        "yesterday",
    ] {
        let e = err(&format!("registeredAt > {bad}"));
        assert_eq!(e.position, 16, "{bad}: {e}");
        assert!(e.message.contains("not a date"), "{e}");
    }
    assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some((0, false)));
    assert_eq!(parse_time("2000-03-01"), Some((951_868_800_000, true)));
}

#[test]
fn errors_name_the_position_and_what_was_expected() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "empty"),
        ("   ", 4, "empty"),
        ("colour == red", 1, "unknown subject"),
        ("attribute: == x", 1, "unknown subject"),
        ("runningTasksCount", 18, "expected an operator"),
        ("runningTasksCount ~= 1", 19, "expected an operator"),
        (
            "runningTasksCount =~ 1",
            19,
            "cannot be used with runningTasksCount",
        ),
        ("agentConnected > true", 16, "cannot be used"),
        ("task:group >= x", 12, "cannot be used"),
        ("runningTasksCount == many", 22, "not a count"),
        ("attribute:x ==", 15, "expected a value"),
        ("attribute:x in a, b", 16, "takes a list"),
        ("attribute:x in [a b]", 19, "expected ',' or ']'"),
        ("attribute:x in []", 17, "empty"),
        ("attribute:x =~ '(a'", 16, "not a valid pattern"),
        ("attribute:x == 'open", 16, "not closed"),
        ("(attribute:x exists", 20, "expected ')'"),
        ("attribute:x exists)", 19, "expected 'and', 'or' or the end"),
        ("attribute:x exists and", 23, "expected a subject"),
        (
            "attribute:x exists attribute:y exists",
            20,
            "expected 'and'",
        ),
    ];
    for (q, position, needle) in cases {
        let e = err(q);
        assert_eq!(e.position, *position, "{q:?}: {e}");
        assert!(e.message.contains(needle), "{q:?}: {e}");
    }
    let long = format!("attribute:x == {}", "a".repeat(MAX_EXPRESSION_CHARS));
    assert!(err(&long).message.contains("at most 2000"));
    let deep = format!("{}attribute:x exists{}", "(".repeat(40), ")".repeat(40));
    assert!(err(&deep).message.contains("nest"));
    let nots = format!("{}attribute:x exists", "not ".repeat(40));
    assert!(err(&nots).message.contains("nest"));
}

#[test]
fn quoted_values_keep_spaces_and_escapes() {
    let i = Inst {
        attributes: vec![("team", "data eng"), ("q", "it's")],
        ..Default::default()
    };
    assert!(yes("attribute:team == 'data eng'", &i));
    assert!(yes("attribute:team == \"data eng\"", &i));
    assert!(yes("attribute:q == 'it\\'s'", &i));
    assert!(yes("attribute:team in ['data eng', \"ops\"]", &i));
}

#[test]
fn the_canonical_form_parses_back_to_itself() {
    for q in [
        "attribute:ecs.instance-type =~ g2.* and attribute:ecs.availability-zone != us-east-1d",
        "not(task:group == database) or runningTasksCount <= 3",
        "attribute:team in ['data eng', ops] && registeredAt >= 2018-06-18",
        "!(agentConnected == true || ec2InstanceId !~ 'i-(a|b).*')",
        "attribute:q == 'it\\'s' and attribute:z !exists",
    ] {
        let once = parse(q).unwrap().to_string();
        let twice = parse(&once)
            .unwrap_or_else(|e| panic!("{once}: {e}"))
            .to_string();
        assert_eq!(once, twice, "{q}");
    }
}

/// Random token soup and random bytes: the parser never panics, every error points inside the
/// text (or just after it), and whatever parses prints in a form that parses to the same thing.
#[test]
fn fuzz_random_inputs_never_panic() {
    const PIECES: &[&str] = &[
        "attribute:a",
        "attribute:ecs.instance-type",
        "task:group",
        "agentVersion",
        "registeredAt",
        "runningTasksCount",
        "agentConnected",
        "ec2InstanceId",
        "==",
        "!=",
        ">",
        ">=",
        "<",
        "<=",
        "=~",
        "!~",
        "in",
        "!in",
        "not_in",
        "exists",
        "!exists",
        "and",
        "or",
        "not",
        "&&",
        "||",
        "!",
        "(",
        ")",
        "[",
        "]",
        ",",
        "'",
        "\"",
        "\\",
        "x",
        "1",
        "1.14.5",
        "2018-06-18",
        "g2.*",
        "(a|b)",
        "*",
        " ",
        "  ",
        "é",
        "\u{0}",
        "\t",
    ];
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for round in 0..30_000 {
        let text: String = if round % 5 == 4 {
            (0..rng.usize(0..40)).map(|_| rng.char(..)).collect()
        } else {
            (0..rng.usize(0..14))
                .map(|_| {
                    let p = PIECES[rng.usize(..PIECES.len())];
                    if rng.bool() {
                        format!("{p} ")
                    } else {
                        p.to_string()
                    }
                })
                .collect()
        };
        match parse(&text) {
            Ok(e) => {
                let printed = e.to_string();
                let again = parse(&printed)
                    .unwrap_or_else(|err| panic!("{text:?} printed as {printed:?}: {err}"));
                assert_eq!(again.to_string(), printed, "{text:?}");
                let _ = e.matches(&t2_small_in_1a());
            }
            Err(e) => assert!(
                (1..=text.chars().count() + 1).contains(&e.position),
                "{text:?}: {e}"
            ),
        }
    }
}
