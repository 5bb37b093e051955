//! Property tests of every parser that reads bytes a client (or a server) chose: on any input
//! they return, never panic and never loop, and what they build reads back the same. Run with
//! `cargo test -p dbshift-proxy --test parsers` (no server needed); `PROPTEST_CASES=100000`
//! runs longer.

use dbshift_proxy::protocol::{
    self, cap, handshake_response_payload, parse_handshake_response, parse_ok_head,
    parse_server_handshake, put_lenenc_bytes, session_changes, status, StateChange,
};
use dbshift_proxy::response::{Expect, Framing, Response};
use dbshift_proxy::sql;
use dbshift_proxy::tracking::{filter_ok, ClientTracking};
use proptest::prelude::*;

/// Bytes that look like protocol data often enough to reach deep branches.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..96),
        // A plausible head (OK, EOF, ERR, lenenc markers) and a random tail.
        (
            prop_oneof![
                Just(0x00u8),
                Just(0xFE),
                Just(0xFF),
                Just(0xFB),
                Just(0xFC),
                Just(0xFD)
            ],
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(h, mut t)| {
                t.insert(0, h);
                t
            }),
    ]
}

fn commands() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(protocol::com::QUERY),
        Just(protocol::com::STMT_EXECUTE),
        Just(protocol::com::STMT_PREPARE),
        Just(protocol::com::STMT_FETCH),
        Just(protocol::com::PING),
        any::<u8>(),
    ]
}

proptest! {
    #[test]
    fn a_handshake_response_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_handshake_response(&p);
        let _ = protocol::is_ssl_request(&p);
    }

    #[test]
    fn a_handshake_response_reads_back(
        user in "[a-z_][a-z0-9_]{0,31}",
        answer in proptest::collection::vec(any::<u8>(), 0..40),
        db in proptest::option::of("[a-z][a-z0-9_]{0,15}"),
        charset in any::<u8>(),
        max_packet in any::<u32>(),
        lenenc in any::<bool>(),
    ) {
        let mut caps = cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::PLUGIN_AUTH;
        if lenenc {
            caps |= cap::PLUGIN_AUTH_LENENC_CLIENT_DATA;
        }
        if db.is_some() {
            caps |= cap::CONNECT_WITH_DB;
        }
        let answer = if lenenc { answer } else { answer.into_iter().take(20).collect() };
        let p = handshake_response_payload(
            caps, 0, max_packet, charset, &user, &answer, db.as_deref(), None, "mysql_native_password",
        );
        let r = parse_handshake_response(&p).expect("what the proxy writes, it reads");
        prop_assert_eq!(r.user, user);
        prop_assert_eq!(r.auth_response, answer);
        prop_assert_eq!(r.database, db);
        prop_assert_eq!(r.charset, charset);
        prop_assert_eq!(r.max_packet, max_packet);
    }

    #[test]
    fn a_server_greeting_never_panics(p in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_server_handshake(&p);
        let mut q = p.clone();
        q.insert(0, 10);
        let _ = parse_server_handshake(&q);
    }

    #[test]
    fn statement_glances_never_panic(text in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = sql::effects(&text);
        let _ = sql::kill_target(&text);
        let _ = dbshift_proxy::tracking::mentions_tracking(&text);
    }

    #[test]
    fn a_kill_target_points_at_its_digits(
        pre in "(KILL|kill|/\\* c \\*/ KILL)( HARD| SOFT)?( CONNECTION| QUERY)? ",
        id in any::<u32>(),
        tail in "( |;)*",
    ) {
        let text = format!("{pre}{id}{tail}");
        let k = sql::kill_target(text.as_bytes()).expect("a kill");
        prop_assert_eq!(k.id, id as u64);
        prop_assert_eq!(&text[k.digits.clone()], id.to_string());
    }

    #[test]
    fn ok_packets_never_panic(p in packet()) {
        let _ = protocol::parse_err(&p);
        let _ = protocol::eof_status(&p);
        if let Some(head) = parse_ok_head(&p) {
            let _ = session_changes(&p, &head);
            let _ = protocol::ok_without_tracking(&p, &head);
            for view in [ClientTracking::default(), ClientTracking::parse(b"0", b"")] {
                let _ = filter_ok(&p, &head, &view);
            }
        }
    }

    /// The filter keeps exactly the entries the client's view asks for, in order.
    #[test]
    fn the_tracking_filter_keeps_what_the_client_tracks(
        entries in proptest::collection::vec(
            (0u8..6, "[a-z_]{1,12}", "[ -~]{0,12}"), 0..8),
        schema in any::<bool>(),
        names in proptest::collection::vec("[a-z_]{1,12}", 0..4),
        info in "[ -~]{0,10}",
    ) {
        let mut block = Vec::new();
        for (kind, name, value) in &entries {
            let mut data = Vec::new();
            put_lenenc_bytes(&mut data, name.as_bytes());
            if *kind == 0 {
                put_lenenc_bytes(&mut data, value.as_bytes());
            }
            block.push(*kind);
            put_lenenc_bytes(&mut block, &data);
        }
        let mut ok = vec![0x00, 1, 0];
        ok.extend_from_slice(&(status::AUTOCOMMIT | status::SESSION_STATE_CHANGED).to_le_bytes());
        ok.extend_from_slice(&[0, 0]);
        put_lenenc_bytes(&mut ok, info.as_bytes());
        put_lenenc_bytes(&mut ok, &block);
        let view = ClientTracking::parse(if schema { b"ON" } else { b"OFF" }, names.join(",").as_bytes());
        let head = parse_ok_head(&ok).unwrap();
        let out = filter_ok(&ok, &head, &view).unwrap_or_else(|| ok.clone());
        let out_head = parse_ok_head(&out).expect("still an OK packet");
        let kept = session_changes(&out, &out_head);
        let expected: Vec<StateChange> = session_changes(&ok, &head)
            .into_iter()
            .filter(|c| match c {
                StateChange::SystemVariable(n, _) => names.iter().any(|x| x.as_bytes() == *n),
                StateChange::Schema(_) => schema,
                _ => true,
            })
            .collect();
        let all = session_changes(&ok, &head).len();
        let dropped = expected.len() < all;
        prop_assert_eq!(&kept, &expected);
        // The flag goes when the filter left nothing; a packet it did not touch is as it was.
        if dropped {
            prop_assert_eq!(out_head.status & status::SESSION_STATE_CHANGED != 0, !kept.is_empty());
        } else {
            prop_assert_eq!(out, ok);
        }
    }

    /// Any sequence of packets: each feed returns; an ERR (not a progress report) ends the
    /// response wherever it comes.
    #[test]
    fn a_response_always_ends_at_an_error(
        cmd in commands(),
        deprecate_eof in any::<bool>(),
        progress in any::<bool>(),
        cache_metadata in any::<bool>(),
        packets in proptest::collection::vec(packet(), 0..24),
    ) {
        let framing = Framing { deprecate_eof, progress, cache_metadata };
        let mut r = Response::new(Expect::of(cmd), framing);
        for p in &packets {
            if r.done() {
                break;
            }
            let _ = r.feed(p, p.len());
        }
        if !r.done() {
            let err = protocol::err_payload(1064, "42000", "syntax");
            let _ = r.feed(&err, err.len());
            prop_assert!(r.done(), "an ERR ends the response");
        }
    }
}
