//! Aligned text tables for berthctl. Pure: JSON response in, text out.

use serde_json::Value;

/// Left-aligned columns separated by two spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == last {
                    c.to_string()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = vec![line(header.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

pub(super) fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

pub(super) fn last_segment(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

pub fn arn_list(v: &Value, key: &str, header: &str) -> String {
    let rows: Vec<Vec<String>> = v[key]
        .as_array()
        .map(|a| a.iter().map(|x| vec![s(x)]).collect())
        .unwrap_or_default();
    render(&[header], &rows)
}

pub fn task_definitions(defs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = defs
        .iter()
        .map(|d| {
            vec![
                format!("{}:{}", s(&d["family"]), s(&d["revision"])),
                s(&d["status"]),
                s(&d["networkMode"]),
                d["containerDefinitions"]
                    .as_array()
                    .map(|cs| {
                        cs.iter()
                            .map(|c| s(&c["name"]))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_default(),
            ]
        })
        .collect();
    render(&["FAMILY:REV", "STATUS", "NETWORK", "CONTAINERS"], &rows)
}

pub fn task_definition_detail(d: &Value) -> String {
    let head = task_definitions(std::slice::from_ref(d));
    let rows: Vec<Vec<String>> = d["containerDefinitions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    vec![
                        s(&c["name"]),
                        s(&c["image"]),
                        s(&c["cpu"]),
                        s(&c["memory"]),
                        s(&c["memoryReservation"]),
                        c["essential"].as_bool().unwrap_or(true).to_string(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{head}\n\n{}",
        render(
            &[
                "CONTAINER",
                "IMAGE",
                "CPU",
                "MEMORY",
                "RESERVATION",
                "ESSENTIAL"
            ],
            &rows
        )
    )
}

pub fn tasks(tasks: &[Value]) -> String {
    let rows: Vec<Vec<String>> = tasks
        .iter()
        .map(|t| {
            let family_rev = t["taskDefinitionArn"]
                .as_str()
                .and_then(|a| a.rsplit('/').next())
                .unwrap_or("-")
                .to_string();
            let containers = containers_of(t)
                .map(|c| {
                    let status = match c.get("exitCode") {
                        Some(code) if !code.is_null() => {
                            format!("{}={}({})", s(&c["name"]), s(&c["lastStatus"]), code)
                        }
                        _ => format!("{}={}", s(&c["name"]), s(&c["lastStatus"])),
                    };
                    format!("{status}{}", container_health(c))
                })
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                last_segment(t["taskArn"].as_str().unwrap_or("-")),
                family_rev,
                s(&t["lastStatus"]),
                s(&t["desiredStatus"]),
                task_health(t),
                t.get("stopCode").map(s).unwrap_or_else(|| "-".into()),
                task_address(t),
                task_ports(t),
                containers,
            ]
        })
        .collect();
    render(
        &[
            "TASK",
            "FAMILY:REV",
            "LAST",
            "DESIRED",
            "HEALTH",
            "STOP CODE",
            "ADDRESS",
            "PORTS",
            "CONTAINERS",
        ],
        &rows,
    )
}

fn containers_of(t: &Value) -> impl Iterator<Item = &Value> {
    t["containers"].as_array().into_iter().flatten()
}

/// The task's healthStatus; "-" when none of its containers has a health check (ECS says
/// UNKNOWN then, which reads like a problem).
fn task_health(t: &Value) -> String {
    if containers_of(t).any(|c| c["berth"].get("health").is_some()) {
        s(&t["healthStatus"])
    } else {
        "-".to_string()
    }
}

/// Most characters of a check's output shown in the CONTAINERS column.
const MAX_SHOWN_OUTPUT: usize = 60;

/// A checked container's health after its status: `,HEALTHY`, or with the last check's output
/// (its first line, trimmed, shortened) `,UNHEALTHY:"connection refused"`. Empty for a
/// container without a health check.
fn container_health(c: &Value) -> String {
    let Some(h) = c["berth"].get("health") else {
        return String::new();
    };
    let status = h["status"].as_str().unwrap_or("UNKNOWN");
    let line = h["output"]
        .as_str()
        .unwrap_or("")
        .trim()
        .lines()
        .next()
        .unwrap_or("")
        .trim();
    if line.is_empty() {
        return format!(",{status}");
    }
    let shown: String = if line.chars().count() > MAX_SHOWN_OUTPUT {
        let cut: String = line.chars().take(MAX_SHOWN_OUTPUT - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        line.to_string()
    };
    format!(",{status}:{shown:?}")
}

/// The task's own address: an awsvpc task's from its containers' networkInterfaces, a bridge
/// task's from Berth's extension.
fn task_address(t: &Value) -> String {
    let awsvpc = containers_of(t)
        .flat_map(|c| c["networkInterfaces"].as_array().into_iter().flatten())
        .find_map(|i| i["privateIpv4Address"].as_str());
    let bridge = || containers_of(t).find_map(|c| c["berth"]["privateIpv4Address"].as_str());
    awsvpc.or_else(bridge).unwrap_or("-").to_string()
}

/// Most bindings shown in the PORTS column before "+N".
const MAX_SHOWN_BINDINGS: usize = 6;

/// The networkBindings as CONTAINERPORT->HOSTPORT/PROTOCOL (`80->49153/tcp`); an awsvpc
/// binding, on the task's own address, as PORT/PROTOCOL.
fn task_ports(t: &Value) -> String {
    let mut shown: Vec<String> = Vec::new();
    for b in containers_of(t).flat_map(|c| c["networkBindings"].as_array().into_iter().flatten()) {
        let proto = b["protocol"].as_str().unwrap_or("tcp");
        let (container, host) = match (b.get("containerPortRange"), b.get("containerPort")) {
            (Some(r), _) => (s(r), s(b.get("hostPortRange").unwrap_or(r))),
            (None, Some(p)) => (s(p), s(b.get("hostPort").unwrap_or(p))),
            (None, None) => continue,
        };
        let text =
            if container == host && t["attachments"].as_array().is_some_and(|a| !a.is_empty()) {
                format!("{container}/{proto}")
            } else {
                format!("{container}->{host}/{proto}")
            };
        if !shown.contains(&text) {
            shown.push(text);
        }
    }
    match shown.len() {
        0 => "-".to_string(),
        n if n > MAX_SHOWN_BINDINGS => format!(
            "{} +{}",
            shown[..MAX_SHOWN_BINDINGS].join(","),
            n - MAX_SHOWN_BINDINGS
        ),
        _ => shown.join(","),
    }
}

/// Security groups as IDs, names and rules in `--ingress` syntax.
pub fn security_groups(groups: &[Value]) -> String {
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let rules: Vec<String> = g["ingress"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let proto = r["protocol"].as_str().unwrap_or("?");
                    let cidr = r["cidr"].as_str().unwrap_or("?");
                    match (proto, r["fromPort"].as_u64(), r["toPort"].as_u64()) {
                        ("all", _, _) => format!("all::{cidr}"),
                        (p, Some(a), Some(b)) if a == b => format!("{p}:{a}:{cidr}"),
                        (p, Some(a), Some(b)) => format!("{p}:{a}-{b}:{cidr}"),
                        (p, _, _) => format!("{p}:?:{cidr}"),
                    }
                })
                .collect();
            vec![
                s(&g["groupId"]),
                s(&g["groupName"]),
                if rules.is_empty() {
                    "(none: no ingress)".to_string()
                } else {
                    rules.join(" ")
                },
            ]
        })
        .collect();
    render(&["ID", "NAME", "INGRESS"], &rows)
}

/// Secrets as names, ARNs and creation times (the API never gives their logins).
pub fn secrets(secrets: &[Value]) -> String {
    let rows: Vec<Vec<String>> = secrets
        .iter()
        .map(|x| vec![s(&x["name"]), s(&x["arn"]), utc(&x["createdAt"])])
        .collect();
    render(&["NAME", "ARN", "CREATED"], &rows)
}

fn failures(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["failures"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    vec![
                        s(&f["arn"]),
                        s(&f["reason"]),
                        f.get("detail").map(s).unwrap_or_default(),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() {
        String::new()
    } else {
        format!("\n\n{}", render(&["FAILED", "REASON", "DETAIL"], &rows))
    }
}

pub fn tasks_and_failures(v: &Value) -> String {
    let list = v["tasks"].as_array().cloned().unwrap_or_default();
    format!("{}{}", tasks(&list), failures(v))
}

pub fn container_instances(v: &Value) -> String {
    let resource = |list: &Value, name: &str| {
        list.as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == name))
            .map(|r| s(&r["integerValue"]))
            .unwrap_or_else(|| "-".into())
    };
    let rows: Vec<Vec<String>> = v["containerInstances"]
        .as_array()
        .map(|is| {
            is.iter()
                .map(|i| {
                    vec![
                        last_segment(i["containerInstanceArn"].as_str().unwrap_or("-")),
                        s(&i["status"]),
                        s(&i["agentConnected"]),
                        s(&i["healthStatus"]["overallStatus"]),
                        format!(
                            "{}/{}",
                            resource(&i["remainingResources"], "CPU"),
                            resource(&i["registeredResources"], "CPU")
                        ),
                        format!(
                            "{}/{}",
                            resource(&i["remainingResources"], "MEMORY"),
                            resource(&i["registeredResources"], "MEMORY")
                        ),
                        s(&i["runningTasksCount"]),
                        s(&i["pendingTasksCount"]),
                        s(&i["versionInfo"]["agentVersion"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{}{}",
        render(
            &[
                "INSTANCE",
                "STATUS",
                "CONNECTED",
                "HEALTH",
                "CPU FREE/ALL",
                "MEM FREE/ALL",
                "RUNNING",
                "PENDING",
                "AGENT"
            ],
            &rows
        ),
        failures(v)
    )
}

/// A task's events (`GET /berth/v1/tasks/<task>/events`), one row each, in the order given.
pub fn events(events: &[Value]) -> String {
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let reason = e["reason"].as_str().unwrap_or("");
            vec![
                s(&e["seq"]),
                utc(&e["at"]),
                s(&e["kind"]),
                s(&e["container"]),
                s(&e["status"]),
                s(&e["exitCode"]),
                if reason.is_empty() {
                    "-".to_string()
                } else {
                    reason.to_string()
                },
            ]
        })
        .collect();
    render(
        &[
            "SEQ",
            "AT (UTC)",
            "KIND",
            "CONTAINER",
            "STATUS",
            "EXIT",
            "REASON",
        ],
        &rows,
    )
}

/// Epoch seconds as `YYYY-MM-DD HH:MM:SS.mmm`, in UTC; "-" when not a number.
pub(super) fn utc(v: &Value) -> String {
    let Some(secs) = v.as_f64() else {
        return "-".to_string();
    };
    let ms = (secs * 1000.0).round() as i64;
    let (days, ms_of_day) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000
    )
}

pub fn clusters(cs: &[Value]) -> String {
    let rows: Vec<Vec<String>> = cs
        .iter()
        .map(|c| {
            vec![
                s(&c["clusterName"]),
                s(&c["status"]),
                s(&c["registeredContainerInstancesCount"]),
                s(&c["runningTasksCount"]),
                s(&c["pendingTasksCount"]),
            ]
        })
        .collect();
    render(
        &["CLUSTER", "STATUS", "INSTANCES", "RUNNING", "PENDING"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_aligned() {
        let out = render(
            &["A", "BB"],
            &[
                vec!["long".into(), "x".into()],
                vec!["s".into(), "y".into()],
            ],
        );
        assert_eq!(out, "A     BB\nlong  x\ns     y");
    }

    #[test]
    fn task_rows_show_exit_codes() {
        let t = json!({
            "taskArn": "arn:aws:ecs:r:a:task/default/abc",
            "taskDefinitionArn": "arn:aws:ecs:r:a:task-definition/web:2",
            "lastStatus": "STOPPED", "desiredStatus": "STOPPED", "stopCode": "EssentialContainerExited",
            "containers": [{"name": "app", "lastStatus": "STOPPED", "exitCode": 1}, {"name": "side", "lastStatus": "RUNNING"}]
        });
        let out = tasks(&[t]);
        let row = out.lines().nth(1).unwrap();
        assert!(row.starts_with("abc "), "{row}");
        assert!(row.contains("web:2"));
        assert!(row.ends_with("app=STOPPED(1) side=RUNNING"), "{row}");
    }

    #[test]
    fn task_rows_show_address_and_bindings() {
        let bridge = json!({
            "taskArn": "arn:aws:ecs:r:a:task/default/abc",
            "taskDefinitionArn": "arn:aws:ecs:r:a:task-definition/web:2",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "attachments": [],
            "containers": [{"name": "app", "lastStatus": "RUNNING",
                "networkInterfaces": [], "berth": {"privateIpv4Address": "10.232.0.5"},
                "networkBindings": [
                    {"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"},
                    {"bindIP": "0.0.0.0", "containerPort": 53, "hostPort": 5353, "protocol": "udp"}
                ]}]
        });
        let words = |out: &str, line: usize| -> Vec<String> {
            out.lines()
                .nth(line)
                .unwrap()
                .split_whitespace()
                .map(str::to_string)
                .collect()
        };
        let out = tasks(&[bridge]);
        assert_eq!(
            words(&out, 0)[7..],
            ["ADDRESS", "PORTS", "CONTAINERS"],
            "{out}"
        );
        assert_eq!(
            words(&out, 1)[6..],
            ["10.232.0.5", "80->49153/tcp,53->5353/udp", "app=RUNNING"],
            "{out}"
        );
        let awsvpc = json!({
            "taskArn": "arn:aws:ecs:r:a:task/default/def",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
            "attachments": [{"type": "ElasticNetworkInterface"}],
            "containers": [{"name": "app", "lastStatus": "RUNNING",
                "networkInterfaces": [{"privateIpv4Address": "10.233.0.2"}],
                "networkBindings": [
                    {"bindIP": "10.233.0.2", "containerPort": 80, "hostPort": 80, "protocol": "tcp"},
                    {"bindIP": "10.233.0.2", "containerPortRange": "9000-9010", "hostPortRange": "9000-9010", "protocol": "udp"}
                ]}]
        });
        assert_eq!(
            words(&tasks(&[awsvpc]), 1)[6..],
            ["10.233.0.2", "80/tcp,9000-9010/udp", "app=RUNNING"]
        );
        let host = json!({"taskArn": "t", "lastStatus": "PENDING", "containers": [{"name": "a", "lastStatus": "PENDING"}]});
        assert_eq!(words(&tasks(&[host]), 1)[6..], ["-", "-", "a=PENDING"]);
    }

    #[test]
    fn task_rows_show_health() {
        let long = "x".repeat(100);
        let t = json!({
            "taskArn": "arn:aws:ecs:r:a:task/default/abc",
            "taskDefinitionArn": "arn:aws:ecs:r:a:task-definition/web:2",
            "lastStatus": "RUNNING", "desiredStatus": "RUNNING", "healthStatus": "UNHEALTHY",
            "containers": [
                {"name": "app", "lastStatus": "RUNNING", "healthStatus": "UNHEALTHY",
                 "berth": {"health": {"status": "UNHEALTHY", "exitCode": 7,
                                 "output": "  \n curl: (7) Failed to connect  \nsecond line\n"}}},
                {"name": "db", "lastStatus": "STOPPED", "exitCode": 0, "healthStatus": "HEALTHY",
                 "berth": {"health": {"status": "HEALTHY", "output": ""}}},
                {"name": "side", "lastStatus": "RUNNING", "healthStatus": "UNKNOWN"},
                {"name": "big", "lastStatus": "RUNNING", "healthStatus": "UNHEALTHY",
                 "berth": {"health": {"status": "UNHEALTHY", "output": long}}}
            ]
        });
        let out = tasks(&[t]);
        let header = out.lines().next().unwrap();
        assert!(header.contains("DESIRED  HEALTH     STOP CODE"), "{out}");
        let row = out.lines().nth(1).unwrap();
        assert!(row.contains("RUNNING  UNHEALTHY  -"), "{row}");
        let shown = format!("{}…", "x".repeat(59));
        assert!(
            row.ends_with(&format!(
                "app=RUNNING,UNHEALTHY:\"curl: (7) Failed to connect\" db=STOPPED(0),HEALTHY side=RUNNING big=RUNNING,UNHEALTHY:\"{shown}\""
            )),
            "{row}"
        );
        // No container with a health check: no task health to speak of.
        let plain = json!({"taskArn": "t", "lastStatus": "RUNNING", "desiredStatus": "RUNNING",
            "healthStatus": "UNKNOWN", "containers": [{"name": "a", "lastStatus": "RUNNING", "healthStatus": "UNKNOWN"}]});
        let out = tasks(&[plain]);
        assert!(
            out.lines().nth(1).unwrap().contains("RUNNING  RUNNING  -"),
            "{out}"
        );
    }

    #[test]
    fn event_rows() {
        let out = events(&[
            json!({"seq": 1, "kind": "container", "container": "app", "status": "RUNNING",
                   "exitCode": null, "reason": "", "at": 1_700_000_000.25, "receivedAt": 1_700_000_000.3}),
            json!({"seq": 2, "kind": "task", "container": null, "status": "STOPPED",
                   "exitCode": null, "reason": "Essential container in task exited", "at": 0.0, "receivedAt": 0.0}),
            json!({"seq": 3, "kind": "container", "container": "app", "status": "STOPPED",
                   "exitCode": 137, "reason": "", "at": 951_782_400.0, "receivedAt": 0.0}),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0].split_whitespace().collect::<Vec<_>>(),
            [
                "SEQ",
                "AT",
                "(UTC)",
                "KIND",
                "CONTAINER",
                "STATUS",
                "EXIT",
                "REASON"
            ]
        );
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            [
                "1",
                "2023-11-14",
                "22:13:20.250",
                "container",
                "app",
                "RUNNING",
                "-",
                "-"
            ]
        );
        assert!(
            lines[2].ends_with(
                "task       -          STOPPED  -     Essential container in task exited"
            ),
            "{out}"
        );
        assert!(lines[2].contains("1970-01-01 00:00:00.000"), "{out}");
        assert!(lines[3].contains("2000-02-29 00:00:00.000"), "{out}");
        assert!(lines[3].contains("STOPPED  137"), "{out}");
    }

    #[test]
    fn instance_rows_show_health() {
        let v = json!({"containerInstances": [{
            "containerInstanceArn": "arn:aws:ecs:r:a:container-instance/default/i1",
            "status": "ACTIVE", "agentConnected": true,
            "healthStatus": {"overallStatus": "IMPAIRED", "details": []},
            "remainingResources": [], "registeredResources": [],
            "runningTasksCount": 0, "pendingTasksCount": 0, "versionInfo": {"agentVersion": "0.1.0"}
        }]});
        let out = container_instances(&v);
        assert!(
            out.lines().next().unwrap().contains("CONNECTED  HEALTH"),
            "{out}"
        );
        assert!(
            out.lines().nth(1).unwrap().contains("true       IMPAIRED"),
            "{out}"
        );
    }

    #[test]
    fn security_group_rows_use_the_ingress_syntax() {
        let g = json!({"groupId": "sg-1", "groupName": "web", "ingress": [
            {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"},
            {"protocol": "tcp", "fromPort": 8000, "toPort": 8010, "cidr": "10.0.0.0/8"},
            {"protocol": "all", "fromPort": 0, "toPort": 65535, "cidr": "192.168.0.0/16"}
        ]});
        let out = security_groups(&[g]);
        assert_eq!(
            out.lines().nth(1).unwrap(),
            "sg-1  web   tcp:80:0.0.0.0/0 tcp:8000-8010:10.0.0.0/8 all::192.168.0.0/16"
        );
    }

    #[test]
    fn secret_rows_show_name_arn_and_creation() {
        let out = secrets(&[
            json!({"name": "reg", "arn": "arn:aws:secretsmanager:r:a:secret:reg", "createdAt": 1_700_000_000.25}),
            json!({"name": "team/long-name", "arn": "arn:aws:secretsmanager:r:a:secret:team/long-name", "createdAt": 0}),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME            ARN                                               CREATED",
                "reg             arn:aws:secretsmanager:r:a:secret:reg             2023-11-14 22:13:20.250",
                "team/long-name  arn:aws:secretsmanager:r:a:secret:team/long-name  1970-01-01 00:00:00.000",
            ]
        );
    }
}
