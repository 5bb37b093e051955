//! Unit tests of `discovery.rs`.
use super::*;

fn ep(port: u16) -> Endpoint {
    Endpoint {
        host: "10.0.0.1".into(),
        port,
    }
}

fn id_of(e: &Endpoint) -> String {
    format!("db{}", e.port)
}

/// A server that answered on `port` (its `server_id` is the port), replicating from
/// `source` (the IO thread saw that port's server there).
fn up(port: u16, read_only: bool, source: Option<u16>) -> Member {
    Member {
        id: format!("db{port}"),
        endpoint: ep(port),
        server_id: port as u32,
        engine: "mariadb".into(),
        version: "MariaDB 10.11".into(),
        read_only,
        source: source.map(ep),
        source_id: None,
        source_server_id: source.map(u32::from),
        role: Role::Reader,
        reachable: true,
    }
}

fn down(port: u16) -> Member {
    unreachable_member(&id_of, &ep(port))
}

/// `members` with their sources found, as [`settle`] does.
fn linked(members: &[Member]) -> Vec<Member> {
    let mut m = members.to_vec();
    link(&mut m, &[]);
    m
}

/// A walk: `members` answered under their own endpoints, `down` did not answer, `listed`
/// as (replica port, its server_id, lister port).
fn walk(members: Vec<Member>, down: &[u16], listed: &[(u16, u32, u16)]) -> Walk {
    Walk {
        answered: members
            .iter()
            .map(|m| (m.endpoint.clone(), m.server_id))
            .collect(),
        members,
        listed: listed
            .iter()
            .map(|(r, id, by)| (ep(*r), *id, ep(*by)))
            .collect(),
        down: down.iter().map(|p| ep(*p)).collect(),
    }
}

fn settled(w: Walk, seeds: &[u16]) -> Topology {
    let seeds: Vec<Endpoint> = seeds.iter().map(|p| ep(*p)).collect();
    settle(w, &seeds, &id_of).unwrap()
}

/// The tree as text lines: prefix and id.
fn drawn(t: &Topology) -> Vec<String> {
    t.tree()
        .iter()
        .map(|l| format!("{}{}", l.prefix, l.member.id))
        .collect()
}

fn sources(t: &Topology) -> Vec<(String, Option<String>)> {
    t.members
        .iter()
        .map(|m| (m.id.clone(), m.source_id.clone()))
        .collect()
}

#[test]
fn the_writable_root_is_the_writer() {
    let m = [
        up(1, false, None),
        up(2, true, Some(1)),
        up(3, true, Some(1)),
    ];
    assert_eq!(decide_writer(&linked(&m)).unwrap(), "db1");
    // A dead replica changes nothing.
    let m = [up(1, false, None), down(2), up(3, true, Some(1))];
    assert_eq!(decide_writer(&linked(&m)).unwrap(), "db1");
}

#[test]
fn a_dead_writer_is_known_from_its_replicas() {
    let m = [down(1), up(2, true, Some(1)), up(3, true, Some(1))];
    assert_eq!(decide_writer(&linked(&m)).unwrap(), "db1");
    // A chain: the leaf's source answers, the intermediate's does not.
    let m = [down(1), up(2, true, Some(1)), up(3, true, Some(2))];
    assert_eq!(decide_writer(&linked(&m)).unwrap(), "db1");
    let t = settled(walk(vec![up(2, true, Some(1))], &[1], &[]), &[2]);
    assert_eq!(t.writer, "db1");
    assert_eq!(drawn(&t), ["db1", "└─ db2"]);
    assert_eq!(t.findings.len(), 1, "{:?}", t.findings);
    assert_eq!(t.findings[0].member, "db1");
    assert!(t.findings[0].message.contains("the writer does not answer"));
}

#[test]
fn a_new_writer_wins_over_the_dead_old_one() {
    // After a failover: the old writer is still a seed and still dead.
    let m = [down(1), up(2, false, None), up(3, true, Some(2))];
    assert_eq!(decide_writer(&linked(&m)).unwrap(), "db2");
    let t = settled(
        walk(vec![up(2, false, None), up(3, true, Some(2))], &[1], &[]),
        &[1, 2, 3],
    );
    assert_eq!(drawn(&t), ["db2", "└─ db3", "db1"]);
    assert_eq!(t.findings.len(), 1, "{:?}", t.findings);
    assert!(
        t.findings[0].message.contains("does not answer")
            && t.findings[0].message.contains("its source unknown"),
        "{:?}",
        t.findings
    );
}

#[test]
fn two_writers_or_none_are_errors() {
    let m = [up(1, false, None), up(2, false, None)];
    assert!(decide_writer(&linked(&m))
        .unwrap_err()
        .contains("two writable"));
    // Two dead sources: which one was the writer is not guessed.
    let m = [down(1), down(2), up(3, true, Some(1)), up(4, true, Some(2))];
    assert!(decide_writer(&linked(&m))
        .unwrap_err()
        .contains("no writer"));
    // A dead server nobody names, and only read-only servers.
    let m = [down(1), up(2, true, None)];
    let e = decide_writer(&linked(&m)).unwrap_err();
    assert!(e.contains("no writer") && e.contains("db1"), "{e}");
}

