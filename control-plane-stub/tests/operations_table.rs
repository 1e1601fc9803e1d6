//! README.md's operations table stays true: it names every operation of botocore's ECS model
//! once and nothing else, each operation it calls supported is dispatched by berth-cp, and each
//! it calls refused answers UnsupportedFeatureException with the README's own reason. botocore
//! comes from BERTH_PYTHON (else `python3`), as for the boto3 tests; without it this test fails
//! loudly.

mod common;

use std::collections::BTreeMap;

use common::clients::*;
use common::*;
use serde_json::json;

const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");

/// The header the operations table starts with; README.md has other tables.
const HEADER: &str = "| Operation | Status | Notes |";

#[derive(Debug)]
enum Status {
    Supported,
    Refused { reason: String },
}

/// The operations table's rows, in order: (operation, status).
fn table_rows(readme: &str) -> Vec<(String, Status)> {
    let mut lines = readme
        .lines()
        .skip_while(|line| line.trim() != HEADER)
        .skip(2); // the header and its |---| line
    let mut rows = Vec::new();
    for line in lines.by_ref() {
        let Some(inner) = line
            .trim()
            .strip_prefix('|')
            .and_then(|l| l.strip_suffix('|'))
        else {
            break;
        };
        let cells: Vec<&str> = inner.split('|').map(str::trim).collect();
        let [operation, status, notes] = cells[..] else {
            panic!("a row of the operations table has not 3 cells: {line}");
        };
        let status = match status {
            "supported" => Status::Supported,
            "refused" => {
                assert!(!notes.is_empty(), "{operation} is refused without a reason");
                Status::Refused {
                    reason: notes.to_string(),
                }
            }
            other => panic!("{operation}: status {other:?} is not supported or refused"),
        };
        rows.push((operation.to_string(), status));
    }
    assert!(!rows.is_empty(), "README.md has no table under {HEADER:?}");
    rows
}

async fn botocore_operations(home: &std::path::Path) -> Vec<String> {
    let code = "import json, botocore.session as s\n\
                model = s.get_session().get_service_model('ecs')\n\
                print(json.dumps(sorted(model.operation_names)))";
    let stdout = python_stdout(home, &["-c", code]).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not a JSON list ({e}): {stdout}"))
}

#[tokio::test]
async fn the_readme_names_every_ecs_operation_once_and_tells_the_truth_about_it() {
    let dir = TempDir::new("operations-table");
    let readme = std::fs::read_to_string(README).expect("README.md is readable");
    let rows = table_rows(&readme);

    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (operation, _) in &rows {
        *counts.entry(operation).or_default() += 1;
    }
    let botocore = botocore_operations(dir.path()).await;
    let missing: Vec<&String> = botocore
        .iter()
        .filter(|op| !counts.contains_key(op.as_str()))
        .collect();
    let twice: Vec<&&str> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(op, _)| op)
        .collect();
    let extra: Vec<&&str> = counts
        .keys()
        .filter(|op| !botocore.iter().any(|b| b == **op))
        .collect();
    assert!(
        missing.is_empty() && twice.is_empty() && extra.is_empty(),
        "README.md's operations table against botocore's {} ECS operations: missing {missing:?}, \
         listed more than once {twice:?}, not in botocore {extra:?}",
        botocore.len()
    );

    let server = start(dir.path()).await;
    let mut wrong = Vec::new();
    for (operation, status) in &rows {
        let (http, body) = ecs(server.api_addr, operation, json!({})).await;
        let code = body["__type"].as_str().unwrap_or("");
        let message = body["message"].as_str().unwrap_or("");
        match status {
            Status::Supported => {
                if code == "UnknownOperationException" || code == "UnsupportedFeatureException" {
                    wrong.push(format!("{operation} (supported): {http} {body}"));
                }
            }
            Status::Refused { reason } => {
                let expected = format!("{operation} is not supported by Berth: {reason}");
                if http != 400 || code != "UnsupportedFeatureException" || message != expected {
                    wrong.push(format!(
                        "{operation} (refused): {http} {body}, not 400 UnsupportedFeatureException \
                         {expected:?}"
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "berth-cp does not answer as README.md says:\n{}",
        wrong.join("\n")
    );
    server.shutdown().await.unwrap();
}

#[test]
fn only_the_operations_table_is_read() {
    let readme = "| Feature | Status |\n|---|---|\n| RunTask | supported |\n\n\
                  | Operation | Status | Notes |\n|---|---|---|\n| RunTask | supported | |\n\
                  | ExecuteCommand | refused | not yet |\n\nAfter the table.\n| x | y | z |\n";
    let rows = table_rows(readme);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(
        matches!(&rows[1], (op, Status::Refused { reason }) if op == "ExecuteCommand" && reason == "not yet")
    );
}
