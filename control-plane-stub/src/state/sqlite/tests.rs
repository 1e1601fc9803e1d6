use super::schema::{migrate_to, schema_version};
use super::*;
use crate::domain::task::ContainerStatus;
use crate::state::suite::{container_change, content, login, Backend};

struct TempDir(PathBuf);

/// SQLite in a directory of its own, removed with it.
struct Sqlite(TempDir);

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn Store> {
        Box::new(SqliteStore::open(&self.0 .0).unwrap())
    }
}

crate::state::suite::store_suite!(Sqlite(temp_dir()));
crate::state::suite_clusters::cluster_suite!(Sqlite(temp_dir()));

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> TempDir {
    TempDir(std::env::temp_dir().join(format!("berth-cp-store-{}", crate::domain::ids::new_id())))
}

#[test]
fn a_version_2_database_migrates_to_3_keeping_its_data() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        migrate_to(&conn, 2).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 2);
        conn.execute_batch(
            "INSERT INTO clusters VALUES ('default', 1);
             INSERT INTO instances (id, cluster, secret_sha256, revoked, registered_at_ms,
                 last_heartbeat_ms, last_state_change_seq, info_json)
                 VALUES ('i1', 'default', 'x', 0, 1, 50, 4, '{\"hostname\":\"h\",\"resources\":[],\"attributes\":[],\"agent_version\":\"\",\"agent_hash\":\"\",\"containerd_version\":\"\"}');",
        )
        .unwrap();
        let t = crate::domain::task::tests::sample_task();
        conn.execute(
            "INSERT INTO tasks (id, cluster, instance_id, family, last_status, desired_status,
                 created_at_ms, body_json) VALUES ('t1', 'default', 'i1', 'web', 'PENDING',
                 'RUNNING', 1, ?1)",
            [serde_json::to_string(&t).unwrap()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(schema_version(&store.conn()).unwrap(), SCHEMA_VERSION);
    let i = store.get_instance("i1").unwrap().unwrap();
    // A heartbeat recorded by version 2 said nothing about containerd.
    assert_eq!(
        (i.last_heartbeat_ms, i.health, i.last_state_change_seq),
        (Some(50), None, 4)
    );
    assert_eq!(i.info.hostname, "h");
    assert_eq!(store.task_events("t1").unwrap(), Some(Vec::new()));
    // Sequences already applied stay duplicates; new ones are events.
    let c = container_change("app", ContainerStatus::Running, None);
    assert_eq!(
        store.apply_state_change("i1", 4, &c, 60).unwrap(),
        ChangeOutcome::Duplicate
    );
    assert_eq!(
        store.apply_state_change("i1", 5, &c, 61).unwrap(),
        ChangeOutcome::Applied
    );
    assert_eq!(store.task_events("t1").unwrap().unwrap().len(), 1);
    store.record_heartbeat("i1", true, 70).unwrap();
    assert_eq!(
        store
            .get_instance("i1")
            .unwrap()
            .unwrap()
            .health
            .map(|h| h.changed_at_ms),
        Some(70)
    );
    // Opening again (another process, or a restart) migrates nothing twice.
    drop(store);
    let again = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(again.task_events("t1").unwrap().unwrap().len(), 1);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = temp_dir();
    drop(SqliteStore::open(&dir.0).unwrap());
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    conn.execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open(&dir.0),
        Err(StoreError::SchemaTooNew { found }) if found == SCHEMA_VERSION + 1
    ));
}