#[test]
fn a_chain_found_from_its_leaf_is_nested() {
    // Seeded at the leaf: its source, then the writer; each lists its replica.
    let w = walk(
        vec![
            up(3, true, Some(2)),
            up(2, true, Some(1)),
            up(1, false, None),
        ],
        &[],
        &[(2, 2, 1), (3, 3, 2)],
    );
    let t = settled(w, &[3]);
    assert_eq!(t.writer, "db1");
    assert_eq!(
        sources(&t),
        [
            ("db1".to_string(), None),
            ("db2".to_string(), Some("db1".to_string())),
            ("db3".to_string(), Some("db2".to_string())),
        ]
    );
    assert_eq!(drawn(&t), ["db1", "└─ db2", "   └─ db3"]);
    assert_eq!(
        t.tree().iter().map(|l| l.depth).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert!(t.findings.is_empty(), "{:?}", t.findings);
}

#[test]
fn branches_are_drawn_with_their_siblings() {
    let t = settled(
        walk(
            vec![
                up(1, false, None),
                up(2, true, Some(1)),
                up(3, true, Some(1)),
                up(4, true, Some(2)),
                up(5, true, Some(4)),
            ],
            &[],
            &[],
        ),
        &[1],
    );
    assert_eq!(
        drawn(&t),
        ["db1", "├─ db2", "│  └─ db4", "│     └─ db5", "└─ db3"]
    );
}

#[test]
fn another_name_of_a_live_server_is_no_member() {
    // The replica names its source 10.0.0.1:9, which does not answer from here; its IO
    // thread saw server 1 there, which answered as db1.
    let mut leaf = up(3, true, Some(9));
    leaf.source_server_id = Some(1);
    let t = settled(walk(vec![up(1, false, None), leaf], &[9], &[]), &[3]);
    assert_eq!(drawn(&t), ["db1", "└─ db3"]);
    assert!(t.findings.is_empty(), "{:?}", t.findings);
    // The writer reached under a second name that answered.
    let mut w = walk(vec![up(1, false, None), up(3, true, Some(8))], &[], &[]);
    w.answered.push((ep(8), 1));
    w.members[1].source_server_id = None;
    let t = settled(w, &[3]);
    assert_eq!(drawn(&t), ["db1", "└─ db3"]);
    // A source lists a replica under a name that does not answer, which answered under
    // another one (same server_id): one member.
    let t = settled(
        walk(
            vec![up(1, false, None), up(3, true, Some(1))],
            &[7],
            &[(7, 3, 1)],
        ),
        &[1],
    );
    assert_eq!(drawn(&t), ["db1", "└─ db3"]);
}

#[test]
fn members_that_do_not_answer_are_marked_not_left_out() {
    // A dead intermediate: found through its replica, which is left a replica of nowhere;
    // where the intermediate hangs is not known, so it is a root of its own.
    let t = settled(
        walk(vec![up(1, false, None), up(3, true, Some(2))], &[2], &[]),
        &[3],
    );
    assert_eq!(drawn(&t), ["db1", "db2", "└─ db3"]);
    let db2 = t.member("db2").unwrap();
    assert!(!db2.reachable);
    let about = |id: &str| {
        t.findings
            .iter()
            .filter(|f| f.member == id)
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
    };
    assert!(
        about("db2")[0].contains("its source unknown"),
        "{:?}",
        t.findings
    );
    assert!(
        about("db3")[0].contains("a replica of nowhere") && about("db3")[0].contains("db2"),
        "{:?}",
        t.findings
    );
    // A replica its source lists but that does not answer from here hangs under it.
    let t = settled(walk(vec![up(1, false, None)], &[2], &[(2, 2, 1)]), &[1]);
    assert_eq!(drawn(&t), ["db1", "└─ db2"]);
    assert_eq!(t.findings.len(), 1);
    assert!(
        t.findings[0].message.contains("a replica of db1"),
        "{:?}",
        t.findings
    );
}

#[test]
fn replicas_of_nowhere_and_loops_are_findings() {
    // A read-only seed that replicates from nobody.
    let t = settled(
        walk(vec![up(1, false, None), up(2, true, None)], &[], &[]),
        &[1, 2],
    );
    assert_eq!(drawn(&t), ["db1", "db2"]);
    assert_eq!(t.findings.len(), 1);
    assert!(
        t.findings[0]
            .message
            .starts_with("detached: it replicates from nobody"),
        "{:?}",
        t.findings
    );
    // Two read-only servers replicating from each other, beside the writer.
    let t = settled(
        walk(
            vec![
                up(1, false, None),
                up(2, true, Some(3)),
                up(3, true, Some(2)),
            ],
            &[],
            &[],
        ),
        &[1, 2],
    );
    assert_eq!(drawn(&t), ["db1", "db2", "└─ db3"]);
    assert_eq!(
        loops(&t.members),
        [vec!["db2".to_string(), "db3".to_string()]]
    );
    assert_eq!(
        t.findings,
        [Finding {
            member: "db2".into(),
            message: "replication loop: db2 replicates from db3, db3 from db2; it does \
                      not lead to the writer db1"
                .into()
        }]
    );
    // Co-masters with no server out of the loop: no writer, and the loop is named.
    let e = settle(
        walk(vec![up(1, false, Some(2)), up(2, true, Some(1))], &[], &[]),
        &[ep(1)],
        &id_of,
    )
    .unwrap_err();
    assert!(
        e.contains("replication loop: db1 replicates from db2, db2 from db1")
            && e.contains("no writer"),
        "{e}"
    );
    // A longer loop is found once, from its smallest id.
    let m = linked(&[
        up(5, true, Some(3)),
        up(3, true, Some(4)),
        up(4, true, Some(5)),
        up(6, true, Some(5)),
    ]);
    assert_eq!(
        loops(&m),
        [vec![
            "db3".to_string(),
            "db4".to_string(),
            "db5".to_string()
        ]]
    );
    // Drawn from the loop's smallest id, a replica of the loop under its source.
    let t = settled(
        walk(
            vec![
                up(1, false, None),
                up(2, true, Some(5)),
                up(5, true, Some(7)),
                up(7, true, Some(5)),
            ],
            &[],
            &[],
        ),
        &[1, 2],
    );
    assert_eq!(drawn(&t), ["db1", "db5", "├─ db2", "└─ db7"]);
}