#[test]
fn a_version_1_database_gains_the_security_group_table() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir.0).unwrap();
    let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
    migrate_to(&conn, 1).unwrap();
    drop(conn);
    let store = SqliteStore::open(&dir.0).unwrap();
    store.put_security_group("web", &content(&[]), 1).unwrap();
    let version: i64 = store
        .conn()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn a_version_3_database_migrates_to_the_current_one_keeping_its_data() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        migrate_to(&conn, 3).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 3);
        conn.execute_batch(
            "INSERT INTO clusters VALUES ('default', 1);
             INSERT INTO task_definitions VALUES ('web', 1, 1, '{\"family\":\"web\"}', 5, NULL);
             INSERT INTO security_groups VALUES ('sg-1', 'web', '{\"id\":\"sg-1\",\"name\":\"web\",\"ingress\":[],\"created_at_ms\":1,\"updated_at_ms\":1}');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(schema_version(&store.conn()).unwrap(), SCHEMA_VERSION);
    assert_eq!(store.list_clusters().unwrap(), ["default"]);
    // Version 5's services table is there and empty.
    assert_eq!(store.list_services("default").unwrap(), Vec::new());
    assert_eq!(
        store
            .get_task_definition("web", Some(1))
            .unwrap()
            .unwrap()
            .registered_at_ms,
        5
    );
    assert_eq!(store.get_security_group("web").unwrap().unwrap().id, "sg-1");
    assert_eq!(store.list_secrets().unwrap(), Vec::new());
    store
        .put_secret(
            "reg",
            "arn:aws:secretsmanager:r:a:secret:reg",
            &login("u", "p"),
            1,
        )
        .unwrap();
    drop(store);
    // Opening again migrates nothing twice and keeps the secret.
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(store.get_secret("reg").unwrap().unwrap().1, login("u", "p"));
}

#[test]
fn a_version_6_database_moves_the_tags_of_services_and_task_definitions_to_the_tags_table() {
    use crate::domain::tags::Tag;
    let dir = temp_dir();
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        migrate_to(&conn, 6).unwrap();
        conn.execute_batch(
            "INSERT INTO clusters VALUES ('default', 1);
             INSERT INTO task_definitions VALUES ('web', 1, 1,
                 '{\"family\":\"web\",\"tags\":[{\"key\":\"team\",\"value\":\"edge\"},{\"key\":\"bare\"}]}', 5, NULL);
             INSERT INTO task_definitions VALUES ('web', 2, 1, '{\"family\":\"web\"}', 6, NULL);
             INSERT INTO services VALUES ('default', 'api', 'ACTIVE',
                 '{\"tags\":[{\"key\":\"tier\",\"value\":\"back\"}]}');
             INSERT INTO services VALUES ('default', 'old', 'INACTIVE',
                 '{\"tags\":[{\"key\":\"gone\",\"value\":\"x\"}]}');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(
        store.tags_of("task-definition/web:1").unwrap(),
        vec![Tag::new("team", "edge"), Tag::new("bare", "")]
    );
    assert_eq!(store.tags_of("task-definition/web:2").unwrap(), Vec::new());
    assert_eq!(
        store.tags_of("service/default/api").unwrap(),
        vec![Tag::new("tier", "back")]
    );
    assert_eq!(store.tags_of("service/default/old").unwrap(), Vec::new());
}

#[test]
fn a_version_7_database_migrates_to_8_with_its_clusters_active() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir.0).unwrap();
    {
        let conn = Connection::open(dir.0.join(DB_FILE)).unwrap();
        migrate_to(&conn, 7).unwrap();
        conn.execute_batch(
            "INSERT INTO clusters VALUES ('default', 1);
             INSERT INTO clusters VALUES ('prod', 2);
             INSERT INTO task_definitions VALUES ('web', 1, 0, '{\"family\":\"web\"}', 5, 6);",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(schema_version(&store.conn()).unwrap(), SCHEMA_VERSION);
    assert_eq!(store.list_clusters().unwrap(), ["default", "prod"]);
    let prod = store.get_cluster("prod").unwrap().unwrap();
    assert_eq!(
        (prod.status, prod.created_at_ms),
        (crate::domain::cluster::ClusterStatus::Active, 2)
    );
    let web = store.get_task_definition("web", Some(1)).unwrap().unwrap();
    assert_eq!((web.active, web.deregistered_at_ms), (false, Some(6)));
    drop(store);
    // Opening again migrates nothing twice.
    let store = SqliteStore::open(&dir.0).unwrap();
    assert_eq!(store.list_clusters().unwrap(), ["default", "prod"]);
}
